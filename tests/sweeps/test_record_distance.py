"""Each record holds the selected model's distance from the pretrained backbone, measured on the tested weights."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


def test_frozen_runs_stay_at_the_pretrained_point_and_bitfit_runs_move(reference_runs):
    for run_id, result in reference_runs.items():
        record = result["record"]
        distance = record["distance"]
        layers = [distance["layers"][key] for key in sorted(distance["layers"], key=int)]
        assert layers, run_id
        # total^2 is the sum of the per-layer and the rest's squares.
        assert math.isclose(distance["total"] ** 2, sum(v * v for v in layers) + distance["rest"] ** 2, rel_tol=1e-9)
        if record["method"] == "frozen":
            assert distance["total"] == 0.0, run_id  # only the head trained: the backbone is bit-for-bit pretrained
        else:
            assert distance["total"] > 0 and all(value > 0 for value in layers), run_id
        assert record["study"] is None and record["scale"] is None  # a plain sweep file


def test_the_distance_reaches_wandb_as_flat_summary_keys():
    from pet_lightning.sweeps.trainable import _distance_summary

    assert _distance_summary({"total": 2.0, "rest": 0.5, "layers": {"0": 1.0, "5": 1.5}}) == {
        "distance/total": 2.0, "distance/rest": 0.5, "distance/layer_0": 1.0, "distance/layer_5": 1.5}
