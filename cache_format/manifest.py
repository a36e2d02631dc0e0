"""The JSON manifest: what a cache holds, which shards are committed, and what produced it.

A manifest is the commit point. A shard whose name is not in the manifest is not part of the
cache, whatever lies on disk. Manifests are written under a temporary name, fsynced and renamed
over the old one, so a reader sees the old manifest or the new one, never half of either.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from . import layout as L
from .errors import CacheFormatError, read_or_raise
from .layout import FORMAT_VERSION, MANIFEST_NAME, PART_MANIFEST_PREFIX, TMP_SUFFIX

SCALE_SCHEMES = {
    "fp32": "none",
    "fp16": "none",
    "int8": "per-token-absmax-after-per-channel-smoothing",
}
CHECKSUM_KEY = "manifest_sha256"
# Every key a manifest may hold, and its JSON type; caller metadata lives under `metadata` only
# (one source of truth) and may not use these names, so a reader's flat view cannot clash.
_TOP_TYPES = {
    "format_version": int, "cache_id": str, "dtype": str, "codec": str, "hidden_size": int,
    "scale_scheme": str, "num_examples": int, "num_tokens": int, "shards": list,
    "metadata": dict, "part": str,
}
_OPTIONAL = frozenset({"part"})
_ENTRY_TYPES = {"name": str, "num_records": int, "num_tokens": int, "data_bytes": int,
                "writer_id": str}
RESERVED_KEYS = frozenset(_TOP_TYPES) | {CHECKSUM_KEY}
# The fields that say what the states are; their digest is stored in every shard and index.
IDENTITY_KEYS = ("format_version", "dtype", "codec", "hidden_size", "scale_scheme", "metadata")
_HEX_ID = re.compile(r"^[0-9a-f]{32}$")
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}-[0-9]{5,20}$")


def new_manifest(*, hidden_size: int, dtype: str, codec: str, metadata: dict, part) -> dict:
    """An empty manifest with a freshly drawn `cache_id`."""
    manifest = dict(
        format_version=FORMAT_VERSION,
        cache_id=secrets.token_hex(L.WRITER_ID_BYTES),
        dtype=dtype,
        codec=codec,
        hidden_size=hidden_size,
        scale_scheme=SCALE_SCHEMES[dtype],
        num_examples=0,
        num_tokens=0,
        shards=[],
        metadata=dict(metadata),
    )
    if part is not None:
        manifest["part"] = part
    return manifest


def flat_view(manifest: dict) -> dict:
    """The manifest as readers see it: the caller's metadata keys also at the top level
    (`view["layer"]`), derived on open and never stored twice."""
    view = dict(manifest["metadata"])
    view.update(manifest)
    return view


def canonical_bytes(obj) -> bytes:
    """The canonical encoding checksums and digests are taken over (docs/FORMAT.md)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


def manifest_checksum(manifest: dict) -> str:
    """sha256 (hex) of the canonical encoding of every key but the checksum itself."""
    body = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def identity_digest(manifest: dict) -> bytes:
    """sha256 of the identity fields: what every shard and index of the cache must carry."""
    return hashlib.sha256(canonical_bytes({k: manifest[k] for k in IDENTITY_KEYS})).digest()


