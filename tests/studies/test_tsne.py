"""EH-FT Figure 4 layout: t-SNE panels and 5-NN separability from fake HeadFeatures files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from pet_lightning.callbacks.features import FEATURES_FILE
from pet_lightning.errors import StudyError
from pet_lightning.studies import tsne
from pet_lightning.studies.tsne import embed, panels_of, plot_panels, write_figure4

METHODS = ["linear_probing", "lora", "bitfit", "prefix_tuning"]
PANELS = ["random_head", "linear_probing", "lora", "bitfit", "prefix_tuning"]
SEPARATED = {"lora", "bitfit"}  # runs whose features are perfectly separated by label


def _features(separated: bool, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, count in (("train", 40), ("report", 30)):
        labels = np.arange(count) % 2
        inputs = rng.normal(size=(count, 8)).astype(np.float32)
        hidden = rng.normal(size=(count, 16)).astype(np.float32)
        if separated:
            # Two tight clusters far apart: every neighbour of an example shares its label.
            inputs = 0.01 * inputs + 10.0 * labels[:, None]
            hidden = 0.01 * hidden + 10.0 * labels[:, None]
        arrays.update({f"{split}_inputs": inputs, f"{split}_labels": labels, f"{split}_hidden": hidden})
    return arrays


def _run(root, method: str, seed: int, with_features: bool = True) -> dict:
    folder = root / f"sst-2.{method}.{seed}"
    folder.mkdir(parents=True)
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"head_hidden_size": 16, "head_init_std": 0.005}}), encoding="utf-8")
    if with_features:
        np.savez(folder / FEATURES_FILE, **_features(method in SEPARATED, seed))
    return {
        "run_id": folder.name, "task": "sst-2", "method": method, "seed": seed, "seed_mode": "both",
        "init_seed": seed, "protocol": "dev_split", "monitor": "val_select/headline",
        "config_hash": f"sst-2-{method}", "run_hash": f"sst-2-{method}-{seed}", "headline": "accuracy",
        "score": 0.8, "steps": 50, "best_step": 50, "train_examples": 800, "trainable_pct": 1.0, "status": "ok",
        "study": "eh_ft_figure4", "scale": "cpu", "wall_s": 10.0, "config_path": str(config),
    }


def _records(root) -> list[dict]:
    return [_run(root, method, index + 1) for index, method in enumerate(METHODS)]


@pytest.fixture
def fast_embed(monkeypatch):
    """Replace the t-SNE map by the first two coordinates: the layout's pictures and scores without ten t-SNE fits
    (the real map is checked once in test_embed_is_a_2d_map_of_train_and_test)."""
    monkeypatch.setattr(tsne, "embed", lambda train, test, seed=0: (train[:, :2], test[:, :2]))


def test_embed_is_a_2d_map_of_train_and_test():
    data = _features(separated=True, seed=0)
    train_2d, test_2d = embed(data["train_inputs"], data["report_inputs"])
    assert train_2d.shape == (40, 2) and test_2d.shape == (30, 2)
    assert np.isfinite(train_2d).all() and np.isfinite(test_2d).all()


def test_write_figure4_pictures_and_five_panels(tmp_path, fast_embed):
    out = tmp_path / "out"
    write_figure4(_records(tmp_path / "runs"), out)
    for name in ("figure4.png", "figure4_hidden.png", "figure4_separability.md", "figure4_separability.csv",
                 "report.md"):
        assert (out / name).is_file(), name
    assert (out / "figure4.png").stat().st_size > 0 and (out / "figure4_hidden.png").stat().st_size > 0
    with open(out / "figure4_separability.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["panel"] for row in rows] == PANELS
    scores = {row["panel"]: (float(row["knn_inputs"]), float(row["knn_hidden"])) for row in rows}
    for method in SEPARATED:
        assert scores[method] == (1.0, 1.0)
    # The random head reads the linear-probing run's inputs (a frozen encoder): the same 5-NN score on them.
    assert scores["random_head"][0] == scores["linear_probing"][0]
    for inputs, hidden in scores.values():
        assert 0.0 <= inputs <= 1.0 and 0.0 <= hidden <= 1.0


def test_write_figure4_returns_the_picture_paths(tmp_path, fast_embed):
    out = tmp_path / "out"
    paths = write_figure4(_records(tmp_path / "runs"), out)
    assert paths["figure4"] == out / "figure4.png"
    assert paths["figure4_hidden"] == out / "figure4_hidden.png"


def test_plot_panels_returns_one_score_per_panel(tmp_path, fast_embed):
    panels = panels_of(_records(tmp_path / "runs"))
    assert list(panels) == PANELS
    # The random head's hidden layer is computed here from a fresh 16-unit MLP head.
    assert panels["random_head"]["train_hidden"].shape == (40, 16)
    assert panels["random_head"]["report_hidden"].shape == (30, 16)
    np.testing.assert_array_equal(panels["random_head"]["train_inputs"], panels["linear_probing"]["train_inputs"])
    path = tmp_path / "panels.png"
    scores = plot_panels(panels, "inputs", path, "inputs")
    assert list(scores) == PANELS
    assert path.is_file()
    assert scores["lora"] == 1.0


def test_run_without_features_names_head_features(tmp_path):
    records = _records(tmp_path / "runs")
    records[1] = _run(tmp_path / "runs", "lora", 99, with_features=False)
    with pytest.raises(StudyError, match="HeadFeatures"):
        write_figure4(records, tmp_path / "out")


def test_refuses_two_tasks(tmp_path):
    records = _records(tmp_path / "runs")
    records[0]["task"] = "rte"
    with pytest.raises(StudyError, match="one task"):
        write_figure4(records, tmp_path / "out")
