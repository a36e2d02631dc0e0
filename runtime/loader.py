"""Batches for training and inference: length-bucketed, under a token budget, locally shuffled.

Batches are lists of cache keys, planned once from the cache's per-record token counts (no
decode). The same plan feeds every mode: recycled batches read hidden states from the cache,
full/frozen batches tokenize the raw text of the same keys, so both see the same examples in
the same order.

Shuffling keeps reads local: keys in cache order (the order they lie on disk) are cut into
windows of `window` consecutive keys, and the windows are shuffled. Consecutive shuffled
windows are grouped into blocks of `windows_per_block`; the keys of a block are shuffled, sorted
by length and cut into batches, and the batches of a block are shuffled. A batch therefore reads
a few short runs of the cache, pads little, and still mixes examples from `windows_per_block`
random places of the corpus: a corpus stored in label order (BBC News is stored topic by topic)
would otherwise give batches of one class, and training that lurches from class to class.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from runtime.labels import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How to cut keys into batches."""

    token_budget: int = 8192  # max padded tokens per batch: batch size * longest record
    max_batch_size: int = 64  # cap on records per batch, whatever the budget allows
    window: int = 32  # consecutive keys read together (a short run of the cache)
    windows_per_block: int = 16  # windows mixed into one block of shuffled, bucketed batches

    def __post_init__(self):
        values = (self.token_budget, self.max_batch_size, self.window, self.windows_per_block)
        if min(values) < 1:
            raise ValueError(f"token_budget, max_batch_size, window and windows_per_block must "
                             f"be >= 1, got {values}")


def plan_batches(keys, lengths, plan: BatchPlan, *, shuffle: bool, seed: int = 0,
                 epoch: int = 0) -> list:
    """Cut `keys` into batches of keys, each under `plan.token_budget` padded tokens.

    Args:
        keys: cache keys in cache order; lengths: their token counts (same order).
        shuffle: shuffle windows and within windows (seeded by seed and epoch); if False,
            the plan is deterministic: windows in order, longest records first within them.
    Returns:
        list of lists of keys.
    """
    keys = list(keys)
    lengths = np.asarray(lengths, dtype=np.int64)  # (n,): one array, not n Python ints
    order = np.arange(len(keys))
    windows = [order[i:i + plan.window] for i in range(0, len(keys), plan.window)]
    rng = np.random.default_rng([seed, epoch])
    if shuffle:
        windows = [windows[i] for i in rng.permutation(len(windows))]
    step = plan.windows_per_block
    batches = []
    for b in range(0, len(windows), step):
        block = np.concatenate(windows[b:b + step])
        if shuffle:  # ties in length then fall in random order
            block = block[rng.permutation(len(block))]
        # stable sort, longest first: the first batch of an unshuffled plan is the biggest,
        # so running out of memory shows up at step one
        block = block[np.argsort(-lengths[block], kind="stable")]
        cut = _cut(block.tolist(), lengths[block].tolist(), plan)
        if shuffle:
            cut = [cut[i] for i in rng.permutation(len(cut))]
        batches.extend([[keys[i] for i in c] for c in cut])
    return batches


def plan_cache_batches(reader, keys, plan: BatchPlan, **options) -> list:
    """plan_batches over cache keys, their lengths read from the cache's index (no decode),
    as one array (CacheReader.num_tokens_array)."""
    keys = list(keys)
    return plan_batches(keys, reader.num_tokens_array(keys), plan, **options)


def shard_batches(batches: list, rank: int, world_size: int) -> list:
    """This rank's batches: every world_size-th one, trimmed so all ranks take equal steps.

    DDP needs the same number of steps on every rank (each step all-reduces gradients), so
    the tail that not every rank could take is dropped.
    """
    steps = len(batches) // world_size if world_size > 1 else len(batches)
    return batches[rank::world_size][:steps]


def _cut(indices: list, lengths: list, plan: BatchPlan) -> list:
    """Cut `indices` (lengths[j] is the length of indices[j]) into batches under the plan."""
    out, cur, longest = [], [], 0
    for i, length in zip(indices, lengths):
        longest_if = max(longest, length)
        if cur and (longest_if * (len(cur) + 1) > plan.token_budget
                    or len(cur) >= plan.max_batch_size):
            out.append(cur)
            cur, longest_if = [], length
        cur.append(i)
        longest = longest_if
    if cur:
        out.append(cur)
    return out


def pad_targets(targets: list, task: str, width: int) -> torch.Tensor:
    """Targets of one batch as a tensor: [B] class ids, [B, T] token labels or [B, 2] spans."""
    if task == "seq-cls":
        return torch.tensor(targets, dtype=torch.long)  # (B,)
    if task == "qa":
        return torch.tensor(targets, dtype=torch.long).reshape(-1, 2)  # (B, 2)
    out = torch.full((len(targets), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for i, t in enumerate(targets):
        out[i, :len(t)] = torch.as_tensor(t)
    return out


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
        self.reader, self.targets, self.task = reader, targets, task

    def __call__(self, keys: list) -> dict:
        hidden, mask = collate_hidden([self.reader.get(k) for k in keys])
        return {"inputs": hidden, "attention_mask": mask, "keys": keys,
                "labels": pad_targets([self.targets[k] for k in keys], self.task, mask.shape[1])}


class TextBatches:
    """Loads a batch of keys as token ids of the raw text (full / frozen modes)."""

    def __init__(self, token_ids: dict, targets: dict, task: str, pad_id: int):
        self.token_ids, self.targets, self.task, self.pad_id = token_ids, targets, task, pad_id

    def __call__(self, keys: list) -> dict:
        ids, mask = collate_ids([self.token_ids[k] for k in keys], self.pad_id)
        return {"inputs": ids, "attention_mask": mask, "keys": keys,
                "labels": pad_targets([self.targets[k] for k in keys], self.task, mask.shape[1])}
