"""benchmarks.padding: the padded lengths, the refusal of lengths already padded, and one tiny A/B run printing
its figures (not a timing test: no figure is compared with another)."""

from __future__ import annotations

import re

import pytest

from benchmarks.padding import main, padded


def test_padded_rounds_up_to_the_next_multiple_of_eight():
    assert [padded(n) for n in (1, 7, 8, 9, 121, 127, 128)] == [8, 8, 8, 16, 128, 128, 128]


def test_lengths_that_are_multiples_of_eight_are_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--lengths", "16"])
    assert exit_info.value.code == 2
    assert "not multiples of 8" in capsys.readouterr().err


def test_a_short_run_prints_one_row_per_length_with_the_padded_length_and_an_interval(capsys):
    assert main(["--lengths", "9", "--blocks", "2", "--block-steps", "1", "--precision", "32-true"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("9 "))
    # Two blocks give a t interval with one degree of freedom: on a loaded machine its lower end can be negative.
    assert re.search(r"^9\s+16\s+[\d.]+\s+[\d.]+\s+[\d.]+x \[-?[\d.]+, [\d.]+\]\s+1\.778x\s*$", row), row
