"""EH-FT study layout (Table 1 beside the paper, on its metrics, with the L2-distance column and findings) on
hand-made records with known scores."""

from __future__ import annotations

import math
import statistics

import pytest

from pet_lightning.errors import StudyError
from pet_lightning.reports.verdicts import CONTRADICTED, INCONCLUSIVE, REPRODUCES, UNDERPOWERED
from pet_lightning.studies.eh_ft import NOT_IN_PAPER, TABLE1_NAMES, distances, write_table1
from pet_lightning.studies.published import load_published, load_study_table
from tests.helpers.records import csv_rows as _csv_rows
from tests.helpers.records import make_record
from tests.helpers.records import md_rows as _md_rows
from tests.helpers.records import mean as _mean

SEEDS = [11, 22, 33]
TASKS = ("cb", "cola", "sst-2", "sts-b")  # the report's order: all low-resource here, then by name
IN_PAPER = ("cb", "cola", "sts-b")
METRIC = {"cb": "accuracy", "cola": "mcc", "sts-b": "pearson"}
BASE = {"cb": 80.0, "cola": 40.0, "sst-2": 88.0, "sts-b": 70.0}
FT = [0.0, 1.0, 2.0]
OFFSETS = {
    "finetuning": FT,
    "lp_ft": [0.5, 1.5 - 1.0, 2.3],  # FT + [0.5, -0.5, 0.3]
    "eh_ft_lora": [1.0, 2.5, 4.0],  # FT + [1, 1.5, 2]: above both baselines on every seed of every task
    "eh_ft_pt": [-1.0, -1.0, 0.5],  # FT - [1, 2, 1.5]: below both on every seed of every task
    "linear_probing": [-20.0, -19.0, -18.0],
}
# EH-FT_BitFit: LP-FT + 0.1 / -0.1 / 0 on each task, the sign alternating over tasks: no gain on average.
BITFIT_TWEAK = {"cb": [0.1, -0.1, 0.0], "cola": [-0.1, 0.1, 0.0], "sst-2": [0.1, -0.1, 0.0],
                "sts-b": [-0.1, 0.1, 0.0]}
DISTANCE = {"finetuning": [10.0, 11.0, 12.0], "lp_ft": [8.0, 9.0, 10.0], "eh_ft_lora": [5.0, 6.0, 6.5],
            "eh_ft_pt": [12.0, 14.0, 15.0], "linear_probing": [0.0, 0.0, 0.0]}
PCT = {"linear_probing": 0.5}
ORDER = ["finetuning", "linear_probing", "lp_ft", "eh_ft_lora", "eh_ft_pt", "eh_ft_bitfit"]
LABELS = {"finetuning": "Finetuning", "linear_probing": "Linear Probing", "lp_ft": "LP-FT",
          "eh_ft_lora": "EH-FT_LoRA", "eh_ft_pt": "EH-FT_PT", "eh_ft_bitfit": "EH-FT_BitFit"}


def score(task: str, method: str, index: int) -> float:
    if method == "eh_ft_bitfit":
        return BASE[task] + OFFSETS["lp_ft"][index] + BITFIT_TWEAK[task][index]
    return BASE[task] + OFFSETS[method][index]


def _record(task: str, method: str, index: int, study: str = "eh_ft_table1") -> dict:
    value = score(task, method, index)
    # The headline (CB: the accuracy/F1 average) differs from the paper's metric, which the table must use.
    report = {"headline": (value - 10) / 100, METRIC.get(task, "accuracy"): value / 100}
    record = make_record(task, method, SEEDS[index], value - 10 if task in METRIC else value, study,
                         pct=PCT.get(method, 100.0), steps=200, best_step=150, wall_s=60.0, report=report)
    if method in DISTANCE:
        total = DISTANCE[method][index] * (1.2 if task == "sts-b" else 1.0)
        record["distance"] = {"total": total, "rest": total / 10, "layers": {"0": total / 2, "1": total / 2}}
    return record


def _records(study: str = "eh_ft_table1") -> list[dict]:
    return [_record(task, method, index, study) for task in TASKS for method in ORDER for index in range(3)]


def _finding(report_md, claim: str) -> list[str]:
    for line in report_md.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == claim:
            return cells
    raise AssertionError(f"no finding {claim!r} in {report_md}")


def _verdict(cells: list[str]) -> str:
    return cells[1].strip("*").split(" (")[0]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eh_ft")
    paths = write_table1(_records(), out)
    assert {"table1", "table1_csv", "report"} <= set(paths)
    return out


