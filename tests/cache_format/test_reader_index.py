"""The reader's key index: token counts as one array, lookups across shard boundaries, and a
key repeated across shards named with both shards."""
import json

import numpy as np
import pytest

import cache_format
from cache_format.errors import CacheFormatError, MissingKeyError


def _many_shards(path, n=60, h=8):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, n)
    with cache_format.create(path, hidden_size=h, dtype="fp32", codec="none") as w:
        for i, t in enumerate(lengths):
            w.add(f"k{i}", np.arange(t), np.full((t, h), i, np.float32))
            if i % 10 == 9:
                w.commit()  # a shard of 10 records
    return lengths


def test_token_counts_as_one_array_across_shards(tmp_path):
    lengths = _many_shards(tmp_path / "c")
    r = cache_format.open(tmp_path / "c")
    assert len(r.manifest["shards"]) > 1
    counts = r.num_tokens_array()
    assert counts.tolist() == lengths.tolist() and not counts.flags.writeable
    some = ["k7", "k0", "k59", "k7"]
    assert r.num_tokens_array(some).tolist() == [r.num_tokens(k) for k in some]
    assert r.lengths() == {f"k{i}": int(t) for i, t in enumerate(lengths)}
    for i in (0, 17, 59):  # first, middle and last shard
        assert r.get(f"k{i}")[0, 0] == i
    with pytest.raises(MissingKeyError, match="key 'nope' is not in the cache"):
        r.num_tokens_array(["k1", "nope"])
    assert ["unhashable"] not in r and "nope" not in r and "k3" in r


def test_plan_cache_batches_matches_a_plan_from_python_ints(tmp_path):
    from runtime.loader import BatchPlan, plan_batches, plan_cache_batches

    _many_shards(tmp_path / "c")
    r = cache_format.open(tmp_path / "c")
    plan = BatchPlan(token_budget=64, window=4, windows_per_block=3)
    for shuffle in (False, True):
        want = plan_batches(r.keys(), [r.num_tokens(k) for k in r.keys()], plan,
                            shuffle=shuffle, seed=3)
        assert plan_cache_batches(r, r.keys(), plan, shuffle=shuffle, seed=3) == want


def test_a_key_in_two_shards_names_both(tmp_path):
    _many_shards(tmp_path / "c", n=3)
    manifest_path = tmp_path / "c" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"] = manifest["shards"] * 2  # the same shard listed twice
    manifest["num_examples"] *= 2
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CacheFormatError) as err:
        cache_format.open(tmp_path / "c")
    name = manifest["shards"][0]["name"]
    assert str(err.value) == (f"{tmp_path / 'c'}: key 'k0' appears in shard {name} and in shard "
                              f"{name}; parallel writers must write disjoint keys")
