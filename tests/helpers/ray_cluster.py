"""A real multi-node Ray cluster on this machine: ``ray start`` processes that the tests start, kill and stop.

Each node is one ``ray start --block`` process in a session of its own, with its own port, CPUs, temporary folder
(``--temp-dir``) and ``--node-name``; the node's raylet, agents and trial workers are its descendants and name its
temporary folder on their command lines. Stopping or killing a node signals exactly those process ids: ``ray stop``
is never used, since it would also stop any other Ray instance on the machine.

The nodes (and so the trial workers) get the cluster's ``env``: on a cluster the driver's environment does not reach
the trials. Token authentication is on, with a token of the cluster's own: a driver needs ``auth_env`` too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
HOST = "127.0.0.1"
# Small object stores: two nodes on one small machine, and a sweep only puts its plan there.
OBJECT_STORE_BYTES = 100 * 1024 * 1024


# Alive nodes as one JSON line, once `count` are (or the timeout passed): python -c NODE_TABLE address count timeout.
NODE_TABLE = """
import json, sys, time
from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
from ray._private.state import GlobalState
from ray._raylet import GcsClientOptions

maybe_enable_token_auth_if_token_available(warn_if_disabled=False)  # as `ray start` and `ray.init` do
address, count, deadline = sys.argv[1], int(sys.argv[2]), time.time() + float(sys.argv[3])
while True:
    state = GlobalState()
    state._initialize_global_state(
        GcsClientOptions.create(address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False))
    try:
        alive = [{"NodeID": n["NodeID"], "NodeName": n["NodeName"]} for n in state.node_table() if n["Alive"]]
    except Exception:
        alive = []
    state.disconnect()
    if len(alive) >= count or time.time() > deadline:
        print(json.dumps(alive))
        break
    time.sleep(0.5)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class RayNode:
    """One ``ray start --block`` process and what it started."""

    name: str
    temp_dir: Path
    process: subprocess.Popen
    log: Path
    node_id: str = ""
    killed_at: float | None = None

    def pids(self) -> list[int]:
        """The ``ray start`` process, its descendants and every process naming this node's temporary folder."""
        found: dict[int, None] = {}
        try:
            root = psutil.Process(self.process.pid)
            found.update(dict.fromkeys([root.pid, *(child.pid for child in root.children(recursive=True))]))
        except psutil.NoSuchProcess:
            pass
        marker = str(self.temp_dir)
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if any(marker in part for part in cmdline):
                found[proc.info["pid"]] = None
        found.pop(os.getpid(), None)
        return list(found)

    def signal(self, signum: int) -> list[int]:
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pids

    def kill(self) -> list[int]:
        """SIGKILL every process of the node at once (a machine that lost power); returns their ids."""
        self.killed_at = time.time()
        pids = self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        return pids

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (``ray start --block`` then stops what it started), SIGKILL whatever is left after ``grace_s``."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace_s)
        deadline = time.time() + 5
        while self.pids() and time.time() < deadline:
            time.sleep(0.2)
        self.signal(signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(timeout=10)


@dataclass
class LocalRayCluster:
    """A head node and worker nodes on this machine, started with ``env`` (what the trial workers inherit)."""

    env: dict[str, str]
    cpus_per_node: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="ray", dir="/tmp")))
    nodes: list[RayNode] = field(default_factory=list)
    port: int = 0
    # Ray's token authentication, on as for any new cluster, with a token of this cluster's own.
    auth_env: dict[str, str] = field(
        default_factory=lambda: {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})

    def __post_init__(self) -> None:
        self.env = {**{k: v for k, v in self.env.items() if k != "RAY_ADDRESS"}, **self.auth_env}

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    def _start(self, name: str, *args: str) -> RayNode:
        # A short folder: Ray's Unix sockets live under it (at most 107 characters a path).
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        command = [
            RAY, "start", "--block", *args, "--node-ip-address", HOST, "--node-name", name,
            "--num-cpus", str(self.cpus_per_node), "--num-gpus", "0", "--temp-dir", str(temp_dir),
            "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats",
            # Every port this node listens on is free now: the other node, and other Ray instances, use their own.
            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--min-worker-port", "0", "--max-worker-port", "0",
        ]
        with open(log, "w") as handle:
            process = subprocess.Popen(command, env=self.env, stdout=handle, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        node = RayNode(name=name, temp_dir=temp_dir, process=process, log=log)
        self.nodes.append(node)
        return node

    def start(self, workers: int = 1, timeout_s: float = 120.0) -> LocalRayCluster:
        self.port = free_port()
        try:
            self._start("head", "--head", "--port", str(self.port), "--include-dashboard", "false",
                        "--dashboard-port", str(free_port()))
            self._wait_for_port(timeout_s)
            self.wait_for_nodes(1, timeout_s)
            for index in range(workers):
                self.add_worker(f"worker{index + 1}", timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str, timeout_s: float = 120.0) -> RayNode:
        node = self._start(name, "--address", self.address)
        self.wait_for_nodes(len([n for n in self.nodes if n.killed_at is None]), timeout_s)
        return node

    def _wait_for_port(self, timeout_s: float) -> None:
        """Until the head's GCS accepts connections (a GCS client would wait on a closed port for long)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.head.process.poll() is not None:
                raise RuntimeError(f"ray start of the head exited: {self.head.log.read_text()[-3000:]}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the Ray head did not listen on {self.address} within {timeout_s:.0f} s")

    def wait_for_nodes(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` nodes are alive, and learn their ids (from the GCS's node table, read in a
        process of its own with the nodes' environment: the same token authentication as theirs)."""
        for node in self.nodes:
            if node.killed_at is None and node.process.poll() is not None:
                raise RuntimeError(f"ray start of {node.name} exited: {node.log.read_text()[-3000:]}")
        done = subprocess.run([sys.executable, "-c", NODE_TABLE, self.address, str(count), str(timeout_s)],
                              env=self.env, capture_output=True, text=True, timeout=timeout_s + 60)
        lines = done.stdout.strip().splitlines()
        alive = json.loads(lines[-1]) if done.returncode == 0 and lines else []
        if len(alive) < count:
            raise TimeoutError(f"{count} Ray node(s) not alive after {timeout_s:.0f} s (alive: {alive}); "
                               f"{done.stderr[-2000:]}; logs in {self.root}")
        self._learn_ids(alive)
        missing = [node.name for node in self.nodes if node.killed_at is None and not node.node_id]
        if missing:
            raise RuntimeError(f"no node id for {missing} in {alive}")

    def _learn_ids(self, alive: list[dict]) -> None:
        """Each node's id, by its ``--node-name``; else the one new id for the one node started since."""
        names = {entry.get("NodeName"): entry["NodeID"] for entry in alive}
        for node in self.nodes:
            node.node_id = node.node_id or names.get(node.name, "")
        known = {node.node_id for node in self.nodes}
        new_ids = [entry["NodeID"] for entry in alive if entry["NodeID"] not in known]
        unnamed = [node for node in self.nodes if not node.node_id and node.killed_at is None]
        if len(new_ids) == 1 and len(unnamed) == 1:
            unnamed[0].node_id = new_ids[0]

    def stop(self) -> None:
        """Stop the workers, then the head; only the processes these nodes started."""
        for node in reversed(self.nodes):
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)
