"""Transferability Table 1 on hand-made records: the paper's figure beside ours on its metric in every cell, and
each verdict path of the row-order and weak-below-strong findings (Table 3: test_transferability_table3.py)."""

from __future__ import annotations

import csv
import math

import pytest
from scipy import stats

from pet_lightning.errors import StudyError
from pet_lightning.studies.transferability import TABLE1_NAMES, write_table1
from pet_lightning.sweeps.files import SweepError
from tests.helpers.records import finding as _finding
from tests.helpers.records import make_record
from tests.helpers.records import md_rows as _md_rows
from tests.helpers.records import mean as _mean

SEEDS = [1, 2, 3, 4, 5]
STUDY = "transferability_table1"
# Scores x 100 on the paper's metric (STS-B: Spearman), one per seed.
TABLE1 = {
    ("sts-b", "full_ft"): [89, 90, 91, 90, 90],  # mean 90.0 (paper 89.0 ± 0.5: +1.0)
    ("sts-b", "layernorms"): [86, 87, 88, 89, 90],  # mean 88.0 (paper 88.4 ± 0.1: -0.4)
    ("sts-b", "bitfit"): [85, 86, 87, 88, 89],  # mean 87.0 (paper 88.2 ± 0.0: -1.2)
    ("sts-b", "random"): [60, 61, 62, 63, 64],  # mean 62.0 (paper 84.3 ± 0.0)
    ("sts-b", "frozen"): [66, 67, 68, 69, 70],  # mean 68.0 (paper 68.3 ± 0.1: -0.3)
    ("sst-2", "full_ft"): [90, 91, 92, 93, 94],  # mean 92.0
    ("sst-2", "layernorms"): [88, 89, 90, 91, 92],  # mean 90.0
    ("sst-2", "bitfit"): [87, 88, 89, 90, 91],  # mean 89.0
    ("sst-2", "random"): [70, 71, 72, 73, 74],  # mean 72.0
    ("sst-2", "frozen"): [60, 61, 62, 63, 64],  # mean 62.0
}
PCT = {"full_ft": (100.0, 100.0), "layernorms": (0.03, 0.05), "bitfit": (0.09, 0.11), "random": (0.09, 0.11),
       "frozen": (0.001, 0.003)}
# The headline (Pearson) sits 5 points below Spearman, so a table on the headline would show it.
PEARSON_GAP = 5.0


def _report(task: str, score: float, mismatched: float | None) -> dict:
    if task == "sts-b":
        return {"spearman": score / 100, "pearson": (score - PEARSON_GAP) / 100}
    if task == "mnli":
        second = mismatched if mismatched is not None else score
        return {"accuracy": score / 100, "accuracy_mismatched": second / 100}
    return {"accuracy": score / 100}


def _records(scores: dict, mismatched: dict | None = None) -> list[dict]:
    records = []
    for (task, method), values in scores.items():
        pct = PCT.get(method, (1.0, 1.0))[0 if task == "sts-b" else 1]
        second = (mismatched or {}).get((task, method), [None] * len(values))
        for seed, score, mm in zip(SEEDS, values, second):
            headline = score - PEARSON_GAP if task == "sts-b" else score
            records.append(make_record(task, method, seed, headline, STUDY, pct=pct,
                                       report=_report(task, score, mm)))
    return records


def _read_csv(path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}


def test_paper_names_in_one_place():
    assert TABLE1_NAMES.rows["layernorms_a"] == "LayerNorms_A" and TABLE1_NAMES.rows["frozen"] == "Frozen"
    assert TABLE1_NAMES.tasks == {"mnli": "mnli-m"}
    assert TABLE1_NAMES.metrics == {"sts-b": "spearman"}
    assert "param_pct" not in TABLE1_NAMES.tasks.values() and "avg" not in TABLE1_NAMES.tasks.values()


