"""cache_format: a sharded, checksummed, memory-mapped store of per-token hidden states.

    w = cache_format.create(DIR, hidden_size=H, dtype="int8", codec="lz4", metadata={...})
    w.add(key, token_ids, hidden); w.close()
    r = cache_format.open(DIR); r.get(key)  # float32 [T, H], real tokens only

The byte-level layout is specified in docs/FORMAT.md. This package imports nothing of the
project's other packages.
"""
from __future__ import annotations

from .codec import CODEC_NAMES
from .errors import CacheFormatError, MissingKeyError
from .layout import DTYPE_NAMES, FORMAT_VERSION
from .locking import active_writer
from .quantize import calibrate_smoothing, dequantize_int8, quantize_int8
from .reader import CacheReader, RawRecord
from .writer import CacheWriter

__all__ = [
    "CODEC_NAMES", "CacheFormatError", "CacheReader", "CacheWriter", "DTYPE_NAMES",
    "FORMAT_VERSION", "MissingKeyError", "RawRecord", "active_writer", "calibrate_smoothing",
    "create", "dequantize_int8", "merge", "open", "quantize_int8",
]


def create(path, *, hidden_size: int, dtype: str = "int8", codec: str = "lz4",
           metadata: dict | None = None, append: bool = False, part: str | None = None,
           **options) -> CacheWriter:
    """Start (or with `append=True`, resume) writing a cache in folder `path`.

    Args:
        hidden_size: H, the width of every record's hidden states.
        dtype: "int8" (default; ~1.02 x H bytes per token), "fp16" or "fp32".
        codec: "lz4" (default), "zstd" or "none"; applied per record.
        metadata: JSON-serialisable dict describing what produced the states (model, layer,
            ...); stored in the manifest and compared on resume.
        append: resume a committed cache instead of refusing to touch it.
        part: name of this writer when several write in parallel; see `merge`.
        options: `shard_bytes`, `calibration_tokens` (see CacheWriter).
    Returns:
        a CacheWriter; use it as a context manager or call `close()`.
    """
    return CacheWriter(path, hidden_size=hidden_size, dtype=dtype, codec=codec,
                       metadata=metadata, append=append, part=part, **options)


def open(path) -> CacheReader:  # noqa: A001 - the contract's name
    """Open the committed cache in folder `path` for reading."""
    return CacheReader(path)


def merge(path) -> dict:
    """Merge the part manifests written by parallel writers into manifest.json; return it."""
    from .merging import merge_parts

    return merge_parts(path)
