"""The batch plan for training and inference: length-bucketed, under a token budget, locally
shuffled.

Batches are lists of cache keys, planned once from the cache's per-record token counts (no
decode). The same plan feeds every mode (runtime.batches turns a batch of keys into tensors):
recycled batches read hidden states from the cache, full/frozen batches the cache's token ids
of the same keys, so both see the same examples in the same order. Within a block, records are
bucketed by export.batching.make_batches, the one bucketing the cache build uses too.

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

from export.batching import make_batches

# The defaults of TrainConfig's batching options (runtime.config) and of a bare BatchPlan.
TOKEN_BUDGET = 4096  # padded tokens per batch
MAX_BATCH_SIZE = 32  # records per batch
SHUFFLE_WINDOW = 32  # consecutive keys read together
WINDOWS_PER_BLOCK = 16  # windows mixed per block


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """How to cut keys into batches."""

    token_budget: int = TOKEN_BUDGET  # max padded tokens per batch: batch size * longest record
    max_batch_size: int = MAX_BATCH_SIZE  # cap on records per batch, whatever the budget allows
    window: int = SHUFFLE_WINDOW  # consecutive keys read together (a short run of the cache)
    windows_per_block: int = WINDOWS_PER_BLOCK  # windows mixed into one block of batches

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
        # longest first, ties in block order: the first batch of an unshuffled plan is the
        # biggest, so running out of memory shows up at step one
        cut = [block[list(b.indices)].tolist() for b in
               make_batches(lengths[block].tolist(), plan.token_budget, plan.max_batch_size)]
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


