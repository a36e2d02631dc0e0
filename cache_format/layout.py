"""The on-disk layout: every fixed-width structure of the format, declared once.

All integers are little-endian, spelled out (`'<u4'`) so that the files read the same on any
machine; docs/FORMAT.md describes the same bytes in prose.
"""
from __future__ import annotations

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
PART_MANIFEST_PREFIX = "manifest."  # manifest.<part>.json, one per parallel writer
DATA_SUFFIX = ".shard"
INDEX_SUFFIX = ".index"
TMP_SUFFIX = ".tmp"

DATA_MAGIC = b"ERCSHD01"
INDEX_MAGIC = b"ERCIDX01"
DATA_HEADER_SIZE = 16  # magic + 8 reserved zero bytes; records start 8-byte aligned after it
RECORD_ALIGN = 8

# dtype name -> (code, numpy dtype of the stored hidden values, bytes per value)
DTYPES = {
    "fp32": (0, np.dtype("<f4")),
    "fp16": (1, np.dtype("<f2")),
    "int8": (2, np.dtype("i1")),
}
DTYPE_BY_CODE = {code: name for name, (code, _) in DTYPES.items()}

TOKEN_ID_DTYPE = np.dtype("<u4")  # RoBERTa's and DeBERTa-v3's vocabularies exceed 16 bits
SCALE_DTYPE = np.dtype("<f4")  # int8 only: one scale per token
SMOOTHING_DTYPE = np.dtype("<f4")  # int8 only: one divisor per channel, per shard
OFFSET_DTYPE = np.dtype("<i4")  # optional [T, 2] character spans

# Record flags (u2).
FLAG_COMPRESSED = 1  # stored bytes are the codec's output; else stored raw (codec did not help)
FLAG_HAS_OFFSETS = 2

INDEX_HEADER = np.dtype(
    [
        ("magic", "S8"),
        ("format_version", "<u4"),
        ("num_records", "<u4"),
        ("hidden_size", "<u4"),
        ("dtype", "u1"),
        ("codec", "u1"),
        ("reserved", "<u2"),
        ("smoothing_length", "<u4"),  # hidden_size for int8, else 0
        ("data_length", "<u8"),  # exact size of the .shard file
        ("body_crc32", "<u4"),  # crc32 of every byte after this header
    ]
)
assert INDEX_HEADER.itemsize == 40

INDEX_ENTRY = np.dtype(
    [
        ("offset", "<u8"),  # byte offset of the stored record in the .shard file
        ("stored_length", "<u4"),  # bytes on disk (compressed or raw)
        ("raw_length", "<u4"),  # bytes of the decoded payload
        ("num_tokens", "<u4"),
        ("flags", "<u2"),
        ("reserved", "<u2"),
        ("crc32", "<u4"),  # crc32 of the stored bytes
        ("key_offset", "<u4"),  # into the key blob at the end of the index
        ("key_length", "<u4"),
        ("reserved2", "<u4"),
    ]
)
assert INDEX_ENTRY.itemsize == 40

# u4 lengths bound one record; keep well under so a mistake fails here, not as a wrap-around.
MAX_RECORD_BYTES = 2**31
MAX_KEY_BYTES = 2**16 - 1
MAX_SHARD_BYTES = 2**40


def shard_name(part: str, seq: int) -> str:
    """Base name of a shard: its writer's part name and a sequence number."""
    return f"{part}-{seq:05d}"


def payload_layout(num_tokens: int, hidden_size: int, dtype: str, has_offsets: bool) -> list:
    """(name, numpy dtype, shape) of each array in a decoded record payload, in order."""
    t, h = num_tokens, hidden_size
    arrays = [("token_ids", TOKEN_ID_DTYPE, (t,))]
    if dtype == "int8":
        arrays.append(("scales", SCALE_DTYPE, (t,)))
    arrays.append(("hidden", DTYPES[dtype][1], (t, h)))
    if has_offsets:
        arrays.append(("offsets", OFFSET_DTYPE, (t, 2)))
    return arrays


def payload_size(num_tokens: int, hidden_size: int, dtype: str, has_offsets: bool) -> int:
    """Bytes of a decoded record payload."""
    return sum(
        dt.itemsize * int(np.prod(shape))
        for _, dt, shape in payload_layout(num_tokens, hidden_size, dtype, has_offsets)
    )