def check_metadata(metadata) -> dict:
    """Metadata must be a JSON-serialisable dict that does not shadow the format's keys."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise CacheFormatError(f"metadata must be a dict, got {type(metadata).__name__}")
    clash = sorted(RESERVED_KEYS.intersection(metadata))
    if clash:
        raise CacheFormatError(
            f"metadata key(s) {clash} are reserved by the cache format; rename them"
        )
    try:
        checked = json.loads(json.dumps(metadata, sort_keys=True, allow_nan=False))
        canonical_bytes(checked)
    except (TypeError, ValueError) as exc:
        raise CacheFormatError(f"metadata must be JSON-serialisable: {exc}") from None
    return checked


def manifest_path(root: Path, part) -> Path:
    return root / (MANIFEST_NAME if part is None else f"{PART_MANIFEST_PREFIX}{part}.json")


def part_manifest_paths(root: Path) -> list[Path]:
    """Part manifests (manifest.<part>.json) in part-name order."""
    return sorted(
        p for p in root.glob(f"{PART_MANIFEST_PREFIX}*.json") if p.name != MANIFEST_NAME
    )


def read_manifest(path: Path) -> dict:
    """Parse and check one manifest file; return it without its checksum key.

    Every way the file can be damaged (unreadable, not UTF-8, not JSON, not an object, a key
    missing or of the wrong type, a checksum that does not match) is a CacheFormatError that
    names the file.
    """
    raw = read_or_raise(path, "the manifest", "manifest missing")
    try:
        manifest = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                              parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise CacheFormatError(f"{path}: manifest is not UTF-8 (byte {exc.start}): the file "
                               "is damaged; rebuild the cache or restore the file") from None
    except (ValueError, RecursionError) as exc:
        raise CacheFormatError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise CacheFormatError(f"{path}: manifest is a JSON {type(manifest).__name__}, not an "
                               "object: the file is damaged")
    _check_version(path, manifest.get("format_version"))
    stored = manifest.pop(CHECKSUM_KEY, None)
    if stored != manifest_checksum(manifest):
        raise CacheFormatError(
            f"{path}: manifest fails its {CHECKSUM_KEY} check: the file was damaged or edited; "
            "rebuild the cache or restore the file")
    _check_fields(path, manifest)
    return manifest


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {sorted(k for k in keys if keys.count(k) > 1)[0]!r}")
    return dict(pairs)


def _no_constant(name):
    raise ValueError(f"{name} is not allowed")


def _check_version(path: Path, version) -> None:
    if version in L.LEGACY_VERSIONS and type(version) is int:
        raise CacheFormatError(
            f"{path}: cache format_version {version} is no longer read (it has no manifest "
            f"checksum or shard identity); delete {path.parent} and build it again with this "
            "release (the same export command rebuilds it)")
    if version != FORMAT_VERSION or type(version) is not int:
        raise CacheFormatError(
            f"{path}: format_version {version!r} is not supported by this reader (version "
            f"{FORMAT_VERSION}); use a matching release of cache_format")


def _check_fields(path: Path, m: dict) -> None:
    _check_types(path, m, _TOP_TYPES, _OPTIONAL, "manifest")
    if m["dtype"] not in SCALE_SCHEMES:
        raise CacheFormatError(f"{path}: unknown dtype {m['dtype']!r}")
    if m["scale_scheme"] != SCALE_SCHEMES[m["dtype"]]:
        raise CacheFormatError(f"{path}: scale_scheme {m['scale_scheme']!r} does not match "
                               f"dtype {m['dtype']!r}")
    if not _HEX_ID.match(m["cache_id"]) or not 1 <= m["hidden_size"] <= 2**20:
        raise CacheFormatError(f"{path}: cache_id or hidden_size is malformed")
    clash = sorted(RESERVED_KEYS.intersection(m["metadata"]))
    if clash:
        raise CacheFormatError(f"{path}: metadata uses reserved key(s) {clash}")
    names = set()
    for i, entry in enumerate(m["shards"]):
        if not isinstance(entry, dict):
            raise CacheFormatError(f"{path}: shards[{i}] is not an object")
        _check_types(path, entry, _ENTRY_TYPES, frozenset(), f"shards[{i}]")
        if (not _SHARD_NAME.match(entry["name"]) or entry["name"] in names
                or not _HEX_ID.match(entry["writer_id"])
                or min(entry["num_records"], entry["num_tokens"], entry["data_bytes"]) < 0):
            raise CacheFormatError(f"{path}: shards[{i}] is malformed or repeats a name")
        names.add(entry["name"])
    for total, field in (("num_examples", "num_records"), ("num_tokens", "num_tokens")):
        if m[total] != sum(e[field] for e in m["shards"]):
            raise CacheFormatError(f"{path}: {total} is {m[total]}, the shards add up to "
                                   f"{sum(e[field] for e in m['shards'])}")


def _check_types(path: Path, obj: dict, types: dict, optional, where: str) -> None:
    missing = sorted(set(types) - set(obj) - optional)
    if missing:
        raise CacheFormatError(f"{path}: {where} lacks {missing}: the file is damaged")
    unknown = sorted(set(obj) - set(types))
    if unknown:
        raise CacheFormatError(f"{path}: {where} has unknown key(s) {unknown}")
    for key, value in obj.items():
        kind = types[key]
        # bool is an int in Python but not in the format
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CacheFormatError(f"{path}: {where} {key} is a {type(value).__name__}, "
                                   f"expected {kind.__name__}")


def write_manifest(path: Path, manifest: dict) -> None:
    """Atomically replace `path` with `manifest` plus its checksum (sorted keys, fsynced,
    renamed)."""
    stamped = dict(manifest)
    stamped.pop(CHECKSUM_KEY, None)
    stamped[CHECKSUM_KEY] = manifest_checksum(stamped)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(stamped, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing committed is lost: the old manifest stays
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make renames in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def same_kind(a: dict, b: dict) -> list[str]:
    """Differences between two manifests in what they claim to store, as readable strings."""
    diffs = []
    for key in ("dtype", "codec", "hidden_size"):
        if a.get(key) != b.get(key):
            diffs.append(f"{key} {a.get(key)!r} != {b.get(key)!r}")
    ma, mb = a.get("metadata", {}), b.get("metadata", {})
    for key in sorted(set(ma) | set(mb)):
        if ma.get(key) != mb.get(key):
            diffs.append(f"{key} {ma.get(key)!r} != {mb.get(key)!r}")
    return diffs
