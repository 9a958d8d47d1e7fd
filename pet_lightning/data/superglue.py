"""SuperGLUE as a LightningDataModule: BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC and the AX-b / AX-g
diagnostics, with one formulation per task.

Every formulation reads both the official jsonl layout (``<root>/superglue/<Task>/{train,val,test}.jsonl``) and
the rows of the Hugging Face hub (``aps/super_glue``), which flatten MultiRC and ReCoRD and un-nest WSC's spans.

Examples carry ``idx`` = their position in the split (unique, used by the protocol and the prediction writer)
and ``meta`` = the official ids and strings a leaderboard file needs. ``meta`` is never tokenized or batched.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from pet_lightning.data.base import TaskDataModule
from pet_lightning.data.formulations import Example, label_id, register_formulation
from pet_lightning.data.readers import DataError
from pet_lightning.tasks import SUPERGLUE_ALIASES, TaskSpec

COPA_CONNECTIVES = {"cause": "because", "effect": "so"}
WSC_NOUN_MARK = "*"
WSC_PRONOUN_MARK = "#"
WIC_MARK = "*"
RECORD_PLACEHOLDER = "@placeholder"


def _where(source: str, number: int) -> str:
    return f"{source} row {number + 1}"


def _field(row: dict[str, Any], names: tuple[str, ...], where: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    raise DataError(f"{where}: no field {' or '.join(map(repr, names))}: is this the official SuperGLUE file?")


# ------------------------------------------------------------------------------------------------- formulations
@register_formulation("superglue_pair")
def superglue_pair(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """Premise / hypothesis classification (CB, RTE, AX-b, AX-g).

    AX-g rows carry ``pair_id`` (the male and female variant of one sentence); it becomes ``group`` so gender
    parity can compare the two predictions. Hub AX-g rows have no ``pair_id``; there the pairs are consecutive
    rows, as in the official file, so ``idx // 2`` names the pair.
    """
    examples = []
    for number, row in enumerate(rows):
        where = _where(source, number)
        example = {
            "text": _field(row, ("premise", "sentence1"), where),
            "text_pair": _field(row, ("hypothesis", "sentence2"), where),
            "label": label_id(spec, row.get("label"), where),
            "idx": number,
            "meta": {"idx": row.get("idx", number)},
        }
        if spec.name == "axg":
            example["group"] = int(row["pair_id"]) if "pair_id" in row else int(row.get("idx", number)) // 2
        examples.append(example)
    return examples


@register_formulation("boolq")
def boolq(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """Question + passage, yes / no."""
    return [
        {
            "text": _field(row, ("question",), _where(source, number)),
            "text_pair": _field(row, ("passage",), _where(source, number)),
            "label": label_id(spec, row.get("label"), _where(source, number)),
            "idx": number,
            "meta": {"idx": row.get("idx", number)},
        }
        for number, row in enumerate(rows)
    ]


def mark_span(text: str, start: int, end: int, mark: str) -> str:
    return f"{text[:start]}{mark}{text[start:end]}{mark}{text[end:]}"


@register_formulation("wic")
def wic(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """The two sentences as a pair, the target word marked ``*like this*`` in each (by its character offsets).

    The word's form differs between sentences ("water" / "watering"), so marking the occurrence tells the model
    which token to compare better than appending the lemma would.
    """
    examples = []
    for number, row in enumerate(rows):
        where = _where(source, number)
        sentences = []
        for k in (1, 2):
            sentence = _field(row, (f"sentence{k}",), where)
            start, end = int(_field(row, (f"start{k}",), where)), int(_field(row, (f"end{k}",), where))
            if not 0 <= start < end <= len(sentence):
                raise DataError(f"{where}: start{k}/end{k} = {start}/{end} lie outside sentence{k}: fix that row")
            sentences.append(mark_span(sentence, start, end, WIC_MARK))
        examples.append(
            {
                "text": sentences[0],
                "text_pair": sentences[1],
                "label": label_id(spec, row.get("label"), where),
                "idx": number,
                "meta": {"idx": row.get("idx", number), "word": row.get("word")},
            }
        )
    return examples


def mark_words(words: list[str], index: int, count: int, mark: str) -> list[str]:
    """Wrap ``count`` words from ``index`` in ``mark``; the official spans are word indices into ``text.split()``."""
    out = list(words)
    last = min(index + max(count, 1), len(out)) - 1
    out[index] = mark + out[index]
    out[last] = out[last] + mark
    return out


@register_formulation("wsc")
def wsc(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """The text with the candidate noun phrase marked ``*...*`` and the pronoun ``#...#``, paired with the question
    "Does <pronoun> refer to <noun phrase>?".

    ``span1_index`` (noun phrase) and ``span2_index`` (pronoun) are word positions in ``text.split()``. A few
    official rows name span texts that differ from the words at their index (possessives, one typo); the index is
    what the task defines, so the marks follow it and span the number of words of the span text.
    """
    examples = []
    for number, row in enumerate(rows):
        where = _where(source, number)
        target = row.get("target", row)
        text = _field(row, ("text",), where)
        words = text.split()
        spans = []
        for k in (1, 2):
            index = int(_field(target, (f"span{k}_index",), where))
            span_text = str(_field(target, (f"span{k}_text",), where))
            if not 0 <= index < len(words):
                raise DataError(
                    f"{where}: span{k}_index {index} is outside the text's {len(words)} words: fix that row"
                )
            spans.append((index, len(span_text.split()), span_text))
        (noun_at, noun_len, noun), (pronoun_at, pronoun_len, pronoun) = spans
        marked = mark_words(words, noun_at, noun_len, WSC_NOUN_MARK)
        marked = mark_words(marked, pronoun_at, pronoun_len, WSC_PRONOUN_MARK)
        examples.append(
            {
                "text": " ".join(marked),
                "text_pair": f"Does {pronoun} refer to {noun}?",
                "label": label_id(spec, row.get("label"), where),
                "idx": number,
                "meta": {"idx": row.get("idx", number)},
            }
        )
    return examples


def _continue_sentence(choice: str) -> str:
    # The choice follows a connective mid-sentence: lower-case its first letter, except for "I" and "I'm".
    first = choice.split(" ", 1)[0]
    if first == "I" or first.startswith("I'"):
        return choice
    return choice[:1].lower() + choice[1:]


@register_formulation("copa")
def copa(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """Multiple choice: for each choice, (premise, "because <choice>") for a cause, (premise, "so <choice>")
    for an effect; the head scores each pair and a softmax over the two picks the answer."""
    examples = []
    for number, row in enumerate(rows):
        where = _where(source, number)
        question = str(_field(row, ("question",), where)).strip()
        if question not in COPA_CONNECTIVES:
            raise DataError(f"{where}: question {question!r} is neither 'cause' nor 'effect': fix that row")
        premise = _field(row, ("premise",), where)
        choices = [_field(row, ("choice1",), where), _field(row, ("choice2",), where)]
        examples.append(
            {
                "text": [premise, premise],
                "text_pair": [f"{COPA_CONNECTIVES[question]} {_continue_sentence(c)}" for c in choices],
                "label": label_id(spec, row.get("label"), where),
                "idx": number,
                "meta": {"idx": row.get("idx", number)},
            }
        )
    return examples


@register_formulation("multirc")
def multirc(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """One binary example per (paragraph, question, answer): ``question answer`` paired with the paragraph (so
    truncation cuts the paragraph, never the answer). ``group`` numbers the questions for exact match."""
    examples: list[Example] = []
    groups: dict[tuple[Any, Any], int] = {}

    def add(paragraph: str, question: str, answer: str, label: Any, ids: dict[str, Any], where: str) -> None:
        group = groups.setdefault((ids["passage"], ids["question"]), len(groups))
        examples.append(
            {
                "text": f"{question} {answer}",
                "text_pair": paragraph,
                "label": label_id(spec, label, where),
                "idx": len(examples),
                "group": group,
                "meta": ids,
            }
        )

    for number, row in enumerate(rows):
        where = _where(source, number)
        if "passage" in row:  # official layout: one row per passage, questions and answers nested
            passage = row["passage"]
            for question in passage["questions"]:
                for answer in question["answers"]:
                    ids = {"passage": row["idx"], "question": question["idx"], "answer": answer["idx"]}
                    add(passage["text"], question["question"], answer["text"], answer.get("label"), ids, where)
        else:  # hub: one row per answer, ids in a dict
            hub_ids = _field(row, ("idx",), where)
            ids = {"passage": hub_ids["paragraph"], "question": hub_ids["question"], "answer": hub_ids["answer"]}
            add(row["paragraph"], row["question"], row["answer"], row.get("label"), ids, where)
    return examples


def normalize_answer(text: str) -> str:
    """SQuAD / ReCoRD answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def token_f1(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


@register_formulation("record")
def record(spec: TaskSpec, rows: list[dict[str, Any]], source: str) -> list[Example]:
    """Candidate ranking: each candidate entity fills ``@placeholder`` in the query, paired with the passage, as
    one binary example (1 = a gold answer); ``group`` numbers the queries.

    The model's answer to a query is its highest-scoring candidate. Each candidate carries ``answer_f1`` /
    ``answer_em``, its best token F1 / exact match over the gold answers, so the official ReCoRD metrics are the
    means of those values over the chosen candidates.
    """
    examples: list[Example] = []

    def add(passage: str, query: str, entities: list[str], answers: list[str] | None, ids: dict, where: str):
        if RECORD_PLACEHOLDER not in query:
            raise DataError(f"{where}: query has no {RECORD_PLACEHOLDER}: is this the official ReCoRD file?")
        group = ids["group"]
        for entity in dict.fromkeys(entities):  # unique, in passage order
            example = {
                "text": query.replace(RECORD_PLACEHOLDER, entity),
                "text_pair": passage,
                "label": None if answers is None else int(entity in answers),
                "idx": len(examples),
                "group": group,
                "meta": {"idx": ids["query"], "entity": entity},
            }
            if answers:
                example["answer_f1"] = max(token_f1(entity, gold) for gold in answers)
                example["answer_em"] = max(exact_match(entity, gold) for gold in answers)
            examples.append(example)

    queries = 0
    for number, row in enumerate(rows):
        where = _where(source, number)
        if "qas" in row:  # official layout: entity spans are inclusive character offsets into the raw text
            raw = row["passage"]["text"]
            entities = [raw[span["start"] : span["end"] + 1] for span in row["passage"]["entities"]]
            passage = raw.replace("@highlight\n", "- ")
            for qa in row["qas"]:
                answers = [a["text"] for a in qa["answers"]] if qa.get("answers") else None
                add(passage, qa["query"], entities, answers, {"group": queries, "query": qa["idx"]}, where)
                queries += 1
        else:  # hub: one row per query
            passage = _field(row, ("passage",), where).replace("@highlight\n", "- ")
            answers = list(row.get("answers") or []) or None
            ids = {"group": queries, "query": row["idx"]["query"]}
            add(passage, _field(row, ("query",), where), list(row["entities"]), answers, ids, where)
            queries += 1
    return examples


# ------------------------------------------------------------------------------------------------- data module
def resolve_superglue_task(task: str) -> str:
    """``rte`` inside SuperGLUE is the jsonl RTE (``superglue-rte``); other names are kept."""
    key = task.strip().lower()
    return SUPERGLUE_ALIASES.get(key, task)  # other names as given: a task file's path keeps its case


class SuperGlueDataModule(TaskDataModule):
    """A SuperGLUE task from ``<data_dir>/superglue/<Task>/{train,val,test}.jsonl`` or the hub (``aps/super_glue``).

    ``task`` is one of ``boolq``, ``cb``, ``copa``, ``multirc``, ``record``, ``rte``, ``wic``, ``wsc``, ``axb``,
    ``axg``; here ``rte`` means SuperGLUE's jsonl RTE (``superglue-rte`` in the task table). AX-b and AX-g are
    evaluation-only (``validate`` / ``test`` / ``predict`` with a model trained on RTE): their one labelled file
    selects and reports, and there is nothing to train on. Everything else is
    :class:`~pet_lightning.data.base.TaskDataModule`, which takes every task; this class only refuses GLUE tasks.
    """

    benchmark = "superglue"

    def __init__(self, task: str = "cb", **kwargs: Any):
        super().__init__(task=resolve_superglue_task(task), **kwargs)


__all__ = ["SuperGlueDataModule", "exact_match", "normalize_answer", "resolve_superglue_task", "token_f1"]
