"""Published-table CSVs: reading values and citations, refusing malformed files with the file named."""

from __future__ import annotations

import math

import pytest

from pet_lightning.studies.published import (
    PUBLISHED_DIR,
    PaperNames,
    PublishedError,
    load_published,
    load_study_table,
)

HEADER = "row,task,value,std,setting"  # the mark column is optional


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
    (["# c", "row,task,value,std,setting,note", "full_ft,sts-b,89.0,,,"], "header"),
    (["# c", "row,task,value,std,setting,mark", "full_ft,sts-b,,,,"], "neither a value nor a mark"),
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


SHARED = PUBLISHED_DIR.parents[3] / "shared" / "published"  # beside the checkout, as CI lays it
# (figures, figures with a mark, figures with a std, paper rows) per table, counted from the seed's CSVs.
EXPECTED = {
    "eh_ft_table1": (130, 4, 0, 13),
    "revisiting_table1": (20, 0, 20, 5),
    "revisiting_table2": (80, 27, 75, 5),
    "revisiting_table3": (12, 12, 0, 4),
    "revisiting_table4": (15, 0, 15, 5),
    "transferability_table1": (99, 3, 81, 9),
    "transferability_table3": (52, 0, 52, 13),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_packaged_table_loads_without_loss(name):
    table = load_published(name)
    assert table is not None
    text = (PUBLISHED_DIR / f"{name}.csv").read_text(encoding="utf-8").splitlines()
    data_lines = [line for line in text if line.strip() and not line.startswith("#")][1:]
    assert len(table.figures) == len(data_lines)  # no figure lost, no line merged
    figures = table.figures.values()
    counts = (len(table.figures), sum(1 for f in figures if f.mark), sum(1 for f in figures if not math.isnan(f.std)),
              len(table.rows))
    assert counts == EXPECTED[name]
    assert "EMNLP 2022" in table.citation


def test_marks_and_empty_values_are_kept():
    table3 = load_published("revisiting_table3")
    assert table3.get("PT", "high") is None  # the paper prints a mark, no number
    assert table3.mark("PT", "high") == "worse" and table3.mark("Adapter", "medium") == "no significant difference"
    table2 = load_published("revisiting_table2")
    assert table2.get("LoRA", "cb") == 82.05 and table2.std("LoRA", "cb") == 9.62
    assert table2.mark("LoRA", "cb") == "significantly better than FT"
    transfer = load_published("transferability_table1")
    assert transfer.mark("BitFit", "qnli") == "from Ben Zaken et al. 2022 (BitFit paper)"
    assert transfer.get("Full-FT", "sts-b") == 89.0 and transfer.std("Full-FT", "sts-b") == 0.5


def test_study_table_reads_in_our_names():
    names = PaperNames(rows={"full": "FT", "prefix": "PT"}, settings={"1-2/headline": "1-2/accuracy"})
    table = load_study_table("revisiting_table1", names)
    assert table.get("full", "rte", "1-2/headline") == 79.28
    assert table.get("prefix", "rte", "2-2/loss") == 66.19
    assert table.get("lora", "rte", "2-2/loss") is None  # not mapped: no published row for it


def test_paper_names_refuse_two_methods_on_one_row():
    with pytest.raises(ValueError, match="mapped from both"):
        PaperNames(rows={"full": "FT", "full_ft": "FT"})


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared published tables are not beside this checkout")
def test_packaged_tables_are_the_shared_transcriptions():
    for name in EXPECTED:
        assert (PUBLISHED_DIR / f"{name}.csv").read_bytes() == (SHARED / f"{name}.csv").read_bytes()
