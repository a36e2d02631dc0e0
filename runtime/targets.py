"""Targets from labels: word labels placed on tokens, and QA answers placed on token spans.

What each task makes of a labels-file row (runtime.tasks calls these):

- token-cls: word labels go to tokens through the cache's character offsets: the first
  sub-token of a word gets the word's label, the other sub-tokens and special tokens get -100
  (ignored by the loss), as transformers' token-classification examples do. The words joined by
  single spaces must be the cached text (`check_words_match`).
- qa: a SQuAD-style answer (`{"text", "answer_start"}`, character offsets into the cached text)
  becomes the (start, end) token span inside the context (`qa_target`, `context_mask`).
"""

from __future__ import annotations

import bisect
import json

import numpy as np

from runtime.errors import RuntimeConfigError

IGNORE_INDEX = -100  # label value the losses skip, as in torch's cross_entropy default


def as_list(value) -> list:
    if isinstance(value, str):  # CSV cell: a JSON list or whitespace-separated values
        value = json.loads(value) if value.lstrip().startswith("[") else value.split()
    if not isinstance(value, list):
        raise RuntimeConfigError(f"expected a list of labels, got {value!r}; token-cls labels "
                                 "are a list of word labels or one label per token")
    return value


def row_label_preview(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def token_target(config, row, reader, key: str, index: dict) -> np.ndarray:
    """int64 [T] token labels of a token-cls row: from word labels, or one label per token."""
    labels = as_list(row[config.label_field])
    words = row.get(config.words_field)
    if words is None:  # one label per token
        if len(labels) != reader.num_tokens(key):
            raise RuntimeConfigError(
                f"key {key!r}: {len(labels)} labels but the cache holds "
                f"{reader.num_tokens(key)} tokens; give one label per token, or the words "
                f"in a {config.words_field!r} column")
        return np.array([IGNORE_INDEX if v is None else index[str(v)] for v in labels],
                        dtype=np.int64)
    words = [str(w) for w in as_list(words)]
    if len(words) != len(labels):
        raise RuntimeConfigError(f"key {key!r}: {len(words)} words but {len(labels)} labels; "
                                 "give one label per word")
    return align_word_labels(offsets_of(reader, key), words, [index[str(v)] for v in labels])


def check_words_match(config, rows: dict, reader, pairs: list) -> None:
    """Refuse words that are not the cached text: every cached token's character span must
    lie inside one word of " ".join(words) (tokenizers never cross whitespace)."""
    bad = []
    for key, example_id in pairs:
        words = rows[example_id].get(config.words_field)
        if words is None or reader.offsets(key) is None:
            continue  # one label per token, or no offsets (refused later with its own message)
        problem = word_mismatch(reader.offsets(key), [str(w) for w in as_list(words)])
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


def offsets_of(reader, key: str) -> np.ndarray:
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


def qa_target(config, raw, reader, key: str):
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
    offsets = offsets_of(reader, key)
    inside = [t for t, on in enumerate(context_mask(offsets).tolist())
              if on and offsets[t][0] < end and offsets[t][1] > begin]
    # answer outside this window: point at the first token, as transformers' QA examples do
    span = (inside[0], inside[-1]) if inside else (0, 0)
    return span, tuple(str(t) for t in texts)
