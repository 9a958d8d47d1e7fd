"""``cli.py study`` and ``cli.py report`` find a study's layout from its records."""

from __future__ import annotations

import json

import yaml

from pet_lightning.cli import main
from tests.helpers.records import make_record


def _study(tmp_path):
    out = tmp_path / "out"
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "study": "transferability_table1", "out": str(out), "methods": ["full_ft", "frozen"], "wandb": False,
        "scales": {"cpu": {"tasks": ["sts-b"], "seeds": 2}},
    }), encoding="utf-8")
    out.mkdir()
    with open(out / "results.jsonl", "w", encoding="utf-8") as handle:
        for method, scores in (("full_ft", (75.0, 77.0)), ("frozen", (33.0, 33.0))):
            for seed, score in zip((1111, 2222), scores):
                # The transferability tables score STS-B on Spearman (the paper's metric), from the reported split.
                record = make_record("sts-b", method, seed, score, "transferability_table1",
                                     report={"spearman": score / 100, "pearson": score / 100})
                handle.write(json.dumps(record) + "\n")
    return path, out


def test_study_report_only_writes_the_papers_table(tmp_path, capsys):
    path, out = _study(tmp_path)
    assert main(["study", str(path), "--report-only"]) == 0
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert report.startswith("# Transferability study, Table 1")
    assert "| Full-FT | 1.0000 | 100.00 | 76.0 ± 1.4 | 89.0 ± 0.5 | -13.0 |" in report
    assert "report:" in capsys.readouterr().out


def test_report_recognises_the_study_and_can_fall_back_to_the_sweep_tables(tmp_path):
    _path, out = _study(tmp_path)
    assert main(["report", str(out / "results.jsonl"), "--out", str(tmp_path / "study_report")]) == 0
    assert (tmp_path / "study_report" / "table1.md").is_file()
    assert main(["report", str(out / "results.jsonl"), "--out", str(tmp_path / "generic"), "--layout", "sweep",
                 "--baseline", "full_ft"]) == 0
    assert (tmp_path / "generic" / "table2.md").is_file() and not (tmp_path / "generic" / "table1.md").exists()
