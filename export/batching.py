"""Length bucketing under a token budget, and collation into padded arrays.

Records are sorted longest first and cut into batches whose padded size (batch size times the
longest record in it) stays within `batch_tokens`. Sorting makes neighbours nearly equal in
length, so padding is a small share of the computed tokens (measured on BBC News at max length
256: see the README), and longest-first means an out-of-memory batch shows up at once, not at
the end of a long run. Padding is on the right; pad positions never reach the cache.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .errors import ExportError
from .tokenize import Encoded

MAX_BATCH_SIZE = 256  # cap for very short records: bigger batches stop paying off on CPU
# The build's default padded tokens per batch. Twice training's 4096 (runtime.loader's
# TOKEN_BUDGET) because the build runs inference only: no activations are kept for a backward
# pass, so a batch of the same memory holds more tokens.
BATCH_TOKENS = 8192


@dataclasses.dataclass(frozen=True)
class Batch:
    indices: tuple[int, ...]  # positions in the encoded list
    length: int  # padded length T: the longest record in the batch


def make_batches(lengths: Sequence[int], batch_tokens: int,
                 max_batch_size: int = MAX_BATCH_SIZE) -> list[Batch]:
    """Bucket records by length under a token budget.

    Args:
        lengths: tokens per record.
        batch_tokens: most padded tokens (B * T) per batch; a record longer than the budget
            goes alone in its batch.
        max_batch_size: most records per batch.
    Returns:
        Batches, longest first; ties keep input order, so the result is deterministic.
    """
    if batch_tokens < 1 or max_batch_size < 1:
        raise ExportError(f"--batch-tokens must be at least 1, got {batch_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[Batch] = []
    current: list[int] = []
    for i in order:
        longest = lengths[current[0]] if current else lengths[i]
        if current and ((len(current) + 1) * longest > batch_tokens
                        or len(current) >= max_batch_size):
            batches.append(Batch(tuple(current), longest))
            current = []
        current.append(i)
    if current:
        batches.append(Batch(tuple(current), lengths[current[0]]))
    return batches


def computed_tokens(batches: Sequence[Batch]) -> int:
    """Token positions the model computes, padding included."""
    return sum(len(b.indices) * b.length for b in batches)


def padding_fraction(batches: Sequence[Batch], lengths: Sequence[int]) -> float:
    """Share of computed positions that are padding."""
    computed = computed_tokens(batches)
    real = sum(lengths[i] for b in batches for i in b.indices)
    return 0.0 if computed == 0 else 1.0 - real / computed


def collate(encoded: Sequence[Encoded], batch: Batch, pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays for one batch: input_ids, attention_mask, token_type_ids,
    each (B, T)."""
    size = (len(batch.indices), batch.length)
    input_ids = np.full(size, pad_id, dtype=np.int64)  # (B, T)
    attention_mask = np.zeros(size, dtype=np.int64)  # (B, T)
    token_type_ids = np.zeros(size, dtype=np.int64)  # (B, T)
    for row, i in enumerate(batch.indices):
        n = len(encoded[i])
        input_ids[row, :n] = encoded[i].input_ids
        attention_mask[row, :n] = 1
        token_type_ids[row, :n] = encoded[i].token_type_ids
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": token_type_ids}
