"""One shard: a data file of records and its fixed-width index, written once, then mmapped.

A shard is written under temporary names and becomes visible by rename when sealed: first the
data file, then the index. It becomes part of the cache when a manifest that names it is
written (manifest.py). Readers check every stored record against its crc32 before decoding.
"""
from __future__ import annotations

import mmap
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import layout as L
from .codec import Codec
from .errors import CacheFormatError
from .manifest import fsync_dir


class ShardWriter:
    """Appends encoded records to `<name>.shard.tmp`; `seal` writes the index and renames."""

    def __init__(self, root: Path, name: str, *, hidden_size: int, dtype: str, codec: Codec):
        self.root, self.name = root, name
        self.hidden_size, self.dtype, self.codec = hidden_size, dtype, codec
        self._data_tmp = root / (name + L.DATA_SUFFIX + L.TMP_SUFFIX)
        self._file = open(self._data_tmp, "wb")
        self._file.write(L.DATA_MAGIC + bytes(L.DATA_HEADER_SIZE - len(L.DATA_MAGIC)))
        self.size = L.DATA_HEADER_SIZE
        self.num_tokens = 0
        self._entries: list[tuple] = []
        self._keys = bytearray()

    @property
    def num_records(self) -> int:
        return len(self._entries)

    def append(self, key: bytes, payload: bytes, num_tokens: int, has_offsets: bool) -> None:
        """Compress one record's payload (raw if the codec does not help) and write it."""
        stored, flags = payload, 0
        if self.codec.code != 0:
            packed = self.codec.compress(payload)
            if len(packed) < len(payload):
                stored, flags = packed, L.FLAG_COMPRESSED
        if has_offsets:
            flags |= L.FLAG_HAS_OFFSETS
        pad = -self.size % L.RECORD_ALIGN
        self._file.write(bytes(pad) + stored)
        offset = self.size + pad
        self.size = offset + len(stored)
        self._entries.append(
            (offset, len(stored), len(payload), num_tokens, flags, 0,
             zlib.crc32(stored), len(self._keys), len(key), 0)
        )
        self._keys += key
        self.num_tokens += num_tokens

    def seal(self, smoothing: np.ndarray | None) -> dict:
        """Make the shard durable and visible; return its manifest entry."""
        self._file.flush()
        # An append interrupted mid-write may have left a partial record past `size`.
        self._file.truncate(self.size)
        os.fsync(self._file.fileno())
        self._file.close()
        body = self._index_body(smoothing)
        header = np.zeros((), dtype=L.INDEX_HEADER)
        header["magic"] = L.INDEX_MAGIC
        header["format_version"] = L.FORMAT_VERSION
        header["num_records"] = self.num_records
        header["hidden_size"] = self.hidden_size
        header["dtype"] = L.DTYPES[self.dtype][0]
        header["codec"] = self.codec.code
        header["smoothing_length"] = 0 if smoothing is None else len(smoothing)
        header["data_length"] = self.size
        header["body_crc32"] = zlib.crc32(body)
        index_tmp = self.root / (self.name + L.INDEX_SUFFIX + L.TMP_SUFFIX)
        with open(index_tmp, "wb") as f:
            f.write(header.tobytes() + body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._data_tmp, self.root / (self.name + L.DATA_SUFFIX))
        os.replace(index_tmp, self.root / (self.name + L.INDEX_SUFFIX))
        fsync_dir(self.root)
        return {"name": self.name, "num_records": self.num_records,
                "num_tokens": self.num_tokens, "data_bytes": self.size}

    def discard(self) -> None:
        """Drop an unsealed shard (nothing in it was committed)."""
        if not self._file.closed:
            self._file.close()
        self._data_tmp.unlink(missing_ok=True)

    def _index_body(self, smoothing) -> bytes:
        entries = np.array(self._entries, dtype=L.INDEX_ENTRY)
        parts = [] if smoothing is None else [smoothing.astype(L.SMOOTHING_DTYPE).tobytes()]
        return b"".join(parts + [entries.tobytes(), bytes(self._keys)])


@dataclass
class ShardReader:
    """A sealed shard, mmapped read-only, with its index columns as numpy arrays (a million
    records cost 40 bytes each, not seven Python ints) and its keys decoded."""

    name: str
    path: Path
    keys: list
    offsets: np.ndarray  # <u8 [n]
    stored_lengths: np.ndarray  # <u4 [n]
    raw_lengths: np.ndarray  # <u4 [n]
    num_tokens: np.ndarray  # <u4 [n]
    flags: np.ndarray  # <u2 [n]
    crcs: np.ndarray  # <u4 [n]
    smoothing: np.ndarray | None
    codec: Codec
    buffer: memoryview

    def stored(self, i: int) -> memoryview:
        """The verified stored bytes of record i (zero-copy view into the mmap)."""
        start = int(self.offsets[i])
        view = self.buffer[start:start + int(self.stored_lengths[i])]
        if zlib.crc32(view) != self.crcs[i]:
            raise CacheFormatError(
                f"{self.path}: record {i} (key {self.keys[i]!r}) fails its crc32 check: "
                "the shard is damaged; rebuild the cache or restore the file"
            )
        return view

    def payload(self, i: int):
        """The decoded payload of record i: a zero-copy view when it was stored raw."""
        view = self.stored(i)
        if not self.flags[i] & L.FLAG_COMPRESSED:
            return view
        try:
            raw = self.codec.decompress(view, int(self.raw_lengths[i]))
        except Exception as exc:  # the codec libraries raise their own error types
            raise CacheFormatError(
                f"{self.path}: record {i} (key {self.keys[i]!r}) does not decompress with "
                f"{self.codec.name}: {exc}"
            ) from None
        if len(raw) != self.raw_lengths[i]:
            raise CacheFormatError(
                f"{self.path}: record {i} (key {self.keys[i]!r}) decompressed to "
                f"{len(raw)} bytes, expected {self.raw_lengths[i]}"
            )
        return raw


