"""Transferability study layouts (Tables 1 and 3) on hand-made records with known scores."""

from __future__ import annotations

import csv
import math

import pytest
from scipy import stats

from pet_lightning.studies.common import DIFFERS, INCONCLUSIVE, REPRODUCES, UNTESTABLE
from pet_lightning.studies.transferability import band_of, write_table1, write_table3
from pet_lightning.sweeps.files import SweepError
from tests.studies.records import finding as _finding
from tests.studies.records import make_record
from tests.studies.records import md_rows as _md_rows
from tests.studies.records import mean as _mean

SEEDS = [1, 2, 3, 4, 5]
# Scores x 100 per (task, method), one per seed.
TABLE1 = {
    ("sts-b", "full_ft"): [78, 79, 80, 79, 79],  # mean 79.0 (paper 89.0: -10.0)
    ("sts-b", "layernorms"): [86, 87, 88, 89, 90],  # mean 88.0 (paper 88.4: -0.4)
    ("sts-b", "bitfit"): [85, 86, 87, 88, 89],  # mean 87.0 (paper 88.2: -1.2)
    ("sts-b", "random"): [60, 61, 62, 63, 64],  # mean 62.0 (no paper figure)
    ("sts-b", "frozen"): [66, 67, 68, 69, 70],  # mean 68.0 (paper 68.3: -0.3)
    ("sst-2", "full_ft"): [90, 91, 92, 93, 94],  # mean 92.0
    ("sst-2", "layernorms"): [88, 89, 90, 91, 92],  # mean 90.0
    ("sst-2", "bitfit"): [87, 88, 89, 90, 91],  # mean 89.0
    ("sst-2", "random"): [70, 71, 72, 73, 74],  # mean 72.0
    ("sst-2", "frozen"): [60, 61, 62, 63, 64],  # mean 62.0
}
# % trainable parameters (head included) per (task, method): the column is the mean over the method's runs.
PCT = {"full_ft": (100.0, 100.0), "layernorms": (0.03, 0.05), "bitfit": (0.09, 0.11), "random": (0.09, 0.11),
       "frozen": (0.001, 0.003)}
ROW_NAMES = {"full_ft": "Full-FT", "layernorms": "LayerNorms", "bitfit": "BitFit", "random": "Random",
             "frozen": "Frozen"}


def _record(task: str, method: str, seed: int, score: float, study: str = "transferability_table1",
            **extra) -> dict:
    pct = PCT.get(method, (1.0, 1.0))[0 if task == "sts-b" else 1]
    return make_record(task, method, seed, score, study, pct=pct, steps=100, best_step=50, **extra)


def _records(scores: dict, study: str = "transferability_table1") -> list[dict]:
    return [_record(task, method, seed, score, study)
            for (task, method), values in scores.items() for seed, score in zip(SEEDS, values)]



