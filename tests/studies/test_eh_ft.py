"""EH-FT study layout (Table 1 with the L2-distance column) on hand-made records with known scores."""

from __future__ import annotations

import csv
import statistics

import pytest
from scipy import stats

from pet_lightning.studies.common import DIFFERS, REPRODUCES, UNTESTABLE
from pet_lightning.studies.eh_ft import distances, write_table1
from pet_lightning.sweeps.files import SweepError
from tests.studies.records import make_record
from tests.studies.records import md_rows as _md_rows
from tests.studies.records import mean as _mean

SEEDS = [11, 22, 33]
TASKS = ("sts-b", "sst-2")
# Scores x 100 per (task, method), one per seed.
SCORES = {
    ("sts-b", "finetuning"): [80, 82, 84], ("sst-2", "finetuning"): [90, 91, 92],  # seed avgs 85, 86.5, 88
    ("sts-b", "lp_ft"): [81, 82, 83], ("sst-2", "lp_ft"): [90, 90, 91],  # 85.5, 86, 87
    # Better than both baselines on every seed, by a margin that varies a little (a paired test needs spread).
    ("sts-b", "eh_ft_lora"): [85, 88, 89], ("sst-2", "eh_ft_lora"): [93, 94, 96],  # 89, 91, 92.5
    # Worse than Finetuning on every seed.
    ("sts-b", "eh_ft_pt"): [75, 76, 78], ("sst-2", "eh_ft_pt"): [85, 87, 86],  # 80, 81.5, 82
    ("sts-b", "eh_ft_bitfit"): [80, 83, 83], ("sst-2", "eh_ft_bitfit"): [90, 91, 93],  # 85, 87, 88
    ("sts-b", "linear_probing"): [60, 61, 62], ("sst-2", "linear_probing"): [80, 81, 82],
}
# Total L2 distance from the pretrained backbone per (task, method), one per seed; eh_ft_bitfit has none.
DISTANCE = {
    ("sts-b", "finetuning"): [10.0, 11.0, 12.0], ("sst-2", "finetuning"): [12.0, 13.0, 15.0],  # 11, 12, 13.5
    ("sts-b", "lp_ft"): [8.0, 9.0, 10.0], ("sst-2", "lp_ft"): [8.0, 9.0, 10.0],
    ("sts-b", "eh_ft_lora"): [5.0, 6.0, 6.0], ("sst-2", "eh_ft_lora"): [7.0, 6.0, 8.0],  # 6, 6, 7: nearer
    ("sts-b", "eh_ft_pt"): [12.0, 14.0, 15.0], ("sst-2", "eh_ft_pt"): [14.0, 14.0, 15.0],  # 13, 14, 15: farther
    ("sts-b", "linear_probing"): [0.0, 0.0, 0.0], ("sst-2", "linear_probing"): [0.0, 0.0, 0.0],
}
PCT = {"finetuning": 100.0, "lp_ft": 100.0, "eh_ft_lora": 100.0, "eh_ft_pt": 100.0, "eh_ft_bitfit": 100.0,
       "linear_probing": 0.5}
ORDER = ["finetuning", "linear_probing", "lp_ft", "eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit"]


def _record(task: str, method: str, index: int, study: str = "eh_ft_table1") -> dict:
    seed = SEEDS[index]
    record = make_record(task, method, seed, SCORES[(task, method)][index], study, pct=PCT[method], steps=200,
                         best_step=150, wall_s=60.0)
    if (task, method) in DISTANCE:
        total = DISTANCE[(task, method)][index]
        record["distance"] = {"total": total, "rest": total / 10, "layers": {"0": total / 2, "1": total / 2}}
    return record


def _records(study: str = "eh_ft_table1") -> list[dict]:
    return [_record(task, method, index, study) for task, method in SCORES for index in range(len(SEEDS))]



def _seed_averages(table: dict, method: str) -> list[float]:
    return [_mean([table[(task, method)][i] for task in TASKS]) for i in range(len(SEEDS))]


def _read_csv(path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}




def _finding(report_md, claim: str) -> list[str]:
    for line in report_md.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == claim:
            return cells
    raise AssertionError(f"no finding {claim!r} in {report_md}")


@pytest.fixture
def report_dir(tmp_path):
    paths = write_table1(_records(), tmp_path)
    assert {"table1", "table1_csv", "report"} <= set(paths)
    return tmp_path


def test_table1_cells_and_distance_column(report_dir):
    rows = _read_csv(report_dir / "table1.csv")
    assert list(rows) == ORDER
    for method in ORDER:
        row = rows[method]
        for task in TASKS:
            assert float(row[f"{task}_mean"]) == pytest.approx(_mean(SCORES[(task, method)]))
            assert row[f"{task}_paper"] == ""  # no published EH-FT table is stored
        assert float(row["avg"]) == pytest.approx(_mean([_mean(SCORES[(task, method)]) for task in TASKS]))
        assert float(row["param_pct"]) == pytest.approx(PCT[method])
        if (TASKS[0], method) in DISTANCE:
            assert float(row["distance"]) == pytest.approx(_mean(_seed_averages(DISTANCE, method)))
    assert float(rows["finetuning"]["distance"]) == pytest.approx((11 + 12 + 13.5) / 3)
    assert rows["eh_ft_bitfit"]["distance"] == "nan"

    md = _md_rows(report_dir / "table1.md")
    assert md["Method"] == ["%Param", "sst-2 (accuracy)", "paper", "Δ", "sts-b (pearson)", "paper", "Δ", "Avg",
                            "L2 distance"]
    finetuning = md["Finetuning"]
    assert finetuning[0] == "100.0000"
    assert finetuning[1:7] == ["91.0 ± 1.0", "–", "–", "82.0 ± 2.0", "–", "–"]
    assert finetuning[7] == "86.5"
    per_seed = _seed_averages(DISTANCE, "finetuning")
    assert finetuning[8] == f"{_mean(per_seed):.2f} ± {statistics.stdev(per_seed):.2f}"
    assert md["Linear Probing"][0] == "0.5000"
    assert md["Linear Probing"][8] == "0.00 ± 0.00"
    assert md["EH-FT_BitFit"][8] == "– ± –"