def open_shard(root: Path, entry: dict, *, hidden_size: int, dtype: str, codec: Codec) -> ShardReader:
    """Open and check one shard named by a manifest entry."""
    name = entry["name"]
    index_path = root / (name + L.INDEX_SUFFIX)
    data_path = root / (name + L.DATA_SUFFIX)
    header, body = _read_index(index_path)
    _check_header(index_path, header, entry, hidden_size=hidden_size, dtype=dtype, codec=codec)
    smoothing_len = int(header["smoothing_length"])
    smoothing = None
    if smoothing_len:
        smoothing = np.frombuffer(body, L.SMOOTHING_DTYPE, smoothing_len).copy()
        smoothing.setflags(write=False)
    n = int(header["num_records"])
    table_start = smoothing_len * L.SMOOTHING_DTYPE.itemsize
    table_end = table_start + n * L.INDEX_ENTRY.itemsize
    if len(body) < table_end:
        raise CacheFormatError(f"{index_path}: index is truncated ({n} records declared)")
    entries = np.frombuffer(body, L.INDEX_ENTRY, n, table_start)
    buffer = _map_data(data_path, int(header["data_length"]))
    keys = _decode_keys(index_path, body[table_end:], entries)
    _check_extents(data_path, entries, len(buffer))
    return ShardReader(
        name=name, path=data_path, keys=keys,
        offsets=entries["offset"], stored_lengths=entries["stored_length"],
        raw_lengths=entries["raw_length"], num_tokens=entries["num_tokens"],
        flags=entries["flags"], crcs=entries["crc32"],
        smoothing=smoothing, codec=codec, buffer=buffer,
    )


def _read_index(path: Path):
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CacheFormatError(f"{path}: index file missing; the cache is incomplete") from None
    if len(raw) < L.INDEX_HEADER.itemsize:
        raise CacheFormatError(f"{path}: index is truncated ({len(raw)} bytes)")
    header = np.frombuffer(raw, L.INDEX_HEADER, 1)[0]
    if header["magic"] != L.INDEX_MAGIC:
        raise CacheFormatError(f"{path}: not a cache index (bad magic bytes)")
    body = raw[L.INDEX_HEADER.itemsize:]
    if zlib.crc32(body) != int(header["body_crc32"]):
        raise CacheFormatError(f"{path}: index fails its crc32 check: the file is damaged")
    return header, body


def _check_header(path, header, entry, *, hidden_size, dtype, codec) -> None:
    expect = {
        "format_version": L.FORMAT_VERSION, "num_records": entry["num_records"],
        "hidden_size": hidden_size, "dtype": L.DTYPES[dtype][0], "codec": codec.code,
        "data_length": entry["data_bytes"],
        "smoothing_length": hidden_size if dtype == "int8" else 0,
    }
    for field, want in expect.items():
        if int(header[field]) != int(want):
            raise CacheFormatError(
                f"{path}: index {field} is {int(header[field])}, the manifest says {want}"
            )


def _map_data(path: Path, length: int) -> memoryview:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CacheFormatError(f"{path}: shard file missing; the cache is incomplete") from None
    if size != length:
        raise CacheFormatError(
            f"{path}: shard is {size} bytes, its index says {length}: the file is truncated "
            "or was changed; rebuild the cache or restore the file"
        )
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if mm[: len(L.DATA_MAGIC)] != L.DATA_MAGIC:
        raise CacheFormatError(f"{path}: not a cache shard (bad magic bytes)")
    return memoryview(mm)


def _decode_keys(path, blob: bytes, entries) -> list:
    starts, lengths = entries["key_offset"].tolist(), entries["key_length"].tolist()
    try:
        return [blob[s:s + n].decode("utf-8") for s, n in zip(starts, lengths)]
    except UnicodeDecodeError:
        raise CacheFormatError(f"{path}: key blob is not UTF-8: the index is damaged") from None


def _check_extents(path, entries, size: int) -> None:
    ends = entries["offset"].astype(np.uint64) + entries["stored_length"]
    if len(ends) and (int(ends.max()) > size or int(entries["offset"].min()) < L.DATA_HEADER_SIZE):
        raise CacheFormatError(f"{path}: index points outside the shard: the index is damaged")
