"""CI runs the README's two set-up commands as written: ``.ci/run`` reads them from the README, and a README that no
longer has exactly two, or a command that fails, fails CI (here on copies, with nothing installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO_ROOT

CI_RUN = REPO_ROOT / ".ci" / "run"
OVERRIDE = "--trainer.limit_train_batches 2 --trainer.limit_val_batches 2 --trainer.max_epochs 1"


def _setup_blocks(readme: str) -> list[str]:
    """The ```bash blocks of the README's "## Set up" section, read here independently of .ci/run's awk."""
    section = readme.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"^```bash\n(.*?)^```$", section, flags=re.M | re.S)]


def _ci_run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(repo / ".ci" / "run"), *args], capture_output=True, text=True, timeout=60)


def _copy_with_readme(tmp_path: Path, readme: str) -> Path:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(CI_RUN, repo / ".ci" / "run")
    (repo / "README.md").write_text(readme, encoding="utf-8")
    (tmp_path / "shared" / "data").mkdir(parents=True)  # the data root beside the clone, as CI has it
    return repo


def _readme(*commands: str) -> str:
    blocks = "".join(f"```bash\n{command}\n```\n\n" for command in commands)
    return f"# x\n\n## Set up\n\nText.\n\n{blocks}## Data\n\n```bash\nnot a set-up command\n```\n"


def test_ci_runs_exactly_the_readmes_two_set_up_commands():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert re.findall(r"^## .*", readme, flags=re.M)[0] == "## Set up", "the set-up commands come first"
    quickstart, tests = _setup_blocks(readme)  # exactly two blocks
    assert "\n" not in quickstart and "\n" not in tests, "one command line a block"
    for command in (quickstart, tests):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==")
        assert "PET_DATA_DIR=../shared/data " in command
    # The override is appended to the quickstart's own command line, so it must end on the CLI's arguments.
    assert quickstart.endswith("python cli.py fit --config configs/quickstart.yaml")
    assert tests.endswith("pytest -q tests")

    listed = _ci_run(REPO_ROOT, "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"{quickstart} {OVERRIDE}", tests]


def test_a_readme_without_exactly_two_one_line_commands_fails_ci(tmp_path):
    for readme in (_readme("echo one"), _readme("echo one", "echo two", "echo three"),
                   _readme("echo one\necho more", "echo two")):
        result = _ci_run(_copy_with_readme(tmp_path / str(len(readme)), readme), "--list")
        assert result.returncode == 2, readme
        assert result.stderr.startswith("error: README.md's '## Set up' has ") and "exactly two" in result.stderr


def test_a_failing_readme_command_fails_ci_with_its_exit_status(tmp_path):
    repo = _copy_with_readme(tmp_path, _readme("echo quickstart ran with", "exit 7"))
    result = _ci_run(repo)
    assert result.returncode == 7, result.stdout + result.stderr
    assert f"quickstart ran with {OVERRIDE}" in result.stdout
    assert "[ci] tests: exit 7" in result.stdout and "[ci] FAILED: tests (exit 7)" in result.stderr
    assert "[ci] ruff" not in result.stdout  # nothing after a failed command
