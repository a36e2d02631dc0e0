"""Cache write/read throughput per dtype and codec, on real MiniLM layer-3 states of BBC News.

Throughput is GB/s of float32 delivered (read) or accepted (write) on one core: every loop
here is single-threaded. Each benchmark checks what it read. Run: pytest --benchmark-only bench
"""
from __future__ import annotations


import numpy as np
import pytest

import cache_format

DTYPES = cache_format.DTYPE_NAMES  # fp32, fp16, int8: widest first
CODECS = list(cache_format.CODEC_NAMES)
TOLERANCE = {"fp32": 0.0, "fp16": 1e-3, "int8": 2e-2}  # relative Frobenius error


def _write(path, states, dtype, codec):
    with cache_format.create(path, hidden_size=states[0][2].shape[1], dtype=dtype, codec=codec,
                             metadata={"model": "all-MiniLM-L6-v2", "layer": 3}) as w:
        for key, ids, hidden in states:
            w.add(key, ids, hidden)


def _disk_bytes(path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def _float_bytes(states) -> int:
    return sum(h.nbytes for _, _, h in states)


def _read_all(reader, keys):
    return [reader.get(k) for k in keys]


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_read_throughput(benchmark, tmp_path, bbc_states, dtype, codec):
    _write(tmp_path, bbc_states, dtype, codec)
    reader = cache_format.open(tmp_path)
    keys = reader.keys()
    got = benchmark(_read_all, reader, keys)
    ref = np.concatenate([h for _, _, h in bbc_states])
    err = np.linalg.norm(np.concatenate(got) - ref) / np.linalg.norm(ref)
    assert err <= TOLERANCE[dtype]
    tokens = sum(len(i) for _, i, _ in bbc_states)
    hidden = bbc_states[0][2].shape[1]
    benchmark.extra_info.update(
        read_gb_per_s=_float_bytes(bbc_states) / benchmark.stats["mean"] / 1e9,
        bytes_per_token=_disk_bytes(tmp_path) / tokens,
        bytes_per_token_over_hidden=_disk_bytes(tmp_path) / tokens / hidden,
        relative_error=float(err),
    )


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_write_throughput(benchmark, tmp_path_factory, bbc_states, dtype, codec):
    paths = iter(tmp_path_factory.mktemp(f"w-{dtype}-{codec}") / str(i) for i in range(10**6))
    benchmark.pedantic(lambda: _write(next(paths), bbc_states, dtype, codec), rounds=5)
    benchmark.extra_info["write_gb_per_s"] = _float_bytes(bbc_states) / benchmark.stats["mean"] / 1e9


def _per_token_numpy_baseline(stored):
    """The baseline the issue names: per-token absmax int8, dequantised row by row in numpy."""
    out = []
    for q, scales in stored:
        rows = np.empty(q.shape, np.float32)
        for t in range(q.shape[0]):
            rows[t] = q[t].astype(np.float32) * scales[t]
        out.append(rows)
    return out


def test_read_baseline_per_token_numpy(benchmark, bbc_states):
    stored = []
    for _, _, hidden in bbc_states:
        scales = np.abs(hidden).max(axis=1) / 127
        stored.append((np.rint(hidden / scales[:, None]).astype(np.int8), scales))
    benchmark(_per_token_numpy_baseline, stored)
    benchmark.extra_info["read_gb_per_s"] = _float_bytes(bbc_states) / benchmark.stats["mean"] / 1e9


def test_smoke_int8_lz4_read(benchmark, tmp_path):
    """Quick smoke run in `make test` (random states, no model): the benchmark path works."""
    rng = np.random.default_rng(0)
    states = [(f"k{i}", np.arange(50), rng.standard_normal((50, 64)).astype(np.float32))
              for i in range(20)]
    _write(tmp_path, states, "int8", "lz4")
    reader = cache_format.open(tmp_path)
    got = benchmark(_read_all, reader, reader.keys())
    assert len(got) == 20 and got[0].shape == (50, 64)
