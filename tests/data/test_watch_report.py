"""watch_report: the reported examples are evaluated every validation epoch, after (never instead of) selection."""

from __future__ import annotations

import pytest

from pet_lightning.data import TaskDataModule


def _setup(data_dir, **settings) -> TaskDataModule:
    dm = TaskDataModule(task="sst-2", data_dir=data_dir, protocol="dev_split", train_subset=32, **settings)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _idx(loader) -> list[int]:
    return sorted(int(i) for batch in loader for i in batch["idx"])


def test_the_report_half_follows_the_selection_half_in_validation(data_dir):
    dm = _setup(data_dir, watch_report=True)
    loaders = dm.val_dataloader()
    assert len(loaders) == 2 and dm.eval_suffixes("val") == ["", "_report"]
    (selection,), (report,) = dm.plan.selection.values(), dm.plan.report.values()
    assert _idx(loaders[0]) == sorted(e["idx"] for e in selection)  # selection still reads half 1 first
    assert _idx(loaders[1]) == sorted(e["idx"] for e in report) == _idx(dm.test_dataloader()[0])
    assert not {e["idx"] for e in selection} & {e["idx"] for e in report}


def test_off_by_default_and_refused_where_selection_already_sees_the_report(data_dir):
    dm = _setup(data_dir)
    assert len(dm.val_dataloader()) == 1 and dm.eval_suffixes("val") == [""]
    with pytest.raises(ValueError, match="watch_report=True under protocol standard"):
        TaskDataModule(task="sst-2", data_dir=data_dir, protocol="standard", watch_report=True)
