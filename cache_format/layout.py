"""The on-disk layout: every fixed-width structure of the format, declared once.

All integers are little-endian, spelled out (`'<u4'`) so that the files read the same on any
machine; docs/FORMAT.md describes the same bytes in prose.
"""
from __future__ import annotations

import numpy as np

FORMAT_VERSION = 2
# Version 1 had no manifest checksum and no cache identity in shards and indexes; it is refused
# with a one-line way forward (rebuild) rather than opened half-checked.
LEGACY_VERSIONS = (1,)
MANIFEST_NAME = "manifest.json"
PART_MANIFEST_PREFIX = "manifest."  # manifest.<part>.json, one per parallel writer
DATA_SUFFIX = ".shard"
INDEX_SUFFIX = ".index"
TMP_SUFFIX = ".tmp"

DATA_MAGIC = b"ERCSHD02"
INDEX_MAGIC = b"ERCIDX02"
RECORD_ALIGN = 8
WRITER_ID_BYTES = 16  # random id drawn when a cache (or part) is created: manifest `cache_id`
IDENTITY_BYTES = 32  # sha256 of the manifest's identity fields (manifest.identity_digest)
NAME_BYTES = 96  # the shard's own name, UTF-8, zero-padded: a file copied under another name fails

# Who a shard or index belongs to. The same 144 bytes close the index header and open the
# shard, so a file copied from another cache, another part or another shard is refused on open.
_OWNER_FIELDS = [
    ("writer_id", "u1", (WRITER_ID_BYTES,)),
    ("identity", "u1", (IDENTITY_BYTES,)),
    ("name", "u1", (NAME_BYTES,)),
]

DATA_HEADER = np.dtype(
    [
        ("magic", "S8"),
        ("format_version", "<u4"),
        ("reserved", "<u4"),  # zero
    ] + _OWNER_FIELDS
)
assert DATA_HEADER.itemsize == 160
DATA_HEADER_SIZE = DATA_HEADER.itemsize  # records start 8-byte aligned after it

# dtype name -> (code, numpy dtype of the stored hidden values); bytes per value is the
# numpy dtype's itemsize.
DTYPES = {
    "fp32": (0, np.dtype("<f4")),
    "fp16": (1, np.dtype("<f2")),
    "int8": (2, np.dtype("i1")),
}
DTYPE_NAMES = tuple(DTYPES)  # in code order: fp32, fp16, int8
DTYPE_BY_CODE = {code: name for name, (code, _) in DTYPES.items()}

TOKEN_ID_DTYPE = np.dtype("<u4")  # RoBERTa's and DeBERTa-v3's vocabularies exceed 16 bits
SCALE_DTYPE = np.dtype("<f4")  # int8 only: one scale per token
SMOOTHING_DTYPE = np.dtype("<f4")  # int8 only: one divisor per channel, per shard
OFFSET_DTYPE = np.dtype("<i4")  # optional [T, 2] character spans

# Record flags (u2).
FLAG_COMPRESSED = 1  # stored bytes are the codec's output; else stored raw (codec did not help)
FLAG_HAS_OFFSETS = 2
KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_HAS_OFFSETS  # every other bit MUST be zero

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
        ("body_crc32", "<u4"),  # crc32 of every byte from INDEX_CRC_START to the end of file
    ] + _OWNER_FIELDS
)
assert INDEX_HEADER.itemsize == 184
INDEX_CRC_START = 40  # body_crc32 covers the owner fields, the smoothing, entries and keys

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


def encode_name(name: str) -> bytes:
    """A shard name as stored in its header: UTF-8, zero-padded to NAME_BYTES."""
    raw = name.encode("utf-8")
    if len(raw) > NAME_BYTES:
        raise ValueError(f"shard name {name!r} is longer than {NAME_BYTES} bytes")
    return raw + bytes(NAME_BYTES - len(raw))


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
