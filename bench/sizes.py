"""Bytes on disk per real token for every dtype and codec, on the same real hidden states."""
from __future__ import annotations

import tempfile
from pathlib import Path

import cache_format

DTYPES = cache_format.DTYPE_NAMES  # fp32, fp16, int8: widest first
CODECS = cache_format.CODEC_NAMES  # none, lz4, zstd


def cache_bytes(path) -> int:
    """Bytes of every file of the cache folder (shards, indexes, manifest; not onnx/)."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())


def bytes_per_token(states: list, hidden_size: int) -> dict:
    """{dtype: {codec: bytes per real token}} for [(key, token_ids, hidden [T, H])]."""
    tokens = sum(len(ids) for _, ids, _ in states)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="erc-sizes-") as tmp:
        for dtype in DTYPES:
            out[dtype] = {}
            for codec in CODECS:
                path = Path(tmp) / f"{dtype}-{codec}"
                with cache_format.create(path, hidden_size=hidden_size, dtype=dtype,
                                         codec=codec) as w:
                    for key, ids, hidden in states:
                        w.add(key, ids, hidden)
                out[dtype][codec] = cache_bytes(path) / tokens
    return out
