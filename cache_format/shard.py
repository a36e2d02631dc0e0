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
from .errors import CacheFormatError, read_or_raise
from .manifest import fsync_dir


class ShardWriter:
    """Appends encoded records to `<name>.shard.tmp`; `seal` writes the index and renames."""

    def __init__(self, root: Path, name: str, *, hidden_size: int, dtype: str, codec: Codec,
                 writer_id: str, identity: bytes):
        self.root, self.name = root, name
        self.hidden_size, self.dtype, self.codec = hidden_size, dtype, codec
        self.writer_id = writer_id
        self._owner = _owner_bytes(writer_id, identity, name)
        self._data_tmp = root / (name + L.DATA_SUFFIX + L.TMP_SUFFIX)
        self._file = open(self._data_tmp, "wb")
        self._file.write(L.DATA_MAGIC + L.FORMAT_VERSION.to_bytes(4, "little") + bytes(4)
                         + self._owner)
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
        header_bytes = header.tobytes()[:L.INDEX_CRC_START]
        covered = self._owner + body
        header_bytes = header_bytes[:-4] + zlib.crc32(covered).to_bytes(4, "little")
        index_tmp = self.root / (self.name + L.INDEX_SUFFIX + L.TMP_SUFFIX)
        try:
            with open(index_tmp, "wb") as f:
                f.write(header_bytes + covered)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # a full disk: leave no half-written index behind
            index_tmp.unlink(missing_ok=True)
            raise
        os.replace(self._data_tmp, self.root / (self.name + L.DATA_SUFFIX))
        os.replace(index_tmp, self.root / (self.name + L.INDEX_SUFFIX))
        fsync_dir(self.root)
        return {"name": self.name, "num_records": self.num_records,
                "num_tokens": self.num_tokens, "data_bytes": self.size,
                "writer_id": self.writer_id}

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
        """The verified stored bytes of record i (zero-copy view into the mmap); the zero
        padding after it is checked too, so every byte of a shard is checked by some read."""
        start = int(self.offsets[i])  # numpy scalars: slicing wants Python ints
        end = start + int(self.stored_lengths[i])
        view = self.buffer[start:end]
        if zlib.crc32(view) != self.crcs[i]:
            raise CacheFormatError(
                f"{self.path}: record {i} (key {self.keys[i]!r}) fails its crc32 check: "
                "the shard is damaged; rebuild the cache or restore the file"
            )
        if any(self.buffer[end:end + (-end % L.RECORD_ALIGN)]):
            raise CacheFormatError(
                f"{self.path}: padding after record {i} (key {self.keys[i]!r}) is not zero: "
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


def open_shard(root: Path, entry: dict, *, hidden_size: int, dtype: str, codec: Codec,
               identity: bytes) -> ShardReader:
    """Open and check one shard named by a manifest entry.

    Both files must carry the owner block of this cache (the entry's `writer_id`, the
    manifest's identity digest, the entry's name), so a file copied from another cache, part
    or shard is refused here; every fixed field, reserved byte and the record layout are checked
    before anything is read.
    """
    name = entry["name"]
    owner = _owner_bytes(entry["writer_id"], identity, name)
    index_path = root / (name + L.INDEX_SUFFIX)
    data_path = root / (name + L.DATA_SUFFIX)
    header, body = _read_index(index_path)
    _check_header(index_path, header, entry, hidden_size=hidden_size, dtype=dtype, codec=codec)
    _check_owner(index_path, header, owner)
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
    _check_entries(index_path, entries, int(header["data_length"]), len(body) - table_end,
                   hidden_size=hidden_size, dtype=dtype)
    buffer = _map_data(data_path, int(header["data_length"]), owner)
    keys = _decode_keys(index_path, body[table_end:], entries)
    return ShardReader(
        name=name, path=data_path, keys=keys,
        offsets=entries["offset"], stored_lengths=entries["stored_length"],
        raw_lengths=entries["raw_length"], num_tokens=entries["num_tokens"],
        flags=entries["flags"], crcs=entries["crc32"],
        smoothing=smoothing, codec=codec, buffer=buffer,
    )


def _owner_bytes(writer_id: str, identity: bytes, name: str) -> bytes:
    """The 144-byte owner block: writer id, identity digest, zero-padded name."""
    return bytes.fromhex(writer_id) + identity + L.encode_name(name)


def _read_index(path: Path):
    raw = read_or_raise(path, "the index", "index file missing; the cache is incomplete")
    if len(raw) < L.INDEX_HEADER.itemsize:
        raise CacheFormatError(f"{path}: index is truncated ({len(raw)} bytes)")
    header = np.frombuffer(raw, L.INDEX_HEADER, 1)[0]
    if header["magic"] != L.INDEX_MAGIC:
        raise CacheFormatError(f"{path}: not a version-{L.FORMAT_VERSION} cache index (bad "
                               "magic bytes)")
    if zlib.crc32(raw[L.INDEX_CRC_START:]) != int(header["body_crc32"]):
        raise CacheFormatError(f"{path}: index fails its crc32 check: the file is damaged")
    return header, raw[L.INDEX_HEADER.itemsize:]


def _check_header(path, header, entry, *, hidden_size, dtype, codec) -> None:
    expect = {
        "format_version": L.FORMAT_VERSION, "num_records": entry["num_records"],
        "hidden_size": hidden_size, "dtype": L.DTYPES[dtype][0], "codec": codec.code,
        "data_length": entry["data_bytes"], "reserved": 0,
        "smoothing_length": hidden_size if dtype == "int8" else 0,
    }
    for field, want in expect.items():
        if int(header[field]) != int(want):
            raise CacheFormatError(
                f"{path}: index {field} is {int(header[field])}, the manifest says {want}"
            )


def _check_owner(path: Path, header, owner: bytes) -> None:
    """The owner block of `header` (index or shard) must be this cache's, for this name."""
    got = b"".join(header[f].tobytes() for f in ("writer_id", "identity", "name"))
    if got == owner:
        return
    for field, start, size in (("name", 48, L.NAME_BYTES), ("writer_id", 0, 16),
                               ("identity", 16, 32)):
        if got[start:start + size] != owner[start:start + size]:
            what = ("is another shard's file" if field == "name" else
                    "belongs to another cache or part" if field == "writer_id" else
                    "was written with other settings or metadata than this manifest says")
            raise CacheFormatError(
                f"{path}: {what} ({field} differs): copied or damaged; rebuild the cache or "
                "restore the file")


def _check_entries(path, entries, data_length: int, blob_length: int, *, hidden_size,
                   dtype) -> None:
    """Reserved bits zero, lengths consistent, records packed in order with 8-byte alignment,
    keys packed in order: a well-formed index describes every byte of its shard."""
    if not len(entries):
        if data_length != L.DATA_HEADER_SIZE or blob_length:
            raise CacheFormatError(f"{path}: an empty index must describe an empty shard")
        return
    offsets = entries["offset"].astype(np.int64)
    stored = entries["stored_length"].astype(np.int64)
    ends = offsets + stored
    aligned = ends[:-1] + (-ends[:-1] % L.RECORD_ALIGN)
    t = entries["num_tokens"].astype(np.int64)
    flags = entries["flags"]
    per_token = L.payload_size(1, hidden_size, dtype, False)
    raw = t * per_token + np.where(flags & L.FLAG_HAS_OFFSETS, 8 * t, 0)
    key_ends = entries["key_offset"].astype(np.int64) + entries["key_length"]
    problems = {
        "a reserved field or flag bit is not zero":
            entries["reserved"].any() or entries["reserved2"].any()
            or (flags & ~np.uint16(L.KNOWN_FLAGS)).any(),
        "records are not packed in order from the header":
            offsets[0] != L.DATA_HEADER_SIZE or (offsets[1:] != aligned).any()
            or ends[-1] != data_length,
        "a record's lengths do not match its token count":
            (t < 1).any() or (entries["raw_length"] != raw).any()
            or ((flags & L.FLAG_COMPRESSED == 0) & (stored != raw)).any(),
        "keys are not packed in order":
            entries["key_offset"][0] != 0 or (entries["key_offset"][1:] != key_ends[:-1]).any()
            or key_ends[-1] != blob_length or (entries["key_length"] < 1).any(),
    }
    for problem, bad in problems.items():
        if bad:
            raise CacheFormatError(f"{path}: {problem}: the index is damaged")


def _map_data(path: Path, length: int, owner: bytes) -> memoryview:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CacheFormatError(f"{path}: shard file missing; the cache is incomplete") from None
    if size != length:
        raise CacheFormatError(
            f"{path}: shard is {size} bytes, its index says {length}: the file is truncated "
            "or was changed; rebuild the cache or restore the file"
        )
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot read the shard ({exc.strerror})") from None
    header = np.frombuffer(mm, L.DATA_HEADER, 1)[0]
    if header["magic"] != L.DATA_MAGIC or int(header["format_version"]) != L.FORMAT_VERSION:
        raise CacheFormatError(f"{path}: not a version-{L.FORMAT_VERSION} cache shard (bad "
                               "magic bytes or version)")
    if int(header["reserved"]):
        raise CacheFormatError(f"{path}: reserved header bytes are not zero: damaged")
    _check_owner(path, header, owner)
    return memoryview(mm)


def _decode_keys(path, blob: bytes, entries) -> list:
    starts, lengths = entries["key_offset"].tolist(), entries["key_length"].tolist()
    try:
        return [blob[s:s + n].decode("utf-8") for s, n in zip(starts, lengths)]
    except UnicodeDecodeError:
        raise CacheFormatError(f"{path}: key blob is not UTF-8: the index is damaged") from None
