"""Connected groups: the examples a split must keep on one side.

Two examples belong to one group when they share a normalised passage or sentence, or the task's own key. A
boundary that cuts a group lets the model see, at training or selection time, the very text it is later scored
on: MultiRC answers of one passage, WSC candidates of one sentence, SST-2 phrases repeated in train, ReCoRD
queries of one passage. Every boundary the library draws (dev halves, train holdout, train carved from dev,
``train_subset``) moves whole groups only; :mod:`pet_lightning.data.audit` measures what remains across the
boundaries the benchmarks drew themselves.

Normalisation: lower-case, letters and digits only, whitespace collapsed; only strings of at least
:data:`MIN_SHARED_CHARS` characters link examples (short strings such as "Yes" or a one-word WiC target would
join unrelated examples), except a task key, which links at any length.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from pet_lightning.data.formulations import Example

MIN_SHARED_CHARS = 40
_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalise(text: str) -> str:
    """Lower-case, letters and digits only (anything else becomes a space), whitespace collapsed."""
    return " ".join(_NOT_ALNUM.sub(" ", text.lower()).split())


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def shared_texts(example: Example) -> set[str]:
    """The normalised passages and sentences of an example that are long enough to link it to another."""
    texts = (normalise(s) for field in ("text", "text_pair") for s in _strings(example.get(field)))
    return {text for text in texts if len(text) >= MIN_SHARED_CHARS}


def _wsc_sentence(example: Example) -> list[Hashable]:
    # The marked sentence, marks removed by normalisation: every candidate of one sentence, whatever its length.
    return [("sentence", normalise(example["text"]))]


def _record_passage(example: Example) -> list[Hashable]:
    return [("passage", normalise(example["text_pair"]))]


def _own_group(example: Example) -> list[Hashable]:
    # MultiRC: one passage + question; AX-g: the two gender variants of one sentence.
    return [("group", example["group"])] if "group" in example else []


# The task's own keys, beside the shared texts: what the task itself says belongs together.
TASK_KEYS: dict[str, Callable[[Example], list[Hashable]]] = {
    "wsc": _wsc_sentence,
    "record": _record_passage,
}


def example_keys(example: Example, task: str, own_group: bool = True) -> set[Hashable]:
    """Everything that links an example to others of the same task. ``own_group=False`` leaves out the
    formulation's ``group`` id, which numbers groups within one file and means nothing across two files."""
    keys: set[Hashable] = {("text", text) for text in shared_texts(example)}
    if own_group:
        keys.update(_own_group(example))
    # A task file's `group` columns: equal values are one group in any file (one user, one passage id).
    keys.update(("column", *key) for key in example.get("meta", {}).get("group_keys", ()))
    if task in TASK_KEYS:
        keys.update(TASK_KEYS[task](example))
    return keys


_GROUPS: OrderedDict[tuple[str, bytes], list[list[int]]] = OrderedDict()
_GROUPS_KEPT = 8
"""A sweep worker trains run after run on the same training file: the groups of its last few example lists are
kept (keyed by their content), so a run drawing a subset of SST-2's 67k examples does not group them again."""


def connected_groups(examples: list[Example], task: str) -> list[list[int]]:
    """Positions of the examples grouped into connected components, each in input order, ordered by their
    first member: a pure function of the examples (computed once per content in a process; callers get their own
    lists)."""
    key = (task, hashlib.blake2b(pickle.dumps(examples, protocol=5), digest_size=32).digest())
    groups = _GROUPS.get(key)
    if groups is None:
        groups = _GROUPS[key] = _connected_groups(examples, task)
        while len(_GROUPS) > _GROUPS_KEPT:
            _GROUPS.popitem(last=False)
    _GROUPS.move_to_end(key)
    return [list(members) for members in groups]


def _connected_groups(examples: list[Example], task: str) -> list[list[int]]:
    parent = list(range(len(examples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_key: dict[Hashable, int] = {}
    for position, example in enumerate(examples):
        for key in example_keys(example, task):
            other = first_with_key.setdefault(key, position)
            if other != position:
                a, b = find(other), find(position)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    components: dict[int, list[int]] = {}
    for position in range(len(examples)):
        components.setdefault(find(position), []).append(position)
    return sorted(components.values(), key=lambda members: members[0])


def shared_count(left: list[Example], right: list[Example], task: str, same_file: bool = True) -> int:
    """How many examples of ``right`` share a key (a normalised text or a task key) with an example of ``left``.

    ``same_file``: both sides were drawn from one official file, so their ``group`` ids are comparable.
    """
    seen: set[Hashable] = set()
    for example in left:
        seen.update(example_keys(example, task, same_file))
    return sum(1 for example in right if example_keys(example, task, same_file) & seen)


__all__ = ["MIN_SHARED_CHARS", "connected_groups", "example_keys", "normalise", "shared_count", "shared_texts"]
