"""CacheReader: O(1) reads by key from mmapped shards, verified, decoded, dequantised.

Readers never write and open every file read-only, so any number of processes (DataLoader
workers, DDP ranks) can read one cache at once. A reader pickles as its path and reopens on
the other side, so it can be handed to spawned workers.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import layout as L
from .codec import get_codec
from .errors import CacheFormatError, MissingKeyError
from .manifest import flat_view, identity_digest, part_manifest_paths, read_manifest
from .quantize import dequantize_int8
from .shard import ShardReader, open_shard


@dataclass(frozen=True)
class RawRecord:
    """A record as stored, before dequantisation (lets a loader dequantise on its device)."""

    token_ids: np.ndarray  # uint32 (T,)
    hidden: np.ndarray  # stored dtype (T, H): float32, float16 or int8
    scales: np.ndarray | None  # int8 only: float32 (T,)
    smoothing: np.ndarray | None  # int8 only: float32 (H,), shared by the shard
    offsets: np.ndarray | None  # int32 (T, 2) when the writer stored them


class CacheReader:
    """Read-only view of a committed cache. Arrays it returns are read-only; copy to write."""

    def __init__(self, path):
        self.root = Path(path)
        if not self.root.is_dir():
            raise CacheFormatError(f"{self.root}: no such cache folder")
        manifest_file = self.root / L.MANIFEST_NAME
        if not manifest_file.exists():
            raise CacheFormatError(_missing_manifest_message(self.root))
        stored = read_manifest(manifest_file)  # checksum, fields and types checked
        if "part" in stored:
            raise CacheFormatError(f"{manifest_file}: is a part manifest; merge the parts")
        # What readers see: the stored manifest plus the metadata keys at the top level.
        self.manifest = flat_view(stored)
        self.dtype = stored["dtype"]
        self.hidden_size = stored["hidden_size"]
        codec = get_codec(stored["codec"])
        identity = identity_digest(stored)
        self._shards: list[ShardReader] = [
            open_shard(self.root, entry, hidden_size=self.hidden_size, dtype=self.dtype,
                       codec=codec, identity=identity)
            for entry in stored["shards"]
        ]
        # key -> record number in cache order; shard s holds numbers _starts[s] onwards.
        self._index, self._starts = _build_key_index(self.root, self._shards)
        self._lengths: np.ndarray | None = None  # every record's token count, on first use
        if len(self._index) != self.manifest.get("num_examples", len(self._index)):
            raise CacheFormatError(
                f"{manifest_file}: num_examples is {self.manifest['num_examples']} but the "
                f"shards hold {len(self._index)} records")

    # -- containers ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key) -> bool:
        try:
            return key in self._index
        except TypeError:  # unhashable: not a key
            return False

    def __iter__(self):
        return iter(self._index)

    def keys(self) -> list[str]:
        """Example keys in the order they were added (parts in part-name order)."""
        return list(self._index)

    # -- records ------------------------------------------------------------------------------

    def get(self, key: str) -> np.ndarray:
        """Hidden states of the real tokens of `key`: float32 [T, H], dequantised."""
        raw = self.read_raw(key)
        if raw.scales is not None:
            return dequantize_int8(raw.hidden, raw.scales, raw.smoothing)
        if raw.hidden.dtype == np.float32:
            return raw.hidden  # zero-copy view of the mmap when stored raw
        return raw.hidden.astype(np.float32)

    def token_ids(self, key: str) -> np.ndarray:
        """Token ids of `key`: uint32 [T]."""
        return self.read_raw(key).token_ids

    def offsets(self, key: str) -> np.ndarray | None:
        """Character spans of `key`'s tokens, int32 [T, 2], or None if none were stored."""
        return self.read_raw(key).offsets

    def num_tokens(self, key: str) -> int:
        """Number of real tokens of `key`, from the index alone (nothing is decoded)."""
        shard, i = self._locate(key)
        return int(shard.num_tokens[i])

    def lengths(self) -> dict[str, int]:
        """Every key's token count, from the indexes alone."""
        return dict(zip(self._index, self.num_tokens_array().tolist()))

    def num_tokens_array(self, keys=None) -> np.ndarray:
        """Token counts from the indexes alone, as one array: uint32 [n] for `keys` (a list
        of keys, or None for every key in cache order). No per-key Python objects are made
        for None, so planning batches over millions of records stays cheap."""
        if self._lengths is None:
            columns = [s.num_tokens for s in self._shards]
            self._lengths = (np.concatenate(columns) if columns else np.zeros(0, "<u4"))
            self._lengths.setflags(write=False)
        if keys is None:
            return self._lengths
        numbers = np.fromiter((self._number(k) for k in keys), dtype=np.int64)
        return self._lengths[numbers]

    def read_raw(self, key: str) -> RawRecord:
        """The stored arrays of `key`, verified against their checksum, not dequantised."""
        shard, i = self._locate(key)
        payload = shard.payload(i)
        t = int(shard.num_tokens[i])
        has_offsets = bool(shard.flags[i] & L.FLAG_HAS_OFFSETS)
        expected = L.payload_size(t, self.hidden_size, self.dtype, has_offsets)
        if len(payload) != expected:
            raise CacheFormatError(
                f"{shard.path}: record {i} (key {key!r}) holds {len(payload)} bytes, "
                f"expected {expected} for {t} tokens: the index is damaged")
        arrays, offset = {}, 0
        for name, dtype, shape in L.payload_layout(t, self.hidden_size, self.dtype, has_offsets):
            count = int(np.prod(shape))
            arrays[name] = np.frombuffer(payload, dtype, count, offset).reshape(shape)
            offset += count * dtype.itemsize
        return RawRecord(arrays["token_ids"], arrays["hidden"], arrays.get("scales"),
                         shard.smoothing, arrays.get("offsets"))

    def verify(self) -> int:
        """Check every record's checksum and size; return the number of records checked."""
        for key in self._index:
            self.read_raw(key)
        return len(self._index)

    def _number(self, key) -> int:
        try:
            return self._index[key]
        except (KeyError, TypeError):
            raise MissingKeyError(f"key {key!r} is not in the cache at {self.root}") from None

    def _locate(self, key) -> tuple[ShardReader, int]:
        number = self._number(key)
        s = bisect_right(self._starts, number) - 1
        return self._shards[s], number - self._starts[s]

    # -- pickling: reopen by path in the receiving process ------------------------------------

    def __getstate__(self):
        return {"root": str(self.root)}

    def __setstate__(self, state):
        self.__init__(state["root"])

    def __repr__(self) -> str:
        return (f"CacheReader({str(self.root)!r}, {len(self)} records, dtype={self.dtype}, "
                f"codec={self.manifest['codec']})")