def test_table1_cells_beside_the_paper_on_its_metric(tmp_path):
    paths = write_table1(_records(TABLE1), tmp_path)
    assert {"table1", "table1_csv", "report"} <= set(paths)
    md = _md_rows(tmp_path / "table1.md")
    # Tasks sort by resource group (all low: 800 examples), then name; STS-B is scored on Spearman.
    assert md["Method"] == ["%Param (ours)", "paper %Param", "sst-2 (accuracy)", "paper", "Δ", "sts-b (spearman)",
                            "paper", "Δ", "Avg (ours, same columns)", "paper, same tasks", "Δ"]
    assert md["Full-FT"][:2] == ["100.0000", "100.00"]
    assert md["Full-FT"][2:5] == ["92.0 ± 1.6", "93.1 ± 0.1", "-1.1"]
    assert md["Full-FT"][5:8] == ["90.0 ± 0.7", "89.0 ± 0.5", "+1.0"]
    assert md["LayerNorms"][:2] == ["0.0400", "0.03"]
    assert md["LayerNorms"][5:8] == ["88.0 ± 1.6", "88.4 ± 0.1", "-0.4"]
    assert md["BitFit"][5:8] == ["87.0 ± 1.6", "88.2 ± 0.0", "-1.2"]
    assert md["Random"][5:8] == ["62.0 ± 1.6", "84.3 ± 0.0", "-22.3"]
    assert md["Frozen"][5:8] == ["68.0 ± 1.6", "68.3 ± 0.1", "-0.3"]
    # Avg beside the paper re-averaged over the same two columns (not its printed 9-column Avg of 82.8).
    paper_avg = (93.1 + 89.0) / 2
    assert md["Full-FT"][8:] == ["91.0", f"{paper_avg:.1f}", f"{91.0 - paper_avg:+.1f}"]
    rows = _read_csv(tmp_path / "table1.csv")
    assert list(rows) == ["full_ft", "layernorms", "bitfit", "random", "frozen"]
    full = rows["full_ft"]
    assert float(full["avg"]) == pytest.approx(91.0)
    assert float(full["avg_paper_same_tasks"]) == pytest.approx((93.1 + 89.0) / 2)
    assert float(full["sts-b_paper"]) == 89.0 and float(full["sts-b_paper_std"]) == 0.5
    assert float(full["sts-b_mean"]) == pytest.approx(90.0)  # Spearman, not the Pearson headline (85.0)
    assert float(rows["layernorms"]["param_pct"]) == pytest.approx(0.04)
    assert float(rows["layernorms"]["param_pct_paper"]) == 0.03
    assert rows["layernorms"]["paper_row"] == "LayerNorms"


def test_table1_row_the_paper_lacks_says_so(tmp_path):
    scores = {**TABLE1, ("sts-b", "lora"): [80, 81, 82, 83, 84], ("sst-2", "lora"): [85, 86, 87, 88, 89]}
    write_table1(_records(scores), tmp_path)
    lora = _md_rows(tmp_path / "table1.md")["lora"]
    assert lora[1] == "(not in the paper)"
    assert lora[2:5] == ["87.0 ± 1.6", "(not in the paper)", "–"]
    assert lora[8:] == ["84.5", "(not in the paper)", "–"]


def test_table1_mnli_matched_and_mismatched_columns(tmp_path):
    scores = {("mnli", "full_ft"): [80, 81, 82, 83, 84], ("mnli", "bitfit"): [70, 71, 72, 73, 74]}
    mismatched = {("mnli", "full_ft"): [82, 83, 84, 85, 86], ("mnli", "bitfit"): [71, 72, 73, 74, 75]}
    write_table1(_records(scores, mismatched), tmp_path)
    md = _md_rows(tmp_path / "table1.md")
    assert md["Method"][2:8] == ["mnli-m (accuracy)", "paper", "Δ", "mnli-mm (accuracy_mismatched)", "paper", "Δ"]
    assert md["Full-FT"][2:8] == ["82.0 ± 1.6", "83.4 ± 0.2", "-1.4", "84.0 ± 1.6", "83.7 ± 0.4", "+0.3"]
    # BitFit's MNLI figures are quoted from the BitFit paper: marked, with the footnote under the table.
    assert md["BitFit"][3] == "81.4 ± 0.2 *" and md["BitFit"][6] == "82.2 ± 0.2 *"
    assert md["BitFit"][8:] == ["72.5", f"{(81.4 + 82.2) / 2:.1f}", f"{72.5 - (81.4 + 82.2) / 2:+.1f}"]
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "> * from Ben Zaken et al. 2022 (BitFit paper)." in text


def test_table1_mnli_without_mismatched_is_refused(tmp_path):
    records = _records({("mnli", "full_ft"): [80, 81, 82, 83, 84]})
    del records[0]["report"]["accuracy_mismatched"]
    with pytest.raises(SweepError, match="accuracy_mismatched"):
        write_table1(records, tmp_path)


