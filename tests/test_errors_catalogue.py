"""docs/errors.md cannot drift from the code: every catalogued bad input runs through the CLI and gives its message.

Each row of the catalogue's table holds a command (``python cli.py ...``) and the exact ``error:`` line it prints.
The command runs in-process through :func:`pet_lightning.cli.main`; it must exit with code 2 and print the line
(up to ``…``, where the catalogue leaves out a variable tail). ``{tmp}`` is a folder of bad files made here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.helpers.trainers import unfitted_checkpoint

CATALOGUE = REPO_ROOT / "docs" / "errors.md"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*`python cli\.py ([^`]+)`\s*\|\s*`([^`]+)`\s*\|\s*$")
SWEEPS = {
    "sweep_unknown.yaml": "tasks: [rte]\nmethods: [bitfit]\nworkerz: 2\n",
    "sweep_seeds.yaml": "tasks: [rte]\nmethods: [bitfit]\nseeds: [1, 1]\n",
    "sweep_protocol.yaml": "tasks: [rte]\nmethods: [bitfit]\nprotocol: leaky\n",
    "sweep_empty.yaml": "tasks: []\nmethods: [bitfit]\n",
    "sweep_list.yaml": "- rte\n- bitfit\n",
    "study_scales.yaml": "study: transferability_table1\nmethods: [bitfit]\nscales:\n  cpu: {tasks: [rte]}\n",
    "sweep_plain.yaml": "tasks: [rte]\nmethods: [bitfit]\n",
    "study_layout.yaml": "study: table9\nmethods: [bitfit]\nscales:\n  cpu: {tasks: [rte]}\n",
}

# Task files (docs/task_files.md), one bad input each: folder -> {file name: text}.
_TASK = "name: {name}\nfiles: {{train: train.csv{dev}}}\ntext: [text]\nlabel: {label}\ntype: {kind}\n"
_TRAIN = "text,label\na fine film,pos\na dull film,neg\n"
TASK_FILES = {
    "tf_missing": {"task.yaml": _TASK.format(name="x", dev="", label="label", kind="classification")
                   .replace("train.csv", "trian.csv")},
    "tf_column": {"task.yaml": _TASK.format(name="x", dev=", validation: dev.csv", label="label",
                                            kind="classification"),
                  "train.csv": _TRAIN, "dev.csv": "text,gold\nok,pos\n"},
    "tf_label": {"task.yaml": _TASK.format(name="x", dev=", validation: dev.csv", label="label",
                                           kind="classification"), "train.csv": _TRAIN,
                 "dev.csv": "text,label\nok,pos\nso so,maybe\n"},
    "tf_number": {"task.yaml": _TASK.format(name="x", dev="", label="score", kind="regression"),
                  "train.csv": "text,score\ngood,1.5\nbad,two\n"},
    "tf_empty": {"task.yaml": _TASK.format(name="x", dev=", validation: dev.csv", label="label",
                                           kind="classification"), "train.csv": _TRAIN, "dev.csv": "text,label\n"},
    "tf_shadow": {"task.yaml": _TASK.format(name="RTE", dev="", label="label", kind="classification"),
                  "train.csv": _TRAIN},
    "tf_solo": {"task.yaml": _TASK.format(name="solo", dev="", label="label", kind="classification"),
                "train.csv": _TRAIN},
}


def catalogue() -> list[tuple[str, str, str, str]]:
    rows = [ROW.match(line) for line in CATALOGUE.read_text(encoding="utf-8").splitlines()]
    return [m.groups() for m in rows if m]


class _Opaque:
    """A pickled object: a weights_only load refuses it."""


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    good = unfitted_checkpoint("frozen")
    torch.save(good, folder / "frozen.ckpt")
    data = (folder / "frozen.ckpt").read_bytes()
    (folder / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (folder / "garbage.ckpt").write_bytes(b"\x00garbage" * 64)
    torch.save({**good, "extra": _Opaque()}, folder / "pickled.ckpt")
    torch.save({**good, "pet_lightning": {**good["pet_lightning"], "backbone": "roberta-base"}},
               folder / "roberta.ckpt")
    shrunk = {**good, "state_dict": dict(good["state_dict"])}
    shrunk["state_dict"]["model.classifier.weight"] = shrunk["state_dict"]["model.classifier.weight"][:, :100]
    torch.save(shrunk, folder / "shape.ckpt")
    torch.save({k: v for k, v in good.items() if k != "pet_lightning"}, folder / "plain.ckpt")
    # Without hyper-parameters the CLI cannot adopt the checkpoint's model settings (it does when they are there).
    torch.save({k: v for k, v in good.items() if k != "hyper_parameters"}, folder / "nohparams.ckpt")
    for name, text in SWEEPS.items():
        (folder / name).write_text(text, encoding="utf-8")
    for task, files in TASK_FILES.items():
        (folder / task).mkdir()
        for name, text in files.items():
            (folder / task / name).write_text(text, encoding="utf-8")
    (folder / "empty").mkdir()
    (folder / "remote").mkdir()
    (folder / "remote" / "config.json").write_text(
        '{"model_type": "custom-remote", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig"}}')
    return folder


def test_the_catalogue_lists_at_least_25_bad_inputs_across_every_area():
    rows = catalogue()
    assert len(rows) >= 25, len(rows)
    areas = {area.split(":")[0].split()[0].lower() for _, area, _, _ in rows}
    assert {"config", "data", "flag", "strategy", "protocol", "sweep", "checkpoint"} <= areas, areas
    assert [int(n) for n, *_ in rows] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize(("number", "area", "command", "message"), catalogue(), ids=lambda v: str(v)[:40])
def test_every_catalogued_input_exits_2_with_its_message(
    number, area, command, message, bad_files, data_dir, tmp_path, monkeypatch
):
    from pet_lightning.cli import main

    # Run from an empty folder (a failed fit may leave Lightning's config.yaml in the working folder), with the
    # repository's config files by absolute path.
    monkeypatch.chdir(tmp_path)
    args = [arg.replace("{tmp}", str(bad_files)) for arg in shlex.split(command)]
    args = [str(REPO_ROOT / arg) if arg.startswith("configs/") else arg for arg in args]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as stop:
            code = stop.code
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("error: ")]
    expected = "error: " + message.replace("{tmp}", str(bad_files)).split("…")[0].rstrip()
    assert code == 2, (number, code, stderr.getvalue()[-2000:])
    assert errors and errors[-1].startswith(expected), (number, expected, errors)