def _read_csv(path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return {row.get("method", row.get("task")): row for row in csv.DictReader(handle)}




def test_table1_cells_paper_difference_param_and_avg(tmp_path):
    paths = write_table1(_records(TABLE1), tmp_path)
    assert {"table1", "table1_csv", "report"} <= set(paths)
    rows = _read_csv(tmp_path / "table1.csv")
    assert list(rows) == ["full_ft", "layernorms", "bitfit", "random", "frozen"]
    for method in ROW_NAMES:
        row = rows[method]
        task_means = []
        for task in ("sts-b", "sst-2"):
            expected = _mean(TABLE1[(task, method)])
            task_means.append(expected)
            assert float(row[f"{task}_mean"]) == pytest.approx(expected)
            assert int(row[f"{task}_n"]) == 5
        assert float(row["avg"]) == pytest.approx(_mean(task_means))
        assert float(row["param_pct"]) == pytest.approx(_mean(PCT[method]))
        assert row["sst-2_paper"] == ""  # the stored table has STS-B figures only
        assert row["avg_paper"] == ""
    assert float(rows["full_ft"]["sts-b_paper"]) == 89.0
    assert rows["random"]["sts-b_paper"] == ""

    md = _md_rows(tmp_path / "table1.md")
    # Tasks sort by resource group (all low here: 800 examples), then name: sst-2 before sts-b.
    assert md["Method"] == ["%Param", "sst-2 (accuracy)", "paper", "Δ", "sts-b (pearson)", "paper", "Δ", "Avg",
                            "paper Avg", "Δ"]
    full = md["Full-FT"]
    assert full[0] == "100.0000"
    assert full[1:4] == ["92.0 ± 1.6", "–", "–"]
    assert full[4:7] == ["79.0 ± 0.7", "89.0", "-10.0"]
    assert full[7:] == ["85.5", "–", "–"]
    assert md["LayerNorms"][0] == "0.0400"
    assert md["LayerNorms"][4:7] == ["88.0 ± 1.6", "88.4", "-0.4"]
    assert md["BitFit"][4:7] == ["87.0 ± 1.6", "88.2", "-1.2"]
    assert md["Frozen"][4:7] == ["68.0 ± 1.6", "68.3", "-0.3"]
    assert md["Random"][4:7] == ["62.0 ± 1.6", "–", "–"]
    assert "‡" not in (tmp_path / "table1.md").read_text(encoding="utf-8")


def test_table1_weak_rows_below_strong_reproduces(tmp_path):
    write_table1(_records(TABLE1), tmp_path)
    finding = _finding(tmp_path / "report.md", "Frozen and Random fall below")
    assert finding[1] == f"**{REPRODUCES}**"
    # Four comparisons per task, two tasks.
    assert finding[2].count(" p = ") == 8


def test_table1_random_equal_to_layernorms_does_not_reproduce(tmp_path):
    scores = dict(TABLE1)
    scores[("sts-b", "random")] = list(TABLE1[("sts-b", "layernorms")])
    write_table1(_records(scores), tmp_path)
    finding = _finding(tmp_path / "report.md", "Frozen and Random fall below")
    assert finding[1] == f"**{DIFFERS}**"
    assert "sts-b: LayerNorms > Random p = 0.5" in finding[2]
    # Random (mean 88) is also above BitFit (87) there: two of the eight tests fail.
    assert "sts-b: BitFit > Random p = " in finding[2]
    assert "(6 of 8 significant; means reversed: 2)" in finding[2]


def test_table1_weak_rows_below_but_not_significantly_is_inconclusive(tmp_path):
    scores = dict(TABLE1)
    # Random just below LayerNorms on STS-B, inside the seeds' spread: in order, not significant.
    scores[("sts-b", "random")] = [value - 0.2 for value in TABLE1[("sts-b", "layernorms")][::-1]]
    scores[("sts-b", "bitfit")] = [value + 1.0 for value in scores[("sts-b", "random")]]
    write_table1(_records(scores), tmp_path)
    finding = _finding(tmp_path / "report.md", "Frozen and Random fall below")
    assert finding[1] == f"**{INCONCLUSIVE}**"
    assert "every mean in order" in finding[2]


def test_table1_kendall_tau_over_published_rows(tmp_path):
    write_table1(_records(TABLE1), tmp_path)
    # Rows with a published STS-B figure, in the table's row order.
    published = {"full_ft": 89.0, "layernorms": 88.4, "bitfit": 88.2, "frozen": 68.3}
    ours = [_mean(TABLE1[("sts-b", method)]) for method in published]
    expected = stats.kendalltau(ours, list(published.values()))
    finding = _finding(tmp_path / "report.md", "row order (sts-b)")
    assert f"tau = {expected.statistic:.2f} (p = {expected.pvalue:.3g})" in finding[2]
    assert "over full_ft, layernorms, bitfit, frozen" in finding[2]
    # tau = 1/3 over 4 rows: the paper's direction, but 4 rows can never reach p < 0.05.
    assert expected.statistic > 0 and expected.pvalue >= 0.05
    assert finding[1] == f"**{INCONCLUSIVE}**"
    # No published SST-2 or average figures: those orders cannot be tested.
    assert _finding(tmp_path / "report.md", "row order (sst-2)")[1] == f"**{UNTESTABLE}**"
    assert _finding(tmp_path / "report.md", "row order (avg)")[1] == f"**{UNTESTABLE}**"


def test_table1_kendall_tau_against_the_paper_does_not_reproduce(tmp_path):
    scores = dict(TABLE1)
    scores[("sts-b", "full_ft")] = [60, 61, 62, 63, 64]
    scores[("sts-b", "frozen")] = [95, 96, 97, 98, 99]
    write_table1(_records(scores), tmp_path)
    published = [89.0, 88.4, 88.2, 68.3]
    ours = [_mean(scores[("sts-b", method)]) for method in ("full_ft", "layernorms", "bitfit", "frozen")]
    expected = stats.kendalltau(ours, published)
    assert expected.statistic < 0
    finding = _finding(tmp_path / "report.md", "row order (sts-b)")
    assert f"tau = {expected.statistic:.2f}" in finding[2]
    assert finding[1] == f"**{DIFFERS}**"


def test_table1_collapsed_seed_scored_zero_and_marked(tmp_path):
    records = _records(TABLE1)
    for record in records:
        if (record["task"], record["method"], record["seed"]) == ("sts-b", "frozen", 5):
            record["score"] = math.nan
    write_table1(records, tmp_path)
    rows = _read_csv(tmp_path / "table1.csv")
    assert float(rows["frozen"]["sts-b_mean"]) == pytest.approx(_mean([66, 67, 68, 69, 0]))
    assert int(rows["frozen"]["sts-b_n"]) == 5
    frozen = _md_rows(tmp_path / "table1.md")["Frozen"]
    assert frozen[4].endswith("‡1")
    assert frozen[4].startswith("54.0 ± ")
    assert "frozen on sts-b (seeds 5)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_table1_refuses_two_studies(tmp_path):
    records = _records(TABLE1)
    records[0]["study"] = "eh_ft_table1"
    with pytest.raises(SweepError, match="not only of study transferability_table1"):
        write_table1(records, tmp_path)


def test_table1_refuses_two_scales(tmp_path):
    records = _records(TABLE1)
    records[0]["scale"] = "paper"
    with pytest.raises(SweepError, match="mix scales"):
        write_table1(records, tmp_path)


def _table3_scores(best: int) -> dict:
    scores = {}
    for task, base in (("sts-b", 70), ("mrpc", 80)):
        for layer in range(1, 7):
            top = base + (10 if layer == best else layer)  # the best layer clearly above the rest
            scores[(task, f"layer_{layer}")] = [top - 1, top, top + 1]
        scores[(task, "full_ft")] = [base + 15, base + 16, base + 17]
    return scores


def _table3_records(best: int) -> list[dict]:
    return [_record(task, method, seed, score, "transferability_table3")
            for (task, method), values in _table3_scores(best).items()
            for seed, score in zip(SEEDS[:3], values)]


def test_table3_middle_layer_best_reproduces(tmp_path):
    paths = write_table3(_table3_records(best=3), tmp_path)
    assert {"table3", "table3_csv", "report"} <= set(paths)
    md = _md_rows(tmp_path / "table3.md")
    assert md["Task"] == ["L1", "L2", "L3", "L4", "L5", "L6", "Full-FT", "best layer (band)"]
    assert md["mrpc (f1)"][-1] == "L3 (middle)"
    assert md["sts-b (pearson)"][-1] == "L3 (middle)"
    assert md["sts-b (pearson)"][2] == "80.0 ± 1.0"
    assert md["sts-b (pearson)"][6] == "86.0 ± 1.0"
    rows = _read_csv(tmp_path / "table3.csv")
    assert int(rows["sts-b"]["best_layer"]) == 3
    assert float(rows["mrpc"]["layer_3"]) == pytest.approx(90.0)
    assert float(rows["mrpc"]["layer_5"]) == pytest.approx(85.0)
    assert float(rows["mrpc"]["full_ft"]) == pytest.approx(96.0)
    finding = _finding(tmp_path / "report.md", "the LayerNorms of the middle layers")
    assert finding[1] == f"**{REPRODUCES}**"
    assert "sts-b: best L3 (middle)" in finding[2] and "mrpc: best L3 (middle)" in finding[2]


def test_table3_top_layer_best_does_not_reproduce(tmp_path):
    write_table3(_table3_records(best=6), tmp_path)
    md = _md_rows(tmp_path / "table3.md")
    assert md["sts-b (pearson)"][-1] == "L6 (upper)"
    finding = _finding(tmp_path / "report.md", "the LayerNorms of the middle layers")
    assert finding[1] == f"**{DIFFERS}**"


def test_table3_needs_layer_runs(tmp_path):
    records = [r for r in _table3_records(best=3) if r["method"] == "full_ft"]
    with pytest.raises(SweepError, match="no layer_<k> runs"):
        write_table3(records, tmp_path)


@pytest.mark.parametrize(("layer", "layers", "band"), [
    (1, 6, "lower"), (2, 6, "lower"), (3, 6, "middle"), (4, 6, "middle"), (5, 6, "upper"), (6, 6, "upper"),
    (6, 12, "middle"), (9, 12, "upper"), (4, 12, "lower"),
])
def test_band_of(layer, layers, band):
    assert band_of(layer, layers) == band