# --- Row order: one-sided Kendall, Holm over the scopes ----------------------------------------------------------

FOUR_ROWS = ("full_ft", "layernorms", "bitfit", "frozen")  # paper STS-B: 89.0 > 88.4 > 88.2 > 68.3


def _sts_b_only(scores: dict) -> dict:
    return {key: values for key, values in scores.items() if key[0] == "sts-b"}


def test_kendall_four_rows_in_the_paper_order_reproduces_at_one_in_24(tmp_path):
    scores = {("sts-b", m): [v - 10 * i for v in [90, 91, 92, 93, 94]] for i, m in enumerate(FOUR_ROWS)}
    write_table1(_records(scores), tmp_path)
    row = _finding(tmp_path / "report.md", "row order (sts-b)")
    # One scope only (one column, no avg): a family of one; exact one-sided p of tau = 1 over 4 rows = 1/24.
    assert row[1] == "**reproduces**"
    assert row[2] == f"{1 / 24:.3g} (raw {1 / 24:.3g})"
    assert row[3] == "+1.00 tau" and row[4] == "1.00 tau" and row[5] == "+1.00 tau"
    assert "n = 4; rows Full-FT, LayerNorms, BitFit, Frozen; no discordant pair" in row[7]


def test_kendall_holm_over_three_scopes_makes_four_rows_underpowered(tmp_path):
    scores = {(task, m): [v - 10 * i for v in [90, 91, 92, 93, 94]]
              for task in ("sts-b", "sst-2") for i, m in enumerate(FOUR_ROWS)}
    write_table1(_records(scores), tmp_path)
    for scope in ("sst-2", "sts-b", "avg"):
        row = _finding(tmp_path / "report.md", f"row order ({scope})")
        # Holm: 3 x 1/24 = 0.125 each; 4 rows can never pass alpha / 3, so the MDE is infinite.
        assert row[2] == f"{3 / 24:.3g} (raw {1 / 24:.3g})"
        assert row[1] == "**underpowered (paper's direction)**"
        assert row[4] == "∞ (cannot reach alpha)"
    assert "Holm over the 3 scopes" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_kendall_reversed_order_is_contradicted(tmp_path):
    scores = {("sts-b", m): [v + 10 * i for v in [50, 51, 52, 53, 54]] for i, m in enumerate(FOUR_ROWS)}
    write_table1(_records(scores), tmp_path)
    row = _finding(tmp_path / "report.md", "row order (sts-b)")
    assert row[1] == "**contradicted**"
    assert row[3] == "-1.00 tau"
    assert "6 discordant" in row[7]


def test_kendall_two_swaps_over_five_rows_is_inconclusive(tmp_path):
    # Paper: Full-FT > LayerNorms > BitFit > Random > Frozen. Ours swaps the first two and the last two.
    means = {"layernorms": 90, "full_ft": 89, "bitfit": 88, "frozen": 87, "random": 86}
    scores = {("sts-b", m): [mean - 1, mean, mean + 1, mean, mean] for m, mean in means.items()}
    write_table1(_records(scores), tmp_path)
    paper = {"full_ft": 89.0, "layernorms": 88.4, "bitfit": 88.2, "random": 84.3, "frozen": 68.3}
    order = ["full_ft", "layernorms", "bitfit", "random", "frozen"]  # the table's row order
    expected = stats.kendalltau([means[m] for m in order], [paper[m] for m in order], alternative="greater")
    assert expected.statistic == pytest.approx(0.6) and expected.pvalue == pytest.approx(14 / 120)
    row = _finding(tmp_path / "report.md", "row order (sts-b)")
    # 5 rows can show tau = 0.8 significant (p = 5/120): the test could see the paper's order, and did not.
    assert row[1] == "**inconclusive (paper's direction)**"
    assert row[2].startswith(f"{14 / 120:.3g}") and row[3] == "+0.60 tau" and row[4] == "0.80 tau"
    assert "2 discordant: Full-FT < LayerNorms here, > in the paper; Random < Frozen here, > in the paper" in row[7]


# --- Frozen and Random below LayerNorms and BitFit: an intersection of one-sided Welch tests -------------------


