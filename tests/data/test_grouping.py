"""Connected groups and the boundaries that keep them whole, on small hand-made rows (one test per rule)."""

from __future__ import annotations

from collections import Counter

import pytest

from pet_lightning.data.grouping import connected_groups, normalise, shared_count
from pet_lightning.data.protocol import holdout, stratified_halves, subset

PASSAGE = "The quick brown fox jumps over the lazy dog near the river bank."
OTHER = "A completely different passage about the history of the printing press."


def _row(idx: int, text, text_pair=None, label=0, **extra) -> dict:
    return {"text": text, "text_pair": text_pair, "label": label, "idx": idx, **extra}


def test_normalise_keeps_letters_and_digits_lower_case_with_single_spaces():
    assert normalise("  The *Dog*,\tbarked!\n 3 times...  ") == "the dog barked 3 times"


def test_a_shared_passage_links_examples_whatever_case_and_punctuation():
    rows = [_row(0, "q1", PASSAGE), _row(1, "q2", PASSAGE.upper().replace(" ", "  ")), _row(2, "q3", OTHER)]
    assert connected_groups(rows, "boolq") == [[0, 1], [2]]


def test_short_strings_do_not_link_examples():
    # "Is it true?" is shared but shorter than 40 normalised characters.
    rows = [_row(0, "Is it true?", PASSAGE), _row(1, "Is it true?", OTHER)]
    assert connected_groups(rows, "rte") == [[0], [1]]


def test_links_are_transitive():
    third = "Yet another passage, long enough to count as a shared sentence here."
    rows = [_row(0, PASSAGE, OTHER), _row(1, OTHER, third), _row(2, third, "short"), _row(3, "alone", "x")]
    assert connected_groups(rows, "rte") == [[0, 1, 2], [3]]


def test_multiple_choice_texts_link_by_each_choice():
    rows = [_row(0, ["short", PASSAGE], ["a", "b"]), _row(1, [PASSAGE, "x"], ["c", "d"]), _row(2, ["y"], ["z"])]
    assert connected_groups(rows, "copa") == [[0, 1], [2]]


def test_wsc_candidates_of_one_sentence_link_at_any_length():
    # Two candidates of one short sentence (under 40 characters), marked differently.
    rows = [_row(0, "*Tom* hit #him#.", "Does him refer to Tom?"), _row(1, "Tom hit *him*.", "Does him refer to Tom?")]
    assert connected_groups(rows, "wsc") == [[0, 1]]
    assert connected_groups(rows, "rte") == [[0], [1]]


def test_record_queries_of_one_passage_link_at_any_length():
    rows = [_row(0, "q @a", "Short passage."), _row(1, "q @b", "short passage"), _row(2, "q", "Other.")]
    assert connected_groups(rows, "record") == [[0, 1], [2]]


def test_the_task_group_links_examples_multirc_question_and_axg_pair():
    rows = [_row(0, "q a1", "p1", group=7), _row(1, "q a2", "p2", group=7), _row(2, "q a3", "p3", group=8)]
    assert connected_groups(rows, "multirc") == [[0, 1], [2]]
    assert connected_groups(rows, "axg") == [[0, 1], [2]]


def test_shared_count_counts_right_side_examples_and_ignores_group_ids_across_files():
    left = [_row(0, "q", PASSAGE, group=1)]
    right = [_row(0, "q", PASSAGE, group=5), _row(1, "q", OTHER, group=1), _row(2, "q", "x", group=9)]
    assert shared_count(left, right, "multirc", same_file=True) == 2
    assert shared_count(left, right, "multirc", same_file=False) == 1


def _grouped_rows(n_groups: int = 40) -> list[dict]:
    # Groups of 1-4 examples sharing a passage, mixed labels.
    rows = []
    for g in range(n_groups):
        passage = f"Passage number {g} is long enough to link every question asked about it."
        for k in range(1 + g % 4):
            rows.append(_row(len(rows), f"question {k}", passage, label=(g + k) % 2))
    return rows


def _group_of(rows: list[dict]) -> dict[int, int]:
    return {rows[i]["idx"]: n for n, members in enumerate(connected_groups(rows, "boolq")) for i in members}


def _assert_whole(rows: list[dict], a: list[dict], b: list[dict]) -> None:
    group = _group_of(rows)
    assert not {group[e["idx"]] for e in a} & {group[e["idx"]] for e in b}
    assert sorted(e["idx"] for e in a + b) == [e["idx"] for e in rows]


def test_halves_keep_groups_whole_balanced_and_are_a_pure_function_of_data_and_seed():
    rows = _grouped_rows()
    first, second = stratified_halves(rows, seed=3, task="boolq")
    _assert_whole(rows, first, second)
    assert abs(len(first) - len(second)) <= 4  # the largest group
    a, b = Counter(e["label"] for e in first), Counter(e["label"] for e in second)
    assert all(abs(a[k] - b[k]) <= 4 for k in (0, 1))
    again = stratified_halves([dict(r) for r in rows], seed=3, task="boolq")
    assert [e["idx"] for e in again[0]] == [e["idx"] for e in first]
    assert [e["idx"] for e in stratified_halves(rows, seed=4, task="boolq")[0]] != [e["idx"] for e in first]


def test_holdout_and_subset_keep_groups_whole_and_stratify_labels():
    rows = _grouped_rows(80)
    kept, held = holdout(rows, 0.25, seed=1, task="boolq")
    _assert_whole(rows, kept, held)
    assert abs(len(held) - round(0.25 * len(rows))) <= 4
    chosen, rest = subset(rows, 60, seed=2, task="boolq")
    _assert_whole(rows, chosen, rest)
    assert abs(len(chosen) - 60) <= 4
    # 40% of all rows are positive; the subset keeps that share within one group's worth.
    assert Counter(e["label"] for e in rows)[1] == 80
    assert abs(Counter(e["label"] for e in chosen)[1] - 0.4 * len(chosen)) <= 3


def test_subset_of_singletons_is_exact_and_label_proportional():
    rows = [_row(i, f"sentence {i}", label=int(i % 4 == 0)) for i in range(200)]  # 25% positive
    chosen, rest = subset(rows, 40, seed=0, task="sst-2")
    assert len(chosen) == 40 and len(rest) == 160
    assert Counter(e["label"] for e in chosen) == {0: 30, 1: 10}


def test_subset_rejects_a_non_positive_count():
    with pytest.raises(ValueError, match="train_subset=0"):
        subset(_grouped_rows(), 0, seed=0)


def test_groups_are_computed_once_per_content_and_each_caller_gets_its_own_lists(monkeypatch):
    import pet_lightning.data.grouping as grouping

    calls = []
    compute = grouping._connected_groups
    monkeypatch.setattr(grouping, "_connected_groups", lambda examples, task: calls.append(task) or
                        compute(examples, task))
    monkeypatch.setattr(grouping, "_GROUPS", type(grouping._GROUPS)())
    rows = [_row(0, "a" * 50), _row(1, "b" * 50), _row(2, "A" * 50 + "!")]
    first = connected_groups(rows, "sst-2")
    first[0].append(99)
    again = connected_groups([dict(row) for row in rows], "sst-2")
    assert again == [[0, 2], [1]] and calls == ["sst-2"]
    # Other content, or the same content under another task's keys, is grouped afresh.
    assert connected_groups(rows[:2], "sst-2") == [[0], [1]] and connected_groups(rows, "wsc") == [[0, 2], [1]]
    assert calls == ["sst-2", "sst-2", "wsc"]
