"""Tokenization for the cache build: a fast tokenizer, truncation at `max_length`, and with
`stride > 0` sliding windows over long documents, each window its own record keyed "ID#N".

Every encoded record keeps its offset mapping (character spans into its text, special tokens
(0, 0)) so that word- and character-level labels can be aligned to cached tokens later. For a
text pair the offsets are as the tokenizer returns them: each span indexes its own text.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np

from .corpus import Record
from .errors import ExportError
from .window_keys import window_key

_CHUNK = 512  # records per tokenizer call: bounds the Python lists the tokenizer returns


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                    "spm.model", "spiece.model", "sentencepiece.bpe.model")


@dataclasses.dataclass(frozen=True)
class Encoded:
    """One record (or one window of a record) ready for the lower stack."""

    key: str  # the cache key: the record id, or "ID#N" for window N of a strided record
    input_ids: np.ndarray  # int32 [T]
    token_type_ids: np.ndarray  # int32 [T]; zeros for single texts
    offsets: np.ndarray  # int32 [T, 2] character spans; special tokens (0, 0)

    def __len__(self) -> int:
        return len(self.input_ids)


def load_tokenizer(model_path: str | Path):
    """The checkpoint's fast tokenizer; offsets need a fast (Rust) tokenizer."""
    from transformers import AutoTokenizer

    if not any((Path(model_path) / name).is_file() for name in _TOKENIZER_FILES):
        raise ExportError(f"{model_path} has no tokenizer (none of {', '.join(_TOKENIZER_FILES)}"
                          f"); save it beside the model with tokenizer.save_pretrained")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path), use_fast=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportError(f"{model_path} has no usable tokenizer ({str(exc).splitlines()[0]}); "
                          f"save it beside the model with tokenizer.save_pretrained") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{model_path}: the tokenizer is not a fast tokenizer, so it cannot "
                          f"give character offsets; save a tokenizer.json with the model")
    return tokenizer


def truncation_strategy(pairs: bool) -> str:
    """Pairs truncate the second text only (the context, never the question)."""
    return "only_second" if pairs else "longest_first"


def check_lengths(tokenizer, *, max_length: int, stride: int, pairs: bool,
                  model_limit: int) -> None:
    """max_length must fit the model's positions; a window must advance by at least a token."""
    specials = tokenizer.num_special_tokens_to_add(pair=pairs)
    if not specials < max_length <= model_limit:
        raise ExportError(f"--max-length {max_length} is out of range for this model; pick "
                          f"{specials + 1} <= N <= {model_limit}")
    if stride < 0 or (stride and stride >= max_length - specials):
        raise ExportError(f"--stride {stride} must be 0 (truncate) or less than --max-length "
                          f"minus {specials} special tokens ({max_length - specials})")


def tokenize(records: Sequence[Record], tokenizer, *, max_length: int,
             stride: int = 0) -> list[Encoded]:
    """Encode records in order; with stride > 0, windows of one record follow one another.

    Args:
        records: all with a text pair, or all without one.
        tokenizer: a fast tokenizer (see `load_tokenizer`).
        max_length: tokens per record or window, special tokens included.
        stride: 0 truncates; > 0 keeps overflowing windows that overlap by `stride` tokens.
    """
    pairs = bool(records) and records[0].text_pair is not None
    options = dict(truncation=truncation_strategy(pairs), max_length=max_length,
                   return_offsets_mapping=True, return_token_type_ids=True,
                   return_attention_mask=False)
    if stride:
        options.update(stride=stride, return_overflowing_tokens=True)
    encoded: list[Encoded] = []
    for start in range(0, len(records), _CHUNK):
        encoded.extend(_tokenize_chunk(records[start:start + _CHUNK], tokenizer, pairs,
                                       stride, options))
    return encoded


def _tokenize_chunk(chunk, tokenizer, pairs, stride, options) -> list[Encoded]:
    texts = [r.text for r in chunk]
    second = [r.text_pair for r in chunk] if pairs else None
    try:
        batch = tokenizer(texts, second, **options)
    except Exception as exc:  # the Rust tokenizer raises plain Exception on truncation errors
        raise ExportError(f"tokenizing records {chunk[0].id!r}..{chunk[-1].id!r} failed "
                          f"({str(exc).splitlines()[0]}); with text pairs the first text must "
                          f"fit in --max-length") from None
    sources = batch["overflow_to_sample_mapping"] if stride else range(len(chunk))
    out, windows = [], {}
    for row, source in enumerate(sources):
        record = chunk[source]
        key = record.id
        if stride:
            n = windows[source] = windows.get(source, -1) + 1
            key = window_key(record.id, n)
        out.append(Encoded(
            key=key,
            input_ids=np.asarray(batch["input_ids"][row], dtype=np.int32),
            token_type_ids=np.asarray(batch["token_type_ids"][row], dtype=np.int32),
            offsets=np.asarray(batch["offset_mapping"][row], dtype=np.int32).reshape(-1, 2),
        ))
    return out
