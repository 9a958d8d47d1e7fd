"""Transferability Table 3 on hand-made records: our layers beside the paper's at the same relative depth, and
each verdict path of the middle-band contrast (per seed, middle third minus outer thirds, Holm over tasks)."""

from __future__ import annotations

import csv
from fractions import Fraction

import pytest

from pet_lightning.errors import StudyError
from pet_lightning.studies.transferability import band_of, depth_overlap, write_table3
from tests.helpers.records import finding as _finding
from tests.helpers.records import make_record
from tests.helpers.records import md_rows as _md_rows

STUDY = "transferability_table3"
# The paper's Table 3 (BERT-base, 12 layers), STS-B Spearman and MRPC F1, layers #1..#12.
PAPER = {
    "sts-b": [85.1, 85.7, 86.1, 86.1, 86.7, 87.1, 86.9, 87.2, 86.7, 86.6, 86.5, 83.5],
    "mrpc": [84.7, 85.9, 84.2, 85.9, 89.0, 88.8, 87.5, 86.1, 86.6, 86.4, 85.2, 82.6],
}


def _paper_contrast(task: str) -> float:
    values = PAPER[task]
    return sum(values[4:8]) / 4 - (sum(values[:4]) + sum(values[8:])) / 8


def _records(layer_scores: dict[str, dict[int, list[float]]], full_ft: float = 90.0) -> list[dict]:
    """``layer_scores[task][k]`` = one score per seed for our layer k (Spearman for STS-B)."""
    records = []
    for task, layers in layer_scores.items():
        seeds = range(1, len(next(iter(layers.values()))) + 1)
        methods = {f"layer_{k}": values for k, values in layers.items()}
        methods["full_ft"] = [full_ft + 0.1 * s for s in seeds]
        for method, values in methods.items():
            for seed, score in zip(seeds, values):
                report = ({"spearman": score / 100, "pearson": (score - 5) / 100} if task == "sts-b"
                          else {"f1": score / 100, "accuracy": (score - 3) / 100})
                records.append(make_record(task, method, seed, score - 5 if task == "sts-b" else score, STUDY,
                                           report=report))
    return records


def _contrast_scores(differences: list[float], base: float = 70.0) -> dict[int, list[float]]:
    """Six layers: outer layers at ``base`` (+ a seed offset), the middle ones (L3, L4) ``differences[s]`` above,
    so that the per-seed contrast is exactly ``differences``."""
    scores = {}
    for k in range(1, 7):
        lift = differences if band_of(k, 6) == "middle" else [0.0] * len(differences)
        scores[k] = [base + 0.25 * s + lift[s] for s in range(len(differences))]
    return scores


@pytest.mark.parametrize(("layer", "layers", "expected"), [
    (3, 6, [(5, Fraction(1, 2)), (6, Fraction(1, 2))]),
    (6, 6, [(11, Fraction(1, 2)), (12, Fraction(1, 2))]),
    (7, 12, [(7, Fraction(1))]),
    # 5 layers: layer 1 covers (0, 1/5] = all of the paper's #1 and #2 and 0.4 of #3: weights 5/12, 5/12, 2/12.
    (1, 5, [(1, Fraction(5, 12)), (2, Fraction(5, 12)), (3, Fraction(2, 12))]),
])
def test_depth_overlap(layer, layers, expected):
    assert depth_overlap(layer, layers) == expected
    assert sum(weight for _, weight in expected) == 1


def test_depth_overlap_refuses_a_layer_outside_the_model():
    with pytest.raises(ValueError, match="number layers from 1"):
        depth_overlap(0, 6)


def test_layers_sit_beside_the_paper_at_the_same_relative_depth(tmp_path):
    scores = {"sts-b": {k: [70.0 + k, 71.0 + k, 72.0 + k] for k in range(1, 7)},
              "mrpc": {k: [80.0, 81.0, 82.0] for k in range(1, 7)}}
    paths = write_table3(_records(scores), tmp_path)
    assert {"table3", "table3_csv", "table3_best_band", "report"} <= set(paths)
    md = _md_rows(tmp_path / "table3.md")
    assert md["Layer"] == ["depth", "band", "paper's layers", "mrpc (f1)", "paper", "Δ", "sts-b (spearman)", "paper",
                           "Δ"]
    # Our L3 of 6 covers depth (1/3, 1/2]: the paper's #5 and #6, averaged.
    paper_l3 = (PAPER["sts-b"][4] + PAPER["sts-b"][5]) / 2
    assert md["L3"][:3] == ["0.33–0.50", "middle", "#5–#6"]
    assert md["L3"][6:9] == ["74.0 ± 1.0", f"{paper_l3:.1f}", f"{74.0 - paper_l3:+.1f}"]
    assert md["L1"][3:6] == ["81.0 ± 1.0", f"{(84.7 + 85.9) / 2:.1f}", f"{81.0 - (84.7 + 85.9) / 2:+.1f}"]
    assert md["L6"][:3] == ["0.83–1.00", "upper", "#11–#12"]
    # Full-FT beside the paper's Full-FT, with its std.
    assert md["Full-FT"][3:6] == ["90.2 ± 0.1", "90.9 ± 1.0", "-0.7"]
    with open(tmp_path / "table3.csv", encoding="utf-8") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert float(rows["layer_3"]["sts-b_paper"]) == pytest.approx(paper_l3)
    assert float(rows["layer_3"]["sts-b_mean"]) == pytest.approx(74.0)  # Spearman, not the Pearson headline
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "Layers compared by relative depth" in text and "our L3 ↔ #5–#6" in text


