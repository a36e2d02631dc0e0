"""Labels files joined on the example key, and the train/dev/test splits.

A labels file is JSON lines (`.jsonl`) or CSV (`.csv`), one row per example:

- the example key (`id_field`, default `id`): the same key the cache holds. Long texts that
  export split into stride windows are cached as `ID#N`; a row for `ID` labels all of them.
- the label (`label_field`, default `label`):
  - seq-cls: a class name (any JSON scalar);
  - token-cls: a list of word labels plus a list of words (`words_field`, default `words`;
    the words joined by single spaces are the text the cache was built from), or a list of
    one label per cached token (null for tokens to ignore). In CSV a list is a JSON list or
    whitespace-separated values;
  - qa: `{"text": answer or [answers], "answer_start": char offset or [offsets]}`, SQuAD style,
    character offsets into the cached text.
- optionally `split` (train / dev / test). Where no row has it, the split is drawn by
  `assign_splits`: the distinct example ids are sorted, permuted with
  `numpy.random.default_rng(seed)`, then the first 80% are train, the next 10% dev and the rest
  test (dev and test get at least one example each once there are 3 examples). Windows of one
  example always share its split.

What a row's label becomes (a class id, token labels, an answer span) is the task's business
(runtime.tasks, with runtime.targets placing word labels and answers on tokens).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from typing import Any

import numpy as np

from export.window_keys import example_id_of
from runtime.errors import RuntimeConfigError
from runtime.tasks import task_named

SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class LabelsConfig:
    """Where the labels are and how to read them."""

    path: str  # .jsonl or .csv file
    task: str  # seq-cls | token-cls | qa
    id_field: str = "id"  # column holding the example key (the cache key)
    label_field: str = "label"  # column holding the label (see module docstring)
    words_field: str = "words"  # token-cls: column holding the words of the text
    split_field: str = "split"  # optional column: train / dev / test
    seed: int = 0  # seeds the 80/10/10 split when there is no split column
    allow_unlabelled: bool = False  # True: cache keys without a label are skipped, not refused

    def __post_init__(self):
        task_named(self.task)  # refuses an unknown task with the known ones


@dataclasses.dataclass
class Example:
    """One cached record with its target, ready for the loader."""

    key: str  # cache key
    example_id: str  # key in the labels file (the cache key without its #N window suffix)
    split: str
    target: Any  # class id | int64 [T] token labels | (start, end) token positions
    answers: tuple = ()  # qa: the gold answer strings


@dataclasses.dataclass
class LabelledData:
    """The cache's records joined with their labels."""

    task: str
    label_names: list  # class id -> label name (seq-cls, token-cls); empty for qa
    examples: list  # list[Example], in cache order

    def split(self, name: str) -> list:
        return [e for e in self.examples if e.split == name]


