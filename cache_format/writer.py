"""CacheWriter: validates records, quantises and encodes them, rolls shards, commits.

Commit protocol (docs/FORMAT.md, "Writing"): records go to a temporary shard; `commit()` (also
called when a shard reaches `shard_bytes` and on `close()`) seals that shard by rename and then
rewrites the manifest by rename. A writer killed at any moment leaves every committed shard
readable; `append=True` resumes after the last committed shard without rewriting it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from . import layout as L
from .codec import get_codec
from .errors import CacheFormatError
from .locking import WriterLock
from .manifest import (
    check_metadata, identity_digest, manifest_path, new_manifest, read_manifest, same_kind,
    write_manifest,
)
from .quantize import calibrate_smoothing, quantize_int8
from .shard import ShardWriter, open_shard

DEFAULT_SHARD_BYTES = 128 * 2**20
DEFAULT_CALIBRATION_TOKENS = 4096
_PART_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_DEFAULT_PART_PREFIX = "shard"


class CacheWriter:
    """Writes records into a cache folder. Not thread-safe. One writer per manifest at a time:
    the writer holds an exclusive lock (locking.WriterLock) from construction to close()."""

    def __init__(self, path, *, hidden_size: int, dtype: str = "int8", codec: str = "lz4",
                 metadata: dict | None = None, append: bool = False, part: str | None = None,
                 shard_bytes: int = DEFAULT_SHARD_BYTES,
                 calibration_tokens: int = DEFAULT_CALIBRATION_TOKENS):
        _check_args(hidden_size, dtype, part, shard_bytes, calibration_tokens)
        self.root = Path(path)
        self.hidden_size, self.dtype = int(hidden_size), dtype
        self.codec = get_codec(codec)
        self.shard_bytes, self.calibration_tokens = shard_bytes, calibration_tokens
        self._prefix = part if part is not None else _DEFAULT_PART_PREFIX
        self._manifest_path = manifest_path(self.root, part)
        wanted = new_manifest(hidden_size=self.hidden_size, dtype=dtype, codec=codec,
                              metadata=check_metadata(metadata), part=part)
        self._vocab_size = wanted["metadata"].get("vocab_size")
        if self.root.exists() and not self.root.is_dir():
            raise CacheFormatError(f"{self.root}: exists and is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheFormatError(f"{self.root}: cannot create the cache folder "
                                   f"({exc.strerror})") from None
        # Held until close() (or the process's death): a second writer of this manifest would
        # delete this one's open shard as an orphan and overwrite its commits.
        self._lock = WriterLock(self.root, self._manifest_path)
        try:
            self.manifest, self._keys, self._smoothing = self._load_or_start(wanted, append)
            self._identity = identity_digest(self.manifest)
            self._seq = _next_seq(self.manifest, self._prefix)
            _remove_orphans(self.root, self._prefix, self._seq)
        except BaseException:
            self._lock.release()
            raise
        self._shard: ShardWriter | None = None
        self._pending: list[tuple] = []  # int8: records waiting for the shard's calibration
        self._pending_tokens = 0
        self._closed = False

    # -- public API -------------------------------------------------------------------------

    def add(self, key: str, token_ids, hidden, *, offsets=None) -> None:
        """Add one record: `token_ids` int [T], `hidden` float [T, H], `offsets` int [T, 2].

        Everything is checked before anything is written, so a rejected record leaves the
        writer and the records already added intact.
        """
        if self._closed:
            raise CacheFormatError(f"{self.root}: writer is closed; open a new one with append=True")
        key_bytes = self._check_key(key)
        ids, states, spans = _check_record(key, token_ids, hidden, offsets,
                                           self.hidden_size, self._vocab_size)
        self._keys.add(key)
        if self.dtype == "int8" and self._smoothing is None:
            self._pending.append((key_bytes, ids, states, spans))
            self._pending_tokens += len(ids)
            if self._pending_tokens >= self.calibration_tokens:
                self._flush_pending()
        else:
            self._write(key_bytes, ids, states, spans)
        if self._shard is not None and self._shard.size >= self.shard_bytes:
            self.commit()

    def commit(self) -> None:
        """Seal the open shard and rewrite the manifest: everything added so far is durable."""
        if self._pending:
            self._flush_pending()
        if self._shard is None:
            return
        entry = self._shard.seal(self._smoothing)
        self._shard = None
        self._seq += 1
        self.manifest["shards"].append(entry)
        self.manifest["num_examples"] += entry["num_records"]
        self.manifest["num_tokens"] += entry["num_tokens"]
        write_manifest(self._manifest_path, self.manifest)

    def close(self) -> None:
        """Commit what was added and finish. An empty cache is valid and gets a manifest."""
        if self._closed:
            return
        try:
            self.commit()
            if not self._manifest_path.exists():
                write_manifest(self._manifest_path, self.manifest)
        finally:
            self._closed = True
            if self._shard is not None:  # a failed commit: drop what never became durable
                self._shard.discard()
                self._shard = None
            self._lock.release()

    def __contains__(self, key) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, *exc) -> None:
        # Commit even on an exception: every add() either fully succeeded or changed nothing,
        # so what was added is sound, and losing it would throw away finished work.
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _load_or_start(self, wanted: dict, append: bool):
        if not self._manifest_path.exists():
            return wanted, set(), None
        if not append:
            raise CacheFormatError(
                f"{self.root}: already holds a cache ({self._manifest_path.name}); pass "
                "append=True to add to it, or choose another folder"
            )
        existing = read_manifest(self._manifest_path)
        diffs = same_kind(existing, wanted)
        if diffs:
            raise CacheFormatError(
                f"{self.root}: the cache there was written with other settings "
                f"({'; '.join(diffs)}); use another folder or the same settings"
            )
        keys, smoothing = set(), None
        for entry in existing["shards"]:
            shard = open_shard(self.root, entry, hidden_size=self.hidden_size,
                               dtype=self.dtype, codec=self.codec,
                               identity=identity_digest(existing))
            keys.update(shard.keys)
            if entry["name"].rsplit("-", 1)[0] == self._prefix:
                # Reuse this writer's calibration so that a resumed cache decodes to exactly
                # what an uninterrupted run would have written.
                smoothing = shard.smoothing
        return existing, keys, smoothing

    def _check_key(self, key) -> bytes:
        if not isinstance(key, str):
            raise CacheFormatError(f"key must be a str, got {type(key).__name__}: {key!r}")
        if not key:
            raise CacheFormatError("key must be a non-empty string")
        if key in self._keys:
            raise CacheFormatError(f"key {key!r} is already in the cache at {self.root}")
        try:
            encoded = key.encode("utf-8")
        except UnicodeEncodeError:
            raise CacheFormatError(f"key {key!r} cannot be encoded as UTF-8") from None
        if len(encoded) > L.MAX_KEY_BYTES:
            raise CacheFormatError(
                f"key {key[:40]!r}... is {len(encoded)} bytes; at most {L.MAX_KEY_BYTES}"
            )
        return encoded

    def _flush_pending(self) -> None:
        states = np.concatenate([p[2] for p in self._pending])  # (sum T, H)
        self._smoothing = calibrate_smoothing(states)
        pending, self._pending, self._pending_tokens = self._pending, [], 0
        for key_bytes, ids, states, spans in pending:
            self._write(key_bytes, ids, states, spans)

    def _write(self, key_bytes: bytes, ids, states, spans) -> None:
        if self._shard is None:
            self._shard = ShardWriter(self.root, L.shard_name(self._prefix, self._seq),
                                      hidden_size=self.hidden_size, dtype=self.dtype,
                                      codec=self.codec, writer_id=self.manifest["cache_id"],
                                      identity=self._identity)
        parts = [ids.astype(L.TOKEN_ID_DTYPE).tobytes()]
        if self.dtype == "int8":
            q, scales = quantize_int8(states, self._smoothing)
            parts += [scales.tobytes(), q.tobytes()]
        else:
            parts.append(states.astype(L.DTYPES[self.dtype][1]).tobytes())
        if spans is not None:
            parts.append(spans.astype(L.OFFSET_DTYPE).tobytes())
        self._shard.append(key_bytes, b"".join(parts), len(ids), spans is not None)


def _check_args(hidden_size, dtype, part, shard_bytes, calibration_tokens) -> None:
    if not isinstance(hidden_size, (int, np.integer)) or isinstance(hidden_size, bool) \
            or not 1 <= hidden_size <= 2**20:
        raise CacheFormatError(f"hidden_size must be an integer in 1..{2**20}, got {hidden_size!r}")
    if dtype not in L.DTYPES:
        raise CacheFormatError(
            f"unknown dtype {dtype!r}: expected one of {', '.join(L.DTYPES)}")
    if part is not None and (not isinstance(part, str) or not _PART_RE.match(part)
                             or part == _DEFAULT_PART_PREFIX):
        raise CacheFormatError(
            f"part must be 1-64 letters, digits or underscores (not {_DEFAULT_PART_PREFIX!r}),"
            f" got {part!r}")
    if not 2**16 <= shard_bytes <= L.MAX_SHARD_BYTES:
        raise CacheFormatError(
            f"shard_bytes must be in {2**16}..{L.MAX_SHARD_BYTES}, got {shard_bytes}")
    if not 1 <= calibration_tokens <= 2**24:
        raise CacheFormatError(f"calibration_tokens must be in 1..{2**24}, got {calibration_tokens}")


def _check_record(key, token_ids, hidden, offsets, hidden_size, vocab_size):
    ids = np.asarray(token_ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise CacheFormatError(
            f"key {key!r}: token_ids must be a 1-D integer array, got shape {ids.shape} "
            f"dtype {ids.dtype}")
    t = len(ids)
    if t == 0:
        raise CacheFormatError(f"key {key!r}: a record needs at least one token (T = 0)")
    limit = vocab_size if vocab_size is not None else 2**32
    if int(ids.min()) < 0 or int(ids.max()) >= limit:
        raise CacheFormatError(
            f"key {key!r}: token ids must lie in 0..{limit - 1}, got min {int(ids.min())} "
            f"max {int(ids.max())}")
    states = np.asarray(hidden)
    if states.ndim != 2 or states.shape != (t, hidden_size):
        raise CacheFormatError(
            f"key {key!r}: hidden must have shape [T, H] = [{t}, {hidden_size}] (T from "
            f"token_ids, H = the cache's hidden_size), got {list(states.shape)}")
    if states.dtype.kind != "f":
        raise CacheFormatError(f"key {key!r}: hidden must be floating point, got {states.dtype}")
    if not np.isfinite(states).all():
        raise CacheFormatError(f"key {key!r}: hidden holds NaN or Inf; refusing to store it")
    if L.payload_size(t, hidden_size, "fp32", True) > L.MAX_RECORD_BYTES:
        raise CacheFormatError(f"key {key!r}: record of {t} tokens is too large; split it")
    return ids, states, _check_offsets(key, offsets, t)


def _check_offsets(key, offsets, t):
    if offsets is None:
        return None
    spans = np.asarray(offsets)
    if spans.shape != (t, 2) or spans.dtype.kind not in "iu":
        raise CacheFormatError(
            f"key {key!r}: offsets must be an integer array of shape [{t}, 2], got "
            f"{list(spans.shape)} {spans.dtype}")
    if spans.size and (int(spans.min()) < 0 or int(spans.max()) >= 2**31):
        raise CacheFormatError(f"key {key!r}: offsets must lie in 0..2**31-1")
    return spans


def _next_seq(manifest: dict, prefix: str) -> int:
    seqs = [int(e["name"].rsplit("-", 1)[1]) for e in manifest["shards"]
            if e["name"].rsplit("-", 1)[0] == prefix]
    return max(seqs) + 1 if seqs else 0


def _remove_orphans(root: Path, prefix: str, first_free: int) -> None:
    """Delete this writer's shard files that no manifest names (left by a killed writer)."""
    for path in root.glob(f"{prefix}-*"):
        stem = path.name.split(".", 1)[0]
        seq = stem.rsplit("-", 1)[1]
        if stem.rsplit("-", 1)[0] == prefix and seq.isdigit() and int(seq) >= first_free:
            path.unlink(missing_ok=True)