def test_paper_names_match_the_published_rows():
    published = load_published("eh_ft_table1")
    assert set(TABLE1_NAMES.rows.values()) <= set(published.rows)
    assert TABLE1_NAMES.rows["finetuning"] == "Finetuning (reproduce)"  # not the Liu et al. row
    assert len(TABLE1_NAMES.rows) == 12


def test_every_paper_cell_is_beside_ours_on_the_papers_metric(report_dir):
    table = load_study_table("eh_ft_table1", TABLE1_NAMES)
    md = _md_rows(report_dir / "table1.md")
    header = md["Method"]
    assert header[:13] == ["%Param", "cb (accuracy)", "paper", "Δ", "cola (mcc)", "paper", "Δ", "sst-2 (accuracy)",
                           "paper", "Δ", "sts-b (pearson)", "paper", "Δ"]
    assert header[13:] == ["Avg, our 4 tasks", "Avg, the 3 in the paper (cb, cola, sts-b)", "paper, same tasks", "Δ",
                           "L2 distance"]
    for method in ORDER:
        row = md[LABELS[method]]
        for position, task in enumerate(TASKS):
            ours = _mean([score(task, method, i) for i in range(3)])
            sd = statistics.stdev([score(task, method, i) for i in range(3)])
            mean_cell, paper_cell, delta = row[1 + 3 * position: 4 + 3 * position]
            assert mean_cell == f"{ours:.1f} ± {sd:.1f}"  # the paper's metric, not the headline (10 lower)
            paper = table.get(method, task)
            if task in IN_PAPER:
                assert paper is not None and paper_cell == f"{paper:.2f}" and delta == f"{ours - paper:+.2f}"
            else:
                assert paper_cell == NOT_IN_PAPER and delta == "–"
        same = _mean([table.get(method, task) for task in IN_PAPER])
        ours = _mean([_mean([score(task, method, i) for i in range(3)]) for task in IN_PAPER])
        assert row[13] == f"{_mean([_mean([score(t, method, i) for i in range(3)]) for t in TASKS]):.2f}"
        assert row[14:17] == [f"{ours:.2f}", f"{same:.2f}", f"{ours - same:+.2f}"]
    assert md["Finetuning"][2] == "94.64"  # Finetuning (reproduce), CB; the quoted Liu et al. row has 98.20


def test_distance_column_and_per_layer_table(report_dir):
    rows = {row["method"]: row for row in _csv_rows(report_dir / "table1.csv")}
    per_seed = [_mean([DISTANCE["finetuning"][i] * (1.2 if t == "sts-b" else 1.0) for t in TASKS]) for i in range(3)]
    assert float(rows["finetuning"]["distance"]) == pytest.approx(_mean(per_seed))
    assert rows["eh_ft_bitfit"]["distance"] == "nan"
    layers = _md_rows(report_dir / "distance_per_layer.md")
    expected = _mean([DISTANCE["finetuning"][i] * (1.2 if t == "sts-b" else 1.0) / 2 for t in TASKS for i in range(3)])
    assert layers["Finetuning"] == [f"{expected:.3f}", f"{expected:.3f}"]
    assert "EH-FT_BitFit" not in layers


def test_average_gain_reproduces_with_the_papers_gain_on_our_tasks(report_dir):
    finding = _finding(report_dir / "report.md", "EH-FT_LoRA above Finetuning on average over our tasks")
    assert _verdict(finding) == REPRODUCES
    # 12 (task, seed) pairs, all positive: exact sign-flip p = 2^-12; Holm over the 6 comparisons, two of which
    # share that p: 6 x 2^-12.
    assert finding[2] == f"{6 / 4096:.3g} (raw {1 / 4096:.3g})"
    gains = [1.0, 1.5, 2.0]
    rms = math.sqrt(_mean([g * g for g in gains]))
    assert finding[3] == f"+{_mean(gains) / rms:.2f} task sd"
    table = load_study_table("eh_ft_table1", TABLE1_NAMES)
    paper_gains = [table.get("eh_ft_lora", t) - table.get("finetuning", t) for t in IN_PAPER]
    assert finding[5] == f"+{_mean(paper_gains) / rms:.2f} task sd"
    assert f"paper {_mean(paper_gains):+.2f} on the 3 of them it has (+0.89 over its own 9 tasks)" in finding[7]
    versus_lp = _finding(report_dir / "report.md", "EH-FT_LoRA above LP-FT on average over our tasks")
    assert _verdict(versus_lp) == REPRODUCES and "(+1.11 over its own 9 tasks)" in versus_lp[7]


