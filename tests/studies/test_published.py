"""Published-table CSVs: reading values and citations, refusing malformed files with the file named."""

from __future__ import annotations

import math

import pytest

from pet_lightning.studies.published import PUBLISHED_DIR, PublishedError, load_published

HEADER = "row,task,value,std,setting"


def _write(folder, name: str, lines: list[str]):
    path = folder / f"{name}.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_values_std_setting_and_citation(tmp_path):
    _write(tmp_path, "paper_t1", [
        "# Author et al.: A Paper, VENUE 2022, Table 1.",
        "# BERT-base, GLUE dev.",
        "# a third comment line",
        HEADER,
        "full_ft,sts-b,89.0,,",
        "",
        "bitfit,sts-b,88.2,0.4,",
        "bitfit,mrpc,85.1,,2-2/loss",
    ])
    table = load_published("paper_t1", folder=tmp_path)
    assert table is not None
    assert table.name == "paper_t1"
    assert table.source == ["Author et al.: A Paper, VENUE 2022, Table 1.", "BERT-base, GLUE dev.",
                            "a third comment line"]
    assert table.citation == "Author et al.: A Paper, VENUE 2022, Table 1. BERT-base, GLUE dev."
    assert set(table.values) == {("full_ft", "sts-b", ""), ("bitfit", "sts-b", ""), ("bitfit", "mrpc", "2-2/loss")}
    value, std = table.values[("full_ft", "sts-b", "")]
    assert value == 89.0 and math.isnan(std)
    assert table.values[("bitfit", "sts-b", "")] == (88.2, 0.4)
    assert table.get("full_ft", "sts-b") == 89.0
    assert table.get("bitfit", "mrpc", "2-2/loss") == 85.1
    assert table.get("bitfit", "mrpc") is None
    assert table.get("frozen", "sts-b") is None


def test_citation_falls_back_to_the_name_without_comments(tmp_path):
    _write(tmp_path, "bare", [HEADER, "full_ft,sts-b,89.0,,"])
    table = load_published("bare", folder=tmp_path)
    assert table.source == [] and table.citation == "bare"


def test_missing_file_is_none(tmp_path):
    assert load_published("no_such_table", folder=tmp_path) is None


@pytest.mark.parametrize(("lines", "match"), [
    (["# c", "row,task,score,std,setting", "full_ft,sts-b,89.0,,"], "header"),
    (["# c", HEADER, "full_ft,sts-b,89.0,,", "bitfit,sts-b,eighty,,"], "not a number"),
    (["# c", HEADER, "full_ft,sts-b,89.0,abc,"], "not a number"),
    (["# c", HEADER, "full_ft,sts-b,89.0,,", "full_ft,sts-b,88.0,,"], "repeats"),
])
def test_malformed_files_raise_naming_the_file(tmp_path, lines, match):
    path = _write(tmp_path, "broken", lines)
    with pytest.raises(PublishedError, match=match) as info:
        load_published("broken", folder=tmp_path)
    assert str(path) in str(info.value)


def test_published_error_is_a_value_error():
    assert issubclass(PublishedError, ValueError)


def test_packaged_transferability_table1_loads():
    assert (PUBLISHED_DIR / "transferability_table1.csv").is_file()
    table = load_published("transferability_table1")
    assert table is not None
    assert table.get("full_ft", "sts-b") == 89.0
    assert "AkbarTajari" in table.citation