def _build_key_index(root: Path, shards: list[ShardReader]):
    """{key: record number in cache order} and each shard's first number.

    One dict of the keys and ints (about 100 bytes a record), built with `dict.update` over
    zip, not a Python loop: a million records open in well under a second.
    """
    index: dict[str, int] = {}
    starts = []
    for shard in shards:
        first = len(index)
        starts.append(first)
        index.update(zip(shard.keys, range(first, first + len(shard.keys))))
        if len(index) != first + len(shard.keys):
            _raise_duplicate(root, shards)
    return index, starts


def _raise_duplicate(root: Path, shards: list[ShardReader]):
    """The slow path, only on failure: name the first repeated key and its two shards."""
    where: dict[str, str] = {}
    for shard in shards:
        for key in shard.keys:
            if key in where:
                raise CacheFormatError(
                    f"{root}: key {key!r} appears in shard {where[key]} and in shard "
                    f"{shard.name}; parallel writers must write disjoint keys")
            where[key] = shard.name


def _missing_manifest_message(root: Path) -> str:
    parts = part_manifest_paths(root)
    if parts:
        return (f"{root}: holds {len(parts)} part manifest(s) but no manifest.json: merge them "
                f"first (python -m cache_format merge {root})")
    return f"{root}: no manifest.json: not a cache, or its writer never committed"
