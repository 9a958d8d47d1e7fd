"""The leak audit on the real data: no boundary we draw shares text, for every task and non-leaky protocol."""

from __future__ import annotations

import pytest

from pet_lightning.data.audit import audit_task, local_tasks, main
from pet_lightning.data.readers import DataError

NON_LEAKY = ("dev_split", "train_holdout")


@pytest.fixture(scope="module")
def shared_tasks(data_dir) -> list[str]:
    tasks = local_tasks(data_dir)
    assert len(tasks) >= 12, tasks  # 6 GLUE + 6 SuperGLUE tasks in the shared data
    return tasks


def test_every_carved_boundary_of_every_task_shares_no_text(shared_tasks, data_dir):
    audited = 0
    for task in shared_tasks:
        for protocol in NON_LEAKY:
            try:
                boundaries = audit_task(task, protocol, data_dir, train_subset=200)
            except DataError as err:
                assert "no training split" in str(err)  # BoolQ here has no train file: dev_split cannot run
                continue
            carved = [b for b in boundaries if b.carved]
            assert carved, (task, protocol)
            assert {b.right for b in carved if b.left == "train"} or protocol == "dev_split"
            leaks = [(b.left, b.right, b.shared) for b in carved if b.shared]
            assert not leaks, (task, protocol, leaks)
            audited += len(carved)
    assert audited >= 40


def test_audit_marks_official_boundaries_and_shows_their_overlap(data_dir):
    # RTE's official train and dev share premises (71 dev examples): shown, marked official, left as it is.
    boundaries = audit_task("rte", "dev_split", data_dir)
    official = [b for b in boundaries if not b.carved]
    assert {(b.left, b.right) for b in official} == {
        ("train", "selection:validation"),
        ("train", "report:validation"),
    }
    assert sum(b.shared for b in official) == 71
    assert sum(b.right_size for b in official) == 277


def test_the_leaky_protocol_is_reported_as_the_same_examples(data_dir):
    (same,) = [b for b in audit_task("cb", "standard", data_dir) if b.same_examples]
    assert (same.left, same.right, same.left_size) == ("selection:validation", "report:validation", 56)


def test_audit_command_prints_one_row_per_boundary(data_dir, capsys):
    assert main(["--task", "multirc", "--protocol", "dev_split", "--data-dir", data_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| task | protocol | boundary | drawn by |")
    rows = [line for line in out[2:] if line.startswith("| multirc | dev_split |")]
    assert len(rows) == 3
    assert "| selection:validation -> report:validation | pet-lightning |" in rows[2]
    assert rows[2].endswith("| 0 of 2,418 |")


def test_audit_command_names_an_unknown_task_in_one_line(data_dir, capsys):
    assert main(["--task", "nosuch", "--protocol", "dev_split", "--data-dir", data_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nosuch" in err[0]