def test_variant_better_on_every_seed_reproduces_with_scipy_p(report_dir):
    ours, theirs = _seed_averages(SCORES, "eh_ft_lora"), _seed_averages(SCORES, "finetuning")
    assert all(a > b for a, b in zip(ours, theirs))
    expected = stats.ttest_rel(ours, theirs, alternative="greater")
    finding = _finding(report_dir / "report.md", "EH-FT_LoRA beats Finetuning on average (paired by seed)")
    assert finding[1] == f"**{REPRODUCES}**"
    assert f"one-tailed p = {expected.pvalue:.3g}" in finding[2]
    assert f"t = {expected.statistic:.2f}" in finding[2]
    assert f"mean gain {_mean([a - b for a, b in zip(ours, theirs)]):+.2f}" in finding[2]
    assert "seeds 11, 22, 33" in finding[2]
    versus_lp_ft = _finding(report_dir / "report.md", "EH-FT_LoRA beats LP-FT on average (paired by seed)")
    expected = stats.ttest_rel(ours, _seed_averages(SCORES, "lp_ft"), alternative="greater")
    assert versus_lp_ft[1] == f"**{REPRODUCES}**"
    assert f"one-tailed p = {expected.pvalue:.3g}" in versus_lp_ft[2]


def test_worse_variant_does_not_reproduce(report_dir):
    finding = _finding(report_dir / "report.md", "EH-FT_PT beats Finetuning on average (paired by seed)")
    assert finding[1] == f"**{DIFFERS}**"
    expected = stats.ttest_rel(_seed_averages(SCORES, "eh_ft_pt"), _seed_averages(SCORES, "finetuning"),
                               alternative="greater")
    assert f"one-tailed p = {expected.pvalue:.3g}" in finding[2]


def test_distance_findings(report_dir):
    nearer = _finding(report_dir / "report.md",
                      "EH-FT_LoRA ends nearer the pretrained weights than Finetuning (L2 distance)")
    ours, theirs = _seed_averages(DISTANCE, "eh_ft_lora"), _seed_averages(DISTANCE, "finetuning")
    assert all(a < b for a, b in zip(ours, theirs))
    expected = stats.ttest_rel(ours, theirs, alternative="less")
    assert nearer[1] == f"**{REPRODUCES}**"
    assert f"distance ratio {_mean(ours) / _mean(theirs):.3f}" in nearer[2]
    assert f"one-tailed p = {expected.pvalue:.3g}" in nearer[2]
    farther = _finding(report_dir / "report.md",
                       "EH-FT_PT ends nearer the pretrained weights than Finetuning (L2 distance)")
    assert farther[1] == f"**{DIFFERS}**"
    missing = _finding(report_dir / "report.md",
                       "EH-FT_BitFit ends nearer the pretrained weights than Finetuning (L2 distance)")
    assert missing[1] == f"**{UNTESTABLE}**"


def test_distances_average_over_tasks_per_seed():
    found = distances(_records())
    assert found["finetuning"] == pytest.approx({11: 11.0, 22: 12.0, 33: 13.5})
    assert "eh_ft_bitfit" not in found


def test_refuses_records_of_another_study(tmp_path):
    records = _records()
    records[0]["study"] = "transferability_table1"
    with pytest.raises(SweepError, match="not only of study eh_ft_table1"):
        write_table1(records, tmp_path)


def test_identical_gain_on_every_seed_is_not_a_failure_to_reproduce(tmp_path):
    records = _records()
    for record in records:
        if record["method"] == "eh_ft_bitfit":
            # Exactly 3 points above Finetuning on every seed and task.
            record["score"] = SCORES[(record["task"], "finetuning")][SEEDS.index(record["seed"])] / 100 + 0.03
    write_table1(records, tmp_path)
    finding = _finding(tmp_path / "report.md", "EH-FT_BitFit beats Finetuning on average (paired by seed)")
    assert finding[1] == f"**{REPRODUCES}**" and "p = 0" in finding[2]


def test_distance_against_lp_ft_the_control_with_the_same_stage_two(report_dir):
    finding = _finding(report_dir / "report.md",
                       "EH-FT_LoRA ends nearer the pretrained weights than LP-FT (L2 distance)")
    ours, theirs = _seed_averages(DISTANCE, "eh_ft_lora"), _seed_averages(DISTANCE, "lp_ft")
    expected = stats.ttest_rel(ours, theirs, alternative="less")
    assert finding[1] == f"**{REPRODUCES}**" and f"one-tailed p = {expected.pvalue:.3g}" in finding[2]
    assert f"distance ratio {_mean(ours) / _mean(theirs):.3f}" in finding[2]


def test_the_per_layer_distance_table_averages_each_layer_over_runs(report_dir):
    rows = _md_rows(report_dir / "distance_per_layer.md")
    # Every hand-made record splits its total evenly over layers 0 and 1 (see _record).
    expected = _mean([DISTANCE[(task, "finetuning")][i] / 2 for task in TASKS for i in range(len(SEEDS))])
    assert rows["Finetuning"] == [f"{expected:.3f}", f"{expected:.3f}"]
    assert "EH-FT_BitFit" not in rows  # no distance recorded
