"""runtime.loader: batches respect the token budget, cover every key once, shuffle locally."""

import pytest
from hypothesis import given, settings, strategies as st

from runtime.loader import BatchPlan, plan_batches, shard_batches


def _keys(n):
    return [f"k{i:04d}" for i in range(n)]


@settings(max_examples=50, deadline=None)
@given(lengths=st.lists(st.integers(1, 64), min_size=1, max_size=200),
       budget=st.integers(64, 512), shuffle=st.booleans(), seed=st.integers(0, 3))
def test_every_key_once_and_under_budget(lengths, budget, shuffle, seed):
    keys = _keys(len(lengths))
    by_key = dict(zip(keys, lengths))
    plan = BatchPlan(token_budget=budget, max_batch_size=16, window=8, windows_per_block=4)
    batches = plan_batches(keys, lengths, plan, shuffle=shuffle, seed=seed)
    assert sorted(k for b in batches for k in b) == keys
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or max(by_key[k] for k in b) * len(b) <= budget


def test_shuffle_keeps_batches_inside_one_block_of_windows():
    keys = _keys(200)
    plan = BatchPlan(token_budget=1000, max_batch_size=8, window=10, windows_per_block=4)
    batches = plan_batches(keys, [10] * 200, plan, shuffle=True, seed=1)
    blocks = [batches[i:i + 5] for i in range(0, len(batches), 5)]  # 40 keys -> 5 batches
    for block in blocks:
        windows = {int(k[1:]) // 10 for b in block for k in b}
        assert len(windows) == 4  # a block reads 4 runs of 10 consecutive keys


def test_label_ordered_cache_still_gives_mixed_batches():
    # 5 classes stored one after another (as BBC News is): batches must not be single-class
    keys = _keys(500)
    label = {k: i // 100 for i, k in enumerate(keys)}
    batches = plan_batches(keys, [50] * 500, BatchPlan(token_budget=800), shuffle=True)
    mixed = sum(len({label[k] for k in b}) > 1 for b in batches)
    assert mixed / len(batches) > 0.9


def test_shuffle_depends_on_seed_and_epoch_and_is_reproducible():
    keys, lengths = _keys(64), list(range(1, 65))
    plan = BatchPlan(token_budget=256, window=16, windows_per_block=2)
    a = plan_batches(keys, lengths, plan, shuffle=True, seed=0, epoch=0)
    assert a == plan_batches(keys, lengths, plan, shuffle=True, seed=0, epoch=0)
    assert a != plan_batches(keys, lengths, plan, shuffle=True, seed=0, epoch=1)
    assert a != plan_batches(keys, lengths, plan, shuffle=True, seed=1, epoch=0)


def test_length_bucketing_groups_similar_lengths():
    keys = _keys(8)
    lengths = [5, 100, 6, 101, 5, 99, 7, 100]
    batches = plan_batches(keys, lengths, BatchPlan(token_budget=404, window=8), shuffle=False)
    by_key = dict(zip(keys, lengths))
    assert [sorted(by_key[k] for k in b) for b in batches] == [[99, 100, 100, 101], [5, 5, 6, 7]]


def test_shard_batches_gives_equal_disjoint_shares():
    batches = [[str(i)] for i in range(7)]
    r0, r1 = shard_batches(batches, 0, 2), shard_batches(batches, 1, 2)
    assert len(r0) == len(r1) == 3
    assert not {b[0] for b in r0} & {b[0] for b in r1}
    assert shard_batches(batches, 0, 1) == batches


def test_bad_plan_is_refused():
    with pytest.raises(ValueError, match="token_budget"):
        BatchPlan(token_budget=0)


def test_an_unshuffled_block_is_bucketed_as_the_cache_build_buckets():
    """One bucketing for build and training: a plan of one block is export's make_batches."""
    from export.batching import make_batches

    lengths = [7, 30, 12, 30, 5, 19, 19, 3, 25, 8]
    keys = [f"k{i}" for i in range(len(lengths))]
    plan = BatchPlan(token_budget=64, max_batch_size=3, window=len(keys), windows_per_block=1)
    expected = [[keys[i] for i in b.indices] for b in make_batches(lengths, 64, 3)]
    assert plan_batches(keys, lengths, plan, shuffle=False) == expected
