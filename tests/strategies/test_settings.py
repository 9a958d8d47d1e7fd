"""Strategies are settings (frozen, documented dataclasses); what ``apply`` creates is the report's, and the CLI adds
the callbacks a strategy needs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pet_lightning.callbacks import AdaLoraSchedule, ChildTuningFisher
from pet_lightning.lightning_cli import required_callbacks
from pet_lightning.strategies import STRATEGIES, build_strategy
from tests.helpers.backbones import tiny_model


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_is_a_frozen_dataclass_with_help_on_every_field(name):
    cls = STRATEGIES[name]
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    for field in dataclasses.fields(cls):
        assert field.metadata.get("help"), f"{name}.{field.name} has no help"


@pytest.mark.parametrize(("name", "settings"), [("random", {"count": 50}), ("mixout", {"p": 0.5}),
                                                 ("lora", {"r": 2}), ("adapter", {})])
def test_apply_leaves_the_strategy_unchanged_and_its_report_removes_what_it_created(name, settings):
    strategy = build_strategy(name, **settings)
    before = dict(vars(strategy))
    model = tiny_model("bert")
    names = [n for n, _ in model.named_parameters()]
    report = strategy.apply(model)
    assert vars(strategy) == before and report.settings is strategy
    if name == "random":
        assert report.masks and len(report.hooks) == len(report.masks)
    plain = report.remove()
    assert report.remove() is plain  # a second remove undoes nothing twice
    assert not report.hooks and [n for n, _ in plain.named_parameters()] == names
    if name == "mixout":
        assert all(m.p == 0.1 for m in plain.modules() if isinstance(m, torch.nn.Dropout))
    # The same strategy applies again to the plain model (two-stage training re-uses strategies).
    assert strategy.apply(plain).trainable == report.trainable


def test_child_tuning_masks_come_from_the_fisher_input_only():
    strategy = build_strategy("child_tuning_d", reserve_p=0.5)
    model = tiny_model("bert")
    assert strategy.apply(model).masks == {}
    names = strategy.masked_names(model)
    fisher = {n: torch.rand_like(p, dtype=torch.float32) for n, p in model.named_parameters() if n in names}
    report = strategy.apply(tiny_model("bert"), fisher=fisher)
    assert set(report.masks) == set(names) and report.inputs["fisher"] is fisher
    with pytest.raises(TypeError):
        build_strategy("bitfit").apply(tiny_model("bert"), fisher=fisher)


def test_the_cli_table_adds_each_needed_callback_once():
    assert [type(c) for c in required_callbacks(build_strategy("child_tuning_d"), [])] == [ChildTuningFisher]
    # Listed by hand (to give its settings): not added a second time.
    assert required_callbacks(build_strategy("child_tuning_d"), [ChildTuningFisher(dropout=True)]) == []
    assert [type(c) for c in required_callbacks(build_strategy("adalora"), [])] == [AdaLoraSchedule]
    generic = build_strategy("peft", config={"class_path": "peft.AdaLoraConfig", "init_args": {"target_r": 4}})
    assert [type(c) for c in required_callbacks(generic, [])] == [AdaLoraSchedule]
    assert required_callbacks(build_strategy("lora"), []) == []