def test_average_loss_is_contradicted(report_dir):
    for baseline in ("Finetuning", "LP-FT"):
        finding = _finding(report_dir / "report.md", f"EH-FT_PT above {baseline} on average over our tasks")
        assert _verdict(finding) == CONTRADICTED and finding[3].startswith("-")


def test_no_average_gain_with_a_resolvable_paper_effect_is_inconclusive(report_dir):
    finding = _finding(report_dir / "report.md", "EH-FT_BitFit above LP-FT on average over our tasks")
    # Gains of +-0.1 point: the paper's +1.6-point gain is many task sds, far above the MDE.
    assert _verdict(finding) == INCONCLUSIVE
    assert float(finding[4].split()[0]) < float(finding[5].split()[0])


def test_per_task_findings_at_three_seeds_are_underpowered_with_holm(report_dir):
    finding = _finding(report_dir / "report.md", "cb: EH-FT_LoRA above Finetuning")
    # 3 seeds: the sign-flip p is at least 1/8, so nothing is detectable; Holm over the 4 tasks: 4 x 1/8.
    assert finding[1] == f"**{UNDERPOWERED} (paper's direction)**"
    assert finding[2] == "0.5 (raw 0.125)"
    assert finding[4] == "∞ (cannot reach alpha)"
    assert finding[5] == f"+{99.12 - 94.64:.2f} points"
    assert "accuracy x 100" in finding[7]
    assert _finding(report_dir / "report.md", "sst-2: EH-FT_LoRA above Finetuning")[5] == "–"


def test_distance_findings_nearer_and_significantly_farther(report_dir):
    nearer = _finding(report_dir / "report.md",
                      "EH-FT_LoRA ends nearer the pretrained weights than Finetuning (L2 distance)")
    assert _verdict(nearer) == REPRODUCES
    ratio = math.exp(_mean([math.log(DISTANCE["eh_ft_lora"][i] / DISTANCE["finetuning"][i]) for i in range(3)]))
    assert f"distance ratio EH-FT_LoRA / Finetuning {ratio:.3f}" in nearer[7]
    farther = _finding(report_dir / "report.md",
                       "EH-FT_PT ends nearer the pretrained weights than LP-FT (L2 distance)")
    assert _verdict(farther) == CONTRADICTED  # farther on all 12 (task, seed) pairs: p(greater) = 2^-12
    missing = _finding(report_dir / "report.md",
                       "EH-FT_BitFit ends nearer the pretrained weights than Finetuning (L2 distance)")
    assert _verdict(missing) == UNDERPOWERED and "no (task, seed) with the distance of both" in missing[7]


def test_distances_average_over_tasks_per_seed():
    found = distances(_records())
    expected = {seed: _mean([DISTANCE["finetuning"][i] * (1.2 if t == "sts-b" else 1.0) for t in TASKS])
                for i, seed in enumerate(SEEDS)}
    assert found["finetuning"] == pytest.approx(expected)
    assert "eh_ft_bitfit" not in found


def test_refuses_records_of_another_study(tmp_path):
    records = _records()
    records[0]["study"] = "transferability_table1"
    with pytest.raises(StudyError, match="not only of study eh_ft_table1"):
        write_table1(records, tmp_path)


def test_identical_gain_on_every_seed_is_exact_not_zero(tmp_path):
    records = [r for r in _records() if r["task"] in ("sst-2",)]
    for record in records:
        if record["method"] == "eh_ft_bitfit":
            # Exactly 3 points above Finetuning on every seed: the sign-flip p is 2^-3, never 0 as a t test gives.
            record["score"] = score("sst-2", "finetuning", SEEDS.index(record["seed"])) / 100 + 0.03
    write_table1(records, tmp_path)
    finding = _finding(tmp_path / "report.md", "EH-FT_BitFit above Finetuning on average over our tasks")
    assert "raw 0.125" in finding[2]
    assert _verdict(finding) == UNDERPOWERED


def test_mrpc_is_compared_on_accuracy_as_the_studys_code_logs_it(tmp_path):
    # F1 and accuracy differ by 8 points here: the column must be accuracy, the paper's metric for MRPC.
    records = [make_record("mrpc", method, seed, 70.0 + index, "eh_ft_table1", steps=200, best_step=150,
                           report={"headline": (78.0 + index) / 100, "f1": (78.0 + index) / 100,
                                   "accuracy": (70.0 + index) / 100})
               for method in ("finetuning", "eh_ft_lora") for index, seed in enumerate(SEEDS)]
    write_table1(records, tmp_path)
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "mrpc (accuracy)" in text and "mrpc (f1)" not in text
    row = next(line for line in text.splitlines() if line.startswith("| Finetuning |"))
    assert "71.0 ± 1.0" in row and "79.0" not in row
