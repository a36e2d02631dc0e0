"""CacheReader: O(1) reads by key from mmapped shards, verified, decoded, dequantised.

Readers never write and open every file read-only, so any number of processes (DataLoader
workers, DDP ranks) can read one cache at once. A reader pickles as its path and reopens on
the other side, so it can be handed to spawned workers.
"""
from __future__ import annotations

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
        self._keys, self._where = _build_key_index(self.root, self._shards)

    # -- containers ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key) -> bool:
        return key in self._where

    def __iter__(self):
        return iter(self._keys)

    def keys(self) -> list[str]:
        """Example keys in the order they were added (parts in part-name order)."""
        return list(self._keys)

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
        return shard.num_tokens[i]

    def lengths(self) -> dict[str, int]:
        """Every key's token count, from the indexes alone."""
        return {k: self._shards[s].num_tokens[i] for k, (s, i) in self._where.items()}

    def read_raw(self, key: str) -> RawRecord:
        """The stored arrays of `key`, verified against their checksum, not dequantised."""
        shard, i = self._locate(key)
        payload = shard.payload(i)
        t = shard.num_tokens[i]
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
        for key in self._keys:
            self.read_raw(key)
        return len(self._keys)

    def _locate(self, key) -> tuple[ShardReader, int]:
        try:
            s, i = self._where[key]
        except (KeyError, TypeError):
            raise MissingKeyError(f"key {key!r} is not in the cache at {self.root}") from None
        return self._shards[s], i

    # -- pickling: reopen by path in the receiving process ------------------------------------

    def __getstate__(self):
        return {"root": str(self.root)}

    def __setstate__(self, state):
        self.__init__(state["root"])

    def __repr__(self) -> str:
        return (f"CacheReader({str(self.root)!r}, {len(self)} records, dtype={self.dtype}, "
                f"codec={self.manifest['codec']})")


def _build_key_index(root: Path, shards: list[ShardReader]):
    keys, where = [], {}
    for s, shard in enumerate(shards):
        for i, key in enumerate(shard.keys):
            if key in where:
                raise CacheFormatError(
                    f"{root}: key {key!r} appears in shard {shards[where[key][0]].name} and in "
                    f"shard {shard.name}; parallel writers must write disjoint keys")
            where[key] = (s, i)
            keys.append(key)
    return keys, where


def _missing_manifest_message(root: Path) -> str:
    parts = part_manifest_paths(root)
    if parts:
        return (f"{root}: holds {len(parts)} part manifest(s) but no manifest.json: merge them "
                f"first (python -m cache_format merge {root})")
    return f"{root}: no manifest.json: not a cache, or its writer never committed"
