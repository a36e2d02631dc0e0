"""Codecs, looked up by name: compress one record's payload, decompress it back.

Each record is one chunk: reading a record decompresses that record alone. A record whose
compressed form is not smaller is stored raw (the record's FLAG_COMPRESSED bit says which), so
a codec never costs space. Dense activations barely compress with lz4 (measured ratio about
1.00 on MiniLM layer-3 states), so most records of a real cache are stored raw under lz4; zstd
wins a few percent at a higher write cost. See docs/FORMAT.md for the figures.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import lz4.block
import zstandard

from .errors import CacheFormatError


@dataclass(frozen=True)
class Codec:
    name: str
    code: int  # the byte stored in each index header
    compress: Callable[[bytes], bytes]
    decompress: Callable[[memoryview, int], bytes]  # (stored bytes, raw length) -> raw bytes


_local = threading.local()  # zstd (de)compressor objects are not safe to share across threads


def _zstd_compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "zc"):
        _local.zc = zstandard.ZstdCompressor(level=3)
    return _local.zc


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "zd"):
        _local.zd = zstandard.ZstdDecompressor()
    return _local.zd


def _lz4_compress(raw: bytes) -> bytes:
    # store_size=False: the index already holds the raw length.
    return lz4.block.compress(raw, store_size=False)


def _lz4_decompress(stored: memoryview, raw_length: int) -> bytes:
    return lz4.block.decompress(stored, uncompressed_size=raw_length)


def _zstd_compress(raw: bytes) -> bytes:
    return _zstd_compressor().compress(raw)


def _zstd_decompress(stored: memoryview, raw_length: int) -> bytes:
    return _zstd_decompressor().decompress(stored, max_output_size=raw_length)


def _identity(raw: bytes) -> bytes:
    return raw


def _identity_decompress(stored: memoryview, raw_length: int) -> bytes:
    return bytes(stored)


CODECS = {
    "none": Codec("none", 0, _identity, _identity_decompress),
    "lz4": Codec("lz4", 1, _lz4_compress, _lz4_decompress),
    "zstd": Codec("zstd", 2, _zstd_compress, _zstd_decompress),
}
CODEC_BY_CODE = {c.code: c for c in CODECS.values()}
CODEC_NAMES = tuple(CODECS)  # in code order: none, lz4, zstd


def get_codec(name: str) -> Codec:
    """The codec called `name`; CacheFormatError naming the choices if there is none."""
    try:
        return CODECS[name]
    except (KeyError, TypeError):
        raise CacheFormatError(
            f"unknown codec {name!r}: expected one of {', '.join(sorted(CODECS))}"
        ) from None