def test_weak_below_strong_reproduces_with_the_papers_gap_per_pair(tmp_path):
    write_table1(_records(TABLE1), tmp_path)
    row = _finding(tmp_path / "report.md", "Frozen and Random fall below")
    assert row[1] == "**reproduces**"
    assert "intersection of 8 pairs" in row[7]
    pair = _finding(tmp_path / "report.md", "sts-b: LayerNorms > Frozen")
    expected = stats.ttest_ind(TABLE1[("sts-b", "layernorms")], TABLE1[("sts-b", "frozen")], equal_var=False,
                               alternative="greater")
    assert pair[1] == "**reproduces**" and pair[2] == f"{expected.pvalue:.3g}"
    assert pair[3] == "+20.00 points"
    assert pair[5] == f"{88.4 - 68.3:+.2f} points" and "paper 88.4 − 68.3" in pair[7]
    assert _finding(tmp_path / "report.md", "sst-2: BitFit > Random")[5] == f"{89.6 - 86.4:+.2f} points"


def test_weak_significantly_above_strong_is_contradicted(tmp_path):
    scores = {**TABLE1, ("sts-b", "random"): [v + 5 for v in TABLE1[("sts-b", "bitfit")]]}
    write_table1(_records(scores), tmp_path)
    pair = _finding(tmp_path / "report.md", "sts-b: BitFit > Random")
    assert pair[1] == "**contradicted**" and pair[3] == "-5.00 points"
    assert _finding(tmp_path / "report.md", "Frozen and Random fall below")[1] == "**contradicted**"


def test_weak_slightly_above_strong_within_noise_is_inconclusive_not_contradicted(tmp_path):
    # Random 0.5 above BitFit on STS-B, inside the seeds' spread; the test could see the paper's 3.9-point gap.
    scores = {**TABLE1, ("sts-b", "random"): [v + 0.5 for v in TABLE1[("sts-b", "bitfit")][::-1]]}
    write_table1(_records(scores), tmp_path)
    pair = _finding(tmp_path / "report.md", "sts-b: BitFit > Random")
    assert pair[1] == "**inconclusive (opposite direction)**"
    assert pair[3] == "-0.50 points" and pair[5] == "+3.90 points"
    assert float(pair[4].split()[0]) < 3.9
    claim = _finding(tmp_path / "report.md", "Frozen and Random fall below")
    assert claim[1] == "**inconclusive (opposite direction)**"
    assert "the weakest, sts-b: BitFit > Random, speaks" in claim[7]


def test_weak_below_strong_with_wide_spread_is_underpowered(tmp_path):
    # Random 5 below BitFit on average, but spread over 30 points: the test cannot see the paper's 3.9.
    scores = {**TABLE1, ("sts-b", "random"): [67, 97, 72, 92, 82]}
    write_table1(_records(scores), tmp_path)
    pair = _finding(tmp_path / "report.md", "sts-b: BitFit > Random")
    assert pair[1] == "**underpowered (paper's direction)**"
    assert float(pair[4].split()[0]) > 3.9
    assert int(pair[6]) > 5  # seeds needed for the paper's gap at this spread
    claim = _finding(tmp_path / "report.md", "Frozen and Random fall below")
    assert claim[1] == "**underpowered (paper's direction)**"


def test_table1_collapsed_seed_scored_zero_and_marked(tmp_path):
    records = _records(TABLE1)
    for record in records:
        if (record["task"], record["method"], record["seed"]) == ("sts-b", "frozen", 5):
            record["report"]["spearman"] = math.nan
    write_table1(records, tmp_path)
    rows = _read_csv(tmp_path / "table1.csv")
    assert float(rows["frozen"]["sts-b_mean"]) == pytest.approx(_mean([66, 67, 68, 69, 0]))
    assert int(rows["frozen"]["sts-b_n"]) == 5
    frozen = _md_rows(tmp_path / "table1.md")["Frozen"]
    assert frozen[5].startswith("54.0 ± ") and frozen[5].endswith("‡1")
    assert "frozen on sts-b (seeds 5)" in (tmp_path / "report.md").read_text(encoding="utf-8")


def test_table1_refuses_two_studies(tmp_path):
    records = _records(TABLE1)
    records[0]["study"] = "eh_ft_table1"
    with pytest.raises(StudyError, match="not only of study transferability_table1"):
        write_table1(records, tmp_path)


def test_table1_refuses_two_scales(tmp_path):
    records = _records(TABLE1)
    records[0]["scale"] = "paper"
    with pytest.raises(StudyError, match="mix scales"):
        write_table1(records, tmp_path)
