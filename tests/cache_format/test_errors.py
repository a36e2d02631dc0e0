"""Bad input to the writer: one clear error, and what was already added stays intact."""
import numpy as np
import pytest

import cache_format
from cache_format import CacheFormatError

H = 8
GOOD_IDS = np.arange(3)
GOOD = np.zeros((3, H), np.float32)

BAD_ADDS = [
    ("non-string key", (7, GOOD_IDS, GOOD), "key must be a str, got int: 7"),
    ("empty key", ("", GOOD_IDS, GOOD), "key must be a non-empty string"),
    ("duplicate key", ("first", GOOD_IDS, GOOD), "key 'first' is already in the cache"),
    ("T = 0", ("k", np.arange(0), np.zeros((0, H))), "key 'k': a record needs at least one token (T = 0)"),
    ("rank 3 hidden", ("k", GOOD_IDS, np.zeros((3, H, 1))), "key 'k': hidden must have shape [T, H] = [3, 8]"),
    ("wrong hidden size", ("k", GOOD_IDS, np.zeros((3, H + 1))), "got [3, 9]"),
    ("length mismatch", ("k", np.arange(4), GOOD), "hidden must have shape [T, H] = [4, 8]"),
    ("NaN", ("k", GOOD_IDS, np.full((3, H), np.nan)), "key 'k': hidden holds NaN or Inf"),
    ("Inf", ("k", GOOD_IDS, np.full((3, H), np.inf)), "key 'k': hidden holds NaN or Inf"),
    ("integer hidden", ("k", GOOD_IDS, np.zeros((3, H), np.int32)), "hidden must be floating point"),
    ("negative token id", ("k", np.array([-1, 0, 1]), GOOD), "token ids must lie in 0..4294967295, got min -1"),
    ("token id >= 2**32", ("k", np.array([0, 2**32, 1], np.int64), GOOD), "token ids must lie in 0..4294967295"),
    ("token id >= vocab_size", ("k", np.array([0, 100, 1]), GOOD), None),
    ("float token ids", ("k", np.array([0.0, 1.0, 2.0]), GOOD), "token_ids must be a 1-D integer array"),
    ("2-D token ids", ("k", np.zeros((3, 1), int), GOOD), "token_ids must be a 1-D integer array"),
]


@pytest.mark.parametrize("args,message", [(a, m) for _, a, m in BAD_ADDS],
                         ids=[name for name, _, _ in BAD_ADDS])
@pytest.mark.parametrize("dtype", ["int8", "fp16"])
def test_bad_add_is_refused_and_earlier_records_survive(tmp_path, args, message, dtype):
    vocab = {"vocab_size": 50} if message is None else {}
    w = cache_format.create(tmp_path, hidden_size=H, dtype=dtype, metadata=vocab)
    w.add("first", GOOD_IDS, GOOD + 1)
    with pytest.raises(CacheFormatError) as err:
        w.add(*args)
    assert (message or "token ids must lie in 0..49, got min 0 max 100") in str(err.value)
    w.add("second", GOOD_IDS, GOOD + 2)  # the writer is still usable
    w.close()
    r = cache_format.open(tmp_path)
    assert r.keys() == ["first", "second"]
    np.testing.assert_allclose(r.get("first"), GOOD + 1, rtol=1e-2)


def test_bad_offsets_are_refused(tmp_path):
    w = cache_format.create(tmp_path, hidden_size=H)
    with pytest.raises(CacheFormatError, match=r"offsets must be an integer array of shape \[3, 2\]"):
        w.add("k", GOOD_IDS, GOOD, offsets=np.zeros((3,), int))
    with pytest.raises(CacheFormatError, match="offsets must lie in"):
        w.add("k", GOOD_IDS, GOOD, offsets=-np.ones((3, 2), int))


@pytest.mark.parametrize("kwargs,message", [
    ({"hidden_size": 0}, "hidden_size must be an integer in 1..1048576, got 0"),
    ({"hidden_size": 8, "dtype": "bf16"}, "unknown dtype 'bf16': expected one of fp32, fp16, int8"),
    ({"hidden_size": 8, "codec": "gzip"}, "unknown codec 'gzip': expected one of lz4, none, zstd"),
    ({"hidden_size": 8, "part": "a/b"}, "part must be 1-64 letters, digits or underscores"),
    ({"hidden_size": 8, "metadata": {"dtype": "x"}}, "metadata key(s) ['dtype'] are reserved"),
    ({"hidden_size": 8, "metadata": {"f": object()}}, "metadata must be JSON-serialisable"),
    ({"hidden_size": 8, "shard_bytes": 10}, "shard_bytes must be in 65536.."),
], ids=["hidden-size", "dtype", "codec", "part", "reserved-metadata", "unserialisable", "shard-bytes"])
def test_bad_create_arguments(tmp_path, kwargs, message):
    with pytest.raises(CacheFormatError) as err:
        cache_format.create(tmp_path / "c", **kwargs)
    assert message in str(err.value)


def test_existing_cache_is_never_overwritten(tmp_path):
    with cache_format.create(tmp_path, hidden_size=H) as w:
        w.add("a", GOOD_IDS, GOOD)
    with pytest.raises(CacheFormatError, match="already holds a cache .* pass append=True"):
        cache_format.create(tmp_path, hidden_size=H)
    assert cache_format.open(tmp_path).keys() == ["a"]


def test_append_with_other_settings_is_refused(tmp_path):
    with cache_format.create(tmp_path, hidden_size=H, metadata={"model": "a", "layer": 3}) as w:
        w.add("a", GOOD_IDS, GOOD)
    with pytest.raises(CacheFormatError, match=r"layer 3 != 4"):
        cache_format.create(tmp_path, hidden_size=H, metadata={"model": "a", "layer": 4}, append=True)
    with pytest.raises(CacheFormatError, match=r"dtype 'int8' != 'fp16'"):
        cache_format.create(tmp_path, hidden_size=H, dtype="fp16", metadata={"model": "a", "layer": 3},
                            append=True)


def test_missing_key_is_a_key_error_naming_the_key(tmp_path):
    cache_format.create(tmp_path, hidden_size=H).close()
    r = cache_format.open(tmp_path)
    with pytest.raises(KeyError) as err:
        r.get("nope")
    assert isinstance(err.value, CacheFormatError)
    assert str(err.value) == f"key 'nope' is not in the cache at {tmp_path}"


def test_add_after_close_is_refused(tmp_path):
    w = cache_format.create(tmp_path, hidden_size=H)
    w.close()
    with pytest.raises(CacheFormatError, match="writer is closed"):
        w.add("a", GOOD_IDS, GOOD)


def test_exception_inside_with_block_keeps_what_was_added(tmp_path):
    with pytest.raises(RuntimeError):
        with cache_format.create(tmp_path, hidden_size=H) as w:
            w.add("a", GOOD_IDS, GOOD)
            raise RuntimeError("caller failed")
    assert cache_format.open(tmp_path).keys() == ["a"]
