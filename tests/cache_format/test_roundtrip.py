"""Round trips: what goes in comes back, within each dtype's error bound, in insertion order."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import cache_format
from cache_format.quantize import QMAX

DTYPES = cache_format.DTYPE_NAMES  # fp32, fp16, int8: widest first
CODECS = cache_format.CODEC_NAMES  # none, lz4, zstd


def _records(rng, n, h, max_t=40, scale=3.0):
    out = []
    for i in range(n):
        t = int(rng.integers(1, max_t + 1))
        hidden = (rng.standard_normal((t, h)) * scale).astype(np.float32)
        hidden[:, 0] *= 20  # an outlier channel, as BERT-family states have
        out.append((f"doc-{i}", rng.integers(0, 30000, t), hidden))
    return out


def _assert_within_bound(dtype, x, y, raw):
    if dtype == "fp32":
        np.testing.assert_array_equal(x, y)
    elif dtype == "fp16":
        # fp16 keeps 11 significant bits; values below its normal range keep an absolute 2**-24.
        np.testing.assert_array_less(np.abs(x - y), np.abs(x) * 2.0**-11 + 2.0**-24 + 1e-12)
    else:
        np.testing.assert_array_less(np.abs(x.astype(np.float64) - y), _int8_bound(raw))


# float32's unit roundoff: each float32 operation returns op(a, b) * (1 + d) with |d| <= U.
U = 2.0**-24


def _int8_bound(raw) -> np.ndarray:
    """The largest int8 error the writer's float32 arithmetic allows, per value.

    Derivation, with s = smoothing_c, k = scale_t (both as stored) and step = k * s exactly:
    the writer computes z = fl(x / s) = (x / s)(1 + d0), k = fl(absmax_t(z) / 127), then
    v = fl(z / k) = (z / k)(1 + d1) and q = rint(v), so |q - v| <= 1/2 (|v| <= 127 (1 + U)^2
    < 127.5, so the clip never moves q). The reader computes y = fl(fl(q * k) * s)
    = q k s (1 + d2)(1 + d3). Hence
        y - x = [x (1 + d0)(1 + d1) + k s (q - v)](1 + d2)(1 + d3) - x
        |y - x| <= 1/2 step (1 + U)^2 + |x| ((1 + U)^4 - 1).
    |x| <= 127 step (1 + U)^2 (z is at most absmax_t(z) = 127 k / (1 + d)), so the second
    term is at most 127 step (4U + O(U^2)): four roundings of values up to 127 steps, the
    part a bound of "half a step" alone misses (about 0.5 step x 6.1e-5). In total
        |y - x| <= 1/2 step (1 + 2U + 1016U + O(U^2)) <= 1/2 step (1 + 1024 U).
    Computed in float64, where scale * smoothing and x - y are exact, so the test adds no
    rounding of its own.
    """
    step = raw.scales.astype(np.float64)[:, None] * raw.smoothing.astype(np.float64)[None, :]
    return 0.5 * step * (1 + 1024 * U)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype_and_codec(tmp_path, dtype, codec):
    rng = np.random.default_rng(0)
    records = _records(rng, 25, 48)
    with cache_format.create(tmp_path / "c", hidden_size=48, dtype=dtype, codec=codec,
                             metadata={"model": "m", "layer": 2}, calibration_tokens=64) as w:
        for key, ids, hidden in records:
            w.add(key, ids, hidden)
    r = cache_format.open(tmp_path / "c")
    assert r.keys() == [k for k, _, _ in records]
    assert len(r) == 25
    assert r.manifest["num_tokens"] == sum(len(i) for _, i, _ in records)
    for key, ids, hidden in records:
        got = r.get(key)
        assert got.dtype == np.float32 and got.shape == hidden.shape
        np.testing.assert_array_equal(r.token_ids(key), ids)
        assert r.num_tokens(key) == len(ids)
        _assert_within_bound(dtype, hidden, got, r.read_raw(key))


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 70),
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=8),
    dtype=st.sampled_from(DTYPES),
    codec=st.sampled_from(CODECS),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_round_trip_property(tmp_path_factory, h, lengths, dtype, codec, scale, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("c")
    data = [(f"k{i}", rng.integers(0, 2**32, t, dtype=np.uint64),
             (rng.standard_normal((t, h)) * scale).astype(np.float32),
             rng.integers(0, 1000, (t, 2))) for i, t in enumerate(lengths)]
    with cache_format.create(path, hidden_size=h, dtype=dtype, codec=codec,
                             calibration_tokens=16) as w:
        for key, ids, hidden, spans in data:
            w.add(key, ids, hidden, offsets=spans)
    r = cache_format.open(path)
    assert r.keys() == [d[0] for d in data]
    for key, ids, hidden, spans in data:
        np.testing.assert_array_equal(r.token_ids(key), ids)
        np.testing.assert_array_equal(r.offsets(key), spans)
        _assert_within_bound(dtype, hidden, r.get(key), r.read_raw(key))


def test_int8_decodes_exactly_to_dequantised_quantisation(tmp_path):
    rng = np.random.default_rng(1)
    hidden = rng.standard_normal((50, 16)).astype(np.float32)
    with cache_format.create(tmp_path, hidden_size=16, calibration_tokens=50) as w:
        w.add("a", np.arange(50), hidden)
    raw = cache_format.open(tmp_path).read_raw("a")
    np.testing.assert_array_equal(raw.smoothing, cache_format.calibrate_smoothing(hidden))
    q, scales = cache_format.quantize_int8(hidden, raw.smoothing)
    np.testing.assert_array_equal(raw.hidden, q)
    assert np.abs(raw.hidden).max() == QMAX  # every token uses the full range


def test_fp32_without_codec_is_a_read_only_zero_copy_view(tmp_path):
    with cache_format.create(tmp_path, hidden_size=4, dtype="fp32", codec="none") as w:
        w.add("a", [1, 2], np.ones((2, 4), np.float32))
    got = cache_format.open(tmp_path).get("a")
    assert not got.flags.writeable and not got.flags.owndata


def test_empty_cache_is_valid(tmp_path):
    cache_format.create(tmp_path, hidden_size=8).close()
    r = cache_format.open(tmp_path)
    assert len(r) == 0 and r.keys() == [] and r.manifest["num_examples"] == 0


def test_manifest_carries_format_fields_and_metadata(tmp_path):
    meta = {"model": "all-MiniLM-L6-v2", "layer": 3, "max_length": 256}
    with cache_format.create(tmp_path, hidden_size=8, dtype="fp16", codec="zstd",
                             metadata=meta) as w:
        w.add("a", [5], np.zeros((1, 8), np.float32))
    m = cache_format.open(tmp_path).manifest
    for key in ("model", "layer", "hidden_size", "dtype", "codec", "num_examples",
                "num_tokens", "format_version"):
        assert key in m
    assert (m["model"], m["layer"], m["dtype"], m["codec"]) == ("all-MiniLM-L6-v2", 3, "fp16", "zstd")
    assert m["metadata"] == meta and m["scale_scheme"] == "none"


def test_small_shard_limit_rolls_shards_and_keeps_order(tmp_path):
    rng = np.random.default_rng(2)
    records = _records(rng, 60, 64, max_t=80)
    with cache_format.create(tmp_path, hidden_size=64, dtype="fp32", codec="none",
                             shard_bytes=2**16) as w:
        for key, ids, hidden in records:
            w.add(key, ids, hidden)
    r = cache_format.open(tmp_path)
    assert len(r.manifest["shards"]) > 3
    assert r.keys() == [k for k, _, _ in records]
    for key, _, hidden in records[::7]:
        np.testing.assert_array_equal(r.get(key), hidden)
    assert r.verify() == 60


def test_int8_smoothing_is_shared_by_every_shard_of_a_writer(tmp_path):
    rng = np.random.default_rng(3)
    with cache_format.create(tmp_path, hidden_size=64, shard_bytes=2**16,
                             calibration_tokens=32) as w:
        for key, ids, hidden in _records(rng, 60, 64, max_t=80):
            w.add(key, ids, hidden)
    r = cache_format.open(tmp_path)
    vectors = {r.read_raw(k).smoothing.tobytes() for k in r.keys()}
    assert len(r.manifest["shards"]) > 1 and len(vectors) == 1