def test_twelve_layers_sit_beside_the_papers_own_layer_with_its_std(tmp_path):
    write_table3(_records({"sts-b": {k: [80.0, 81.0, 82.0] for k in range(1, 13)}}), tmp_path)
    md = _md_rows(tmp_path / "table3.md")
    assert md["L5"][:3] == ["0.33–0.42", "middle", "#5"]
    assert md["L5"][3:6] == ["81.0 ± 1.0", "86.7 ± 0.3", "-5.7"]
    assert md["L12"] == ["0.92–1.00", "upper", "#12", "81.0 ± 1.0", "83.5 ± 0.2", "-2.5"]


def test_best_band_per_task_is_descriptive(tmp_path):
    scores = {"sts-b": {k: [70.0 + (5 if k == 4 else 0)] * 3 for k in range(1, 7)},
              "mrpc": {k: [80.0 + (5 if k == 6 else 0)] * 3 for k in range(1, 7)}}
    write_table3(_records(scores), tmp_path)
    best = _md_rows(tmp_path / "table3_best_band.md")
    # The paper's best STS-B layer is #8 (87.2), MRPC #5 (89.0): both in the middle third of 12.
    assert best["sts-b (spearman)"] == ["L4 of 6 (middle)", "#8 of 12 (middle)", "yes"]
    assert best["mrpc (f1)"] == ["L6 of 6 (upper)", "#5 of 12 (middle)", "no"]


def test_middle_band_contrast_reproduces_with_six_seeds(tmp_path):
    differences = [3.0, 2.0, 4.0, 3.5, 2.5, 3.0]
    write_table3(_records({"sts-b": _contrast_scores(differences), "mrpc": _contrast_scores(differences, 80.0)}),
                 tmp_path)
    row = _finding(tmp_path / "report.md", "sts-b: the middle third")
    # Every per-seed contrast positive: exact sign-flip p = 2^-6; Holm over 2 tasks doubles it.
    assert row[1] == "**reproduces**"
    assert row[2] == f"{2 / 64:.3g} (raw {1 / 64:.3g})"
    assert row[3] == f"{sum(differences) / 6:+.2f} points"
    assert row[5] == f"{_paper_contrast('sts-b'):+.2f} points"
    assert "mean of L3, L4 − mean of L1, L2, L5, L6" in row[7]
    assert _finding(tmp_path / "report.md", "mrpc: the middle third")[5] == f"{_paper_contrast('mrpc'):+.2f} points"


def test_middle_band_contrast_at_three_seeds_is_underpowered(tmp_path):
    differences = [3.0, 2.0, 4.0]
    write_table3(_records({"sts-b": _contrast_scores(differences), "mrpc": _contrast_scores(differences, 80.0)}),
                 tmp_path)
    row = _finding(tmp_path / "report.md", "sts-b: the middle third")
    # 2^-3 = 0.125: three seeds can never reach alpha, however clear the pattern.
    assert row[1] == "**underpowered (paper's direction)**"
    assert row[2] == f"{0.25:.3g} (raw {0.125:.3g})"
    assert row[4] == "∞ (cannot reach alpha)"


def test_outer_layers_significantly_above_is_contradicted(tmp_path):
    differences = [-3.0, -2.0, -4.0, -3.5, -2.5, -3.0]
    write_table3(_records({"sts-b": _contrast_scores(differences), "mrpc": _contrast_scores(differences, 80.0)}),
                 tmp_path)
    row = _finding(tmp_path / "report.md", "sts-b: the middle third")
    assert row[1] == "**contradicted**" and row[3] == "-3.00 points"


def test_no_contrast_where_the_test_could_see_the_papers_is_inconclusive(tmp_path):
    strong = [3.0, 2.0, 4.0, 3.5, 2.5, 3.0]
    flat = [1.0, -1.0, 0.6, -0.4, 1.0, -1.0]  # mean +0.03, sd 0.9: could see MRPC's 2.66-point contrast
    write_table3(_records({"sts-b": _contrast_scores(strong), "mrpc": _contrast_scores(flat, 80.0)}), tmp_path)
    assert _finding(tmp_path / "report.md", "sts-b: the middle third")[1] == "**reproduces**"
    row = _finding(tmp_path / "report.md", "mrpc: the middle third")
    assert row[1] == "**inconclusive (paper's direction)**"
    assert float(row[4].split()[0]) < _paper_contrast("mrpc")


def test_table3_needs_layer_runs(tmp_path):
    records = [r for r in _records({"sts-b": _contrast_scores([1.0, 2.0, 3.0])}) if r["method"] == "full_ft"]
    with pytest.raises(StudyError, match="no layer_<k> runs"):
        write_table3(records, tmp_path)


@pytest.mark.parametrize(("layer", "layers", "band"), [
    (1, 6, "lower"), (2, 6, "lower"), (3, 6, "middle"), (4, 6, "middle"), (5, 6, "upper"), (6, 6, "upper"),
    (5, 12, "middle"), (8, 12, "middle"), (9, 12, "upper"), (4, 12, "lower"),
])
def test_band_of(layer, layers, band):
    assert band_of(layer, layers) == band
