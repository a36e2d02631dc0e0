"""A batch of keys as tensors, for each training mode: the prefetcher's `load(keys)`.

- `CacheBatches` (recycled): the layer-K states of the keys, decoded from the cache.
- `TokenBatches` (full, frozen): the keys' token ids as the cache holds them, so the whole model
  sees exactly the tokens the lower stack saw (no re-tokenizing of the raw corpus), plus the
  segment ids of text pairs (QA) where the tokenizer gives them (`segment_ids`).
- `batch_source(config, reader, data, model_path)` picks one for the run's mode;
  `model_inputs(batch)` is what the model is called with.

A batch is a dict: inputs, attention_mask, keys, labels, and token_type_ids where used.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from runtime.tasks import task_named


def collate_hidden(arrays: list) -> tuple:
    """Pad float32 [T_i, H] arrays to the batch max: hidden (B, T, H) and attention_mask (B, T)."""
    width = max(a.shape[0] for a in arrays)
    hidden = torch.zeros(len(arrays), width, arrays[0].shape[1], dtype=torch.float32)
    mask = torch.zeros(len(arrays), width, dtype=torch.long)
    for i, a in enumerate(arrays):
        hidden[i, :a.shape[0]] = torch.from_numpy(np.require(a, np.float32, ["C", "W"]))
        mask[i, :a.shape[0]] = 1
    return hidden, mask


def collate_ids(sequences: list, pad_id: int) -> tuple:
    """Pad token id sequences: input_ids (B, T) and attention_mask (B, T)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), width, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.as_tensor(np.asarray(s, dtype=np.int64))
        mask[i, :len(s)] = 1
    return ids, mask


class CacheBatches:
    """Loads a batch of keys from the cache: decode, dequantise, pad (run off the main thread)."""

    def __init__(self, reader, targets: dict, task: str):
        self.reader, self.targets, self.task = reader, targets, task_named(task)

    def __call__(self, keys: list) -> dict:
        hidden, mask = collate_hidden([self.reader.get(k) for k in keys])
        return {"inputs": hidden, "attention_mask": mask, "keys": keys,
                "labels": self.task.pad_targets([self.targets[k] for k in keys], mask.shape[1])}


class TokenBatches:
    """Loads a batch of keys as token ids (full / frozen modes).

    token_ids: key -> int array, or a cache reader (its `token_ids(key)`); segments: key ->
    segment ids for text pairs, or None where every token is segment 0.
    """

    def __init__(self, token_ids, targets: dict, task: str, pad_id: int, segments=None):
        self.token_ids, self.targets, self.pad_id = token_ids, targets, pad_id
        self.task, self.segments = task_named(task), segments

    def __call__(self, keys: list) -> dict:
        ids, mask = collate_ids([self._ids(k) for k in keys], self.pad_id)
        batch = {"inputs": ids, "attention_mask": mask, "keys": keys,
                 "labels": self.task.pad_targets([self.targets[k] for k in keys], mask.shape[1])}
        if self.segments is not None:
            batch["token_type_ids"] = collate_ids([self.segments(k) for k in keys], 0)[0]
        return batch

    def _ids(self, key: str):
        if hasattr(self.token_ids, "token_ids"):
            return self.token_ids.token_ids(key).astype(np.int64)
        return self.token_ids[key]


def model_inputs(batch: dict) -> tuple:
    """The model's positional arguments for a batch: (inputs, attention_mask[, token_type_ids])."""
    if "token_type_ids" in batch:
        return batch["inputs"], batch["attention_mask"], batch["token_type_ids"]
    return batch["inputs"], batch["attention_mask"]


def batch_source(config, reader, data, model_path: str):
    """The prefetcher's `load(keys)` for the run's mode (see module docstring)."""
    targets = {e.key: e.target for e in data.examples}
    if config.mode == "recycled":
        return CacheBatches(reader, targets, config.task)
    return token_source(reader, targets, config.task, model_path)


def token_source(reader, targets: dict, task: str, model_path: str) -> TokenBatches:
    """TokenBatches over the cache's token ids, with the pad id and segment ids of the
    checkpoint's tokenizer (the one the cache was built with: the fingerprints say so)."""
    pad_id, second_segment = _tokenizer_facts(model_path)
    pairs = bool(reader.manifest.get("text_pair_field"))
    segments = None
    if pairs and second_segment:
        segments = functools.partial(segment_ids, reader)
    return TokenBatches(reader, targets, task, pad_id, segments)


def segment_ids(reader, key: str) -> np.ndarray:
    """int64 [T] segment ids of a cached text pair: 1 after the separator that ends the first
    text, as BERT-style tokenizers set token_type_ids (the cache's offsets are empty for
    special tokens; the first empty span after a real token is that separator)."""
    spans = np.asarray(reader.offsets(key)).reshape(-1, 2)
    out = np.zeros(len(spans), dtype=np.int64)
    real = (spans[:, 1] > spans[:, 0]).tolist()
    seen_first = False
    for t, is_real in enumerate(real):
        if is_real:
            seen_first = True
        elif seen_first:
            out[t + 1:] = 1
            break
    return out


@functools.lru_cache(maxsize=8)
def _tokenizer_facts(model_path: str) -> tuple:
    """(pad id, whether the tokenizer gives the second text of a pair segment id 1)."""
    from export.tokenize import load_tokenizer

    tokenizer = load_tokenizer(model_path)
    probe = tokenizer("a", "b", return_token_type_ids=True)
    return tokenizer.pad_token_id or 0, any(probe.get("token_type_ids") or [])