def read_rows(config: LabelsConfig) -> list:
    """Rows of the labels file as dicts; refuses unknown formats and rows without a key."""
    if not os.path.isfile(config.path):
        raise RuntimeConfigError(f"labels file {config.path!r} does not exist; "
                                 "pass an existing .jsonl or .csv file with --labels")
    ext = os.path.splitext(config.path)[1].lower()
    if ext not in (".jsonl", ".csv"):
        raise RuntimeConfigError(f"labels file {config.path!r} has extension {ext!r}; "
                                 "use .jsonl or .csv")
    try:
        if ext == ".jsonl":
            rows = _read_jsonl(config.path)
        else:
            with open(config.path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
    except UnicodeDecodeError as exc:
        raise RuntimeConfigError(f"labels file {config.path!r} is not UTF-8 (byte {exc.start} "
                                 "of a line); save it as UTF-8") from None
    if not rows:
        raise RuntimeConfigError(f"labels file {config.path!r} holds no rows; one row per "
                                 "labelled example")
    for i, row in enumerate(rows, 1):
        for field in (config.id_field, config.label_field):
            if row.get(field) in (None, ""):
                raise RuntimeConfigError(
                    f"labels file {config.path!r} row {i} has no {field!r} field; give every "
                    f"row one, or name the right column with --id-field / --label-field")
    return rows


def assign_splits(ids, seed: int) -> dict:
    """The seeded 80/10/10 split described in the module docstring: id -> split name."""
    ordered = sorted(set(ids))
    n = len(ordered)
    n_held = max(1, n // 10) if n >= 3 else 0
    perm = np.random.default_rng(seed).permutation(n)
    splits = {}
    for rank, i in enumerate(perm):
        splits[ordered[i]] = ("test" if rank >= n - n_held
                              else "dev" if rank >= n - 2 * n_held else "train")
    return splits


def load_labelled(config: LabelsConfig, reader) -> LabelledData:
    """Join the labels file with the cache `reader`; refuses keys that do not match up."""
    rows = _unique_rows(config, read_rows(config))
    splits = _splits(config, rows)
    pairs = _match_keys(config, rows, reader)
    task = task_named(config.task)
    task.check_rows(config, rows, reader, pairs)
    names = _label_names(config, task, rows, splits) if task.has_label_names else []
    index = {n: i for i, n in enumerate(names)}
    examples = []
    for key, example_id in pairs:
        target, answers = task.target(config, rows[example_id], reader, key, index)
        examples.append(Example(key, example_id, splits[example_id], target, answers))
    return LabelledData(config.task, names, examples)


def _unique_rows(config: LabelsConfig, rows: list) -> dict:
    """id -> row. A repeated id is refused when its labels differ (which one is right?);
    exact repeats are harmless and kept once."""
    unique = {}
    for row in rows:
        key = str(row[config.id_field])
        if key in unique and unique[key].get(config.label_field) != row.get(config.label_field):
            raise RuntimeConfigError(
                f"labels file {config.path!r} gives id {key!r} twice with different labels "
                f"({unique[key].get(config.label_field)!r} and {row.get(config.label_field)!r}); "
                "keep one row per id")
        unique.setdefault(key, row)
    return unique


def _read_jsonl(path: str) -> list:
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RuntimeConfigError(f"labels file {path!r} line {i} is not JSON ({exc.msg}); "
                                         "write one JSON object per line") from None
            if not isinstance(row, dict):
                raise RuntimeConfigError(f"labels file {path!r} line {i} is not a JSON object; "
                                         "write one object per line")
            rows.append(row)
    return rows


def _splits(config: LabelsConfig, rows: dict) -> dict:
    given = {k: r.get(config.split_field) for k, r in rows.items()}
    if all(v in (None, "") for v in given.values()):
        return assign_splits(rows, config.seed)
    for k, v in given.items():
        if v not in SPLITS:
            raise RuntimeConfigError(
                f"labels file {config.path!r}: key {k!r} has split {v!r}; every row needs "
                f"one of {', '.join(SPLITS)} once the {config.split_field!r} column is used")
    return given


WRITE_BACK_PREFIX = "text-"  # keys `runtime.predict --write-back` adds; never need a label


def _match_keys(config: LabelsConfig, rows: dict, reader) -> list:
    """(cache key, labels id) pairs in cache order; a window ID#N matches the row ID."""
    pairs, unlabelled, seen = [], [], set()
    for key in reader.keys():
        if key.startswith(WRITE_BACK_PREFIX) and key not in rows:
            continue
        example_id = key if key in rows else example_id_of(key)
        if example_id in rows:
            pairs.append((key, example_id))
            seen.add(example_id)
        else:
            unlabelled.append(key)
    missing = [k for k in rows if k not in seen]
    if missing:
        raise RuntimeConfigError(
            f"labels file {config.path!r} names {len(missing)} keys not in the cache "
            f"(first: {missing[0]!r}); remove them or build the cache from the same corpus")
    if unlabelled and not config.allow_unlabelled:
        raise RuntimeConfigError(
            f"labels file {config.path!r} is missing {len(unlabelled)} of the cache's keys "
            f"(first: {unlabelled[0]!r}); label them, or pass --allow-unlabelled to skip them")
    if not pairs:
        raise RuntimeConfigError(f"no cache key has a label in {config.path!r}; "
                                 f"check --id-field (now {config.id_field!r})")
    return pairs


def _label_names(config: LabelsConfig, task, rows: dict, splits: dict) -> list:
    train = {n for k, r in rows.items() if splits[k] == "train" for n in task.row_labels(config, r)}
    if not train:
        raise RuntimeConfigError(f"labels file {config.path!r} has no training examples; "
                                 "mark some rows split=train or drop the split column")
    for k, r in rows.items():
        unseen = [n for n in task.row_labels(config, r) if n not in train]
        if unseen:
            raise RuntimeConfigError(
                f"label {unseen[0]!r} of key {k!r} ({splits[k]} split) never occurs in the "
                "training split; add training examples with it or drop that row")
    return sorted(train)


