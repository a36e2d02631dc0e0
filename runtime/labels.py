"""Labels files joined on the example key, splits, and label-to-token alignment.

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

Word labels go to tokens through the cache's character offsets: the first sub-token of a word
gets the word's label, the other sub-tokens and special tokens get -100 (ignored by the loss),
as transformers' token-classification examples do.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import json
import os
from typing import Any

import numpy as np

from runtime.errors import RuntimeConfigError

IGNORE_INDEX = -100  # label value the losses skip, as in torch's cross_entropy default
SPLITS = ("train", "dev", "test")
TASKS = ("seq-cls", "token-cls", "qa")


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
        if self.task not in TASKS:
            raise RuntimeConfigError(f"task {self.task!r} is not one of {', '.join(TASKS)}; "
                                     "pick one with --task")


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
    if config.task == "token-cls":
        _check_words_match(config, rows, reader, pairs)
    names = _label_names(config, rows, splits) if config.task != "qa" else []
    index = {n: i for i, n in enumerate(names)}
    examples = []
    for key, example_id in pairs:
        row = rows[example_id]
        target, answers = _target(config, row, reader, key, index)
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


def _check_words_match(config: LabelsConfig, rows: dict, reader, pairs: list) -> None:
    """Refuse words that are not the cached text: every cached token's character span must
    lie inside one word of " ".join(words) (tokenizers never cross whitespace)."""
    bad = []
    for key, example_id in pairs:
        words = rows[example_id].get(config.words_field)
        if words is None or reader.offsets(key) is None:
            continue  # one label per token, or no offsets (refused later with its own message)
        problem = word_mismatch(reader.offsets(key), [str(w) for w in _as_list(words)])
        if problem:
            bad.append(f"key {key!r}: {problem}")
    if bad:
        raise RuntimeConfigError(
            f"labels file {config.path!r}: the {config.words_field!r} of {len(bad)} of "
            f"{len(pairs)} examples do not match the cached text (first: {bad[0]}); the words "
            "joined by single spaces must be the text the cache was built from")


def word_mismatch(offsets, words) -> str | None:
    """None when every token span of `offsets` lies inside one word of " ".join(words), else
    a description of the first token that does not."""
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    for t, (s, e) in enumerate(np.asarray(offsets).reshape(-1, 2).tolist()):
        if e <= s:
            continue  # special token
        w = bisect.bisect_right(starts, s) - 1
        if w < 0 or w >= len(words) or e > starts[w] + len(words[w]):
            return (f"token {t} spans characters {s}..{e}, which is not inside one word of "
                    f"the {len(words)} words given")
    return None


def align_word_labels(offsets, words, word_labels) -> np.ndarray:
    """Token labels from word labels: first sub-token of each word labelled, the rest -100.

    Args:
        offsets: int [T, 2] character spans of the tokens in " ".join(words); special tokens
            have an empty span and get -100.
        words: the words; word_labels: one class id per word.
    Returns:
        int64 [T].
    """
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    out = np.full(len(offsets), IGNORE_INDEX, dtype=np.int64)
    previous = -1
    for t, (s, e) in enumerate(np.asarray(offsets).tolist()):
        if e <= s:
            continue
        w = bisect.bisect_right(starts, s) - 1
        if w != previous and 0 <= w < len(words):
            out[t] = word_labels[w]
        previous = w
    return out


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
        example_id = key
        if key not in rows and "#" in key:
            example_id = key.rsplit("#", 1)[0]
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


def _as_list(value) -> list:
    if isinstance(value, str):  # CSV cell: a JSON list or whitespace-separated values
        value = json.loads(value) if value.lstrip().startswith("[") else value.split()
    if not isinstance(value, list):
        raise RuntimeConfigError(f"expected a list of labels, got {value!r}; token-cls labels "
                                 "are a list of word labels or one label per token")
    return value


def row_label_preview(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _row_labels(config: LabelsConfig, row) -> list:
    raw = row[config.label_field]
    if config.task == "seq-cls":
        return [str(raw)]
    return [str(v) for v in _as_list(raw) if v is not None]


def _label_names(config: LabelsConfig, rows: dict, splits: dict) -> list:
    train = {n for k, r in rows.items() if splits[k] == "train" for n in _row_labels(config, r)}
    if not train:
        raise RuntimeConfigError(f"labels file {config.path!r} has no training examples; "
                                 "mark some rows split=train or drop the split column")
    for k, r in rows.items():
        unseen = [n for n in _row_labels(config, r) if n not in train]
        if unseen:
            raise RuntimeConfigError(
                f"label {unseen[0]!r} of key {k!r} ({splits[k]} split) never occurs in the "
                "training split; add training examples with it or drop that row")
    return sorted(train)


def _target(config: LabelsConfig, row, reader, key: str, index: dict):
    raw = row[config.label_field]
    if config.task == "seq-cls":
        return index[str(raw)], ()
    if config.task == "qa":
        return _qa_target(config, raw, reader, key)
    labels = _as_list(raw)
    words = row.get(config.words_field)
    if words is None:  # one label per token
        if len(labels) != reader.num_tokens(key):
            raise RuntimeConfigError(
                f"key {key!r}: {len(labels)} labels but the cache holds "
                f"{reader.num_tokens(key)} tokens; give one label per token, or the words "
                f"in a {config.words_field!r} column")
        return np.array([IGNORE_INDEX if v is None else index[str(v)] for v in labels],
                        dtype=np.int64), ()
    words = [str(w) for w in _as_list(words)]
    if len(words) != len(labels):
        raise RuntimeConfigError(f"key {key!r}: {len(words)} words but {len(labels)} labels; "
                                 "give one label per word")
    return align_word_labels(_offsets(reader, key), words, [index[str(v)] for v in labels]), ()


def _offsets(reader, key: str) -> np.ndarray:
    offsets = reader.offsets(key)
    if offsets is None:
        raise RuntimeConfigError(
            f"cache record {key!r} has no character offsets, so word labels cannot be placed "
            "on tokens; rebuild the cache with offsets or give one label per token")
    return offsets


def context_mask(offsets) -> np.ndarray:
    """int64 [T]: 1 on tokens of the QA context, 0 on the question and special tokens.

    For a text pair the cache's offsets index each text separately, so the context is what
    follows the first special token (empty span) after the question; a single text is all
    context.
    """
    spans = np.asarray(offsets).reshape(-1, 2)
    real = spans[:, 1] > spans[:, 0]
    mask = real.astype(np.int64)
    seen_question = False
    for t, is_real in enumerate(real.tolist()):
        if is_real:
            seen_question = True
        elif seen_question:  # the separator after the question: context starts after it
            mask[:t + 1] = 0
            return mask
    return mask


def _qa_target(config: LabelsConfig, raw, reader, key: str):
    given = raw
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, dict):
        raise RuntimeConfigError(
            f"key {key!r}: qa labels must be an object like "
            f'{{"text": [...], "answer_start": [...]}} (SQuAD), got {row_label_preview(given)}; '
            "is --task right for this labels file?")
    texts, starts = raw.get("text"), raw.get("answer_start")
    texts = texts if isinstance(texts, list) else [texts]
    starts = starts if isinstance(starts, list) else [starts]
    if not texts or texts[0] is None or starts[0] is None:
        raise RuntimeConfigError(f"key {key!r}: qa labels need 'text' and 'answer_start'; "
                                 'write {"text": [...], "answer_start": [...]} as SQuAD does')
    if not isinstance(texts[0], str) or isinstance(starts[0], bool) \
            or not isinstance(starts[0], int) or starts[0] < 0:
        raise RuntimeConfigError(f"key {key!r}: qa answer text must be a string and "
                                 f"answer_start a character offset >= 0, got "
                                 f"{row_label_preview(texts[0])} at {row_label_preview(starts[0])}")
    begin, end = starts[0], starts[0] + len(texts[0])
    offsets = _offsets(reader, key)
    inside = [t for t, on in enumerate(context_mask(offsets).tolist())
              if on and offsets[t][0] < end and offsets[t][1] > begin]
    # answer outside this window: point at the first token, as transformers' QA examples do
    span = (inside[0], inside[-1]) if inside else (0, 0)
    return span, tuple(str(t) for t in texts)
