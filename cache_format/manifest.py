"""The JSON manifest: what a cache holds, which shards are committed, and what produced it.

A manifest is the commit point. A shard whose name is not in the manifest is not part of the
cache, whatever lies on disk. Manifests are written under a temporary name, fsynced and renamed
over the old one, so a reader sees the old manifest or the new one, never half of either.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import CacheFormatError
from .layout import FORMAT_VERSION, MANIFEST_NAME, PART_MANIFEST_PREFIX, TMP_SUFFIX

SCALE_SCHEMES = {
    "fp32": "none",
    "fp16": "none",
    "int8": "per-token-absmax-after-per-channel-smoothing",
}
# Keys the format owns; caller metadata may not shadow them.
RESERVED_KEYS = frozenset(
    {
        "format_version", "dtype", "codec", "hidden_size", "scale_scheme", "num_examples",
        "num_tokens", "shards", "metadata", "part",
    }
)


def new_manifest(*, hidden_size: int, dtype: str, codec: str, metadata: dict, part) -> dict:
    """An empty manifest. Caller metadata is copied to the top level and kept under
    `metadata` too, so that a resume can compare exactly what the caller gave."""
    manifest = dict(metadata)
    manifest.update(
        format_version=FORMAT_VERSION,
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
        return json.loads(json.dumps(metadata, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise CacheFormatError(f"metadata must be JSON-serialisable: {exc}") from None


def manifest_path(root: Path, part) -> Path:
    return root / (MANIFEST_NAME if part is None else f"{PART_MANIFEST_PREFIX}{part}.json")


def part_manifest_paths(root: Path) -> list[Path]:
    """Part manifests (manifest.<part>.json) in part-name order."""
    return sorted(
        p for p in root.glob(f"{PART_MANIFEST_PREFIX}*.json") if p.name != MANIFEST_NAME
    )


def read_manifest(path: Path) -> dict:
    """Parse and check one manifest file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CacheFormatError(f"{path}: manifest missing") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise CacheFormatError(f"{path}: manifest is not valid JSON ({exc})") from None
    missing = sorted(
        k for k in ("format_version", "dtype", "codec", "hidden_size", "shards")
        if k not in manifest
    )
    if missing:
        raise CacheFormatError(f"{path}: manifest lacks {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise CacheFormatError(
            f"{path}: format_version {manifest['format_version']} is not supported by this "
            f"reader (version {FORMAT_VERSION}); use a matching release of cache_format"
        )
    return manifest


def write_manifest(path: Path, manifest: dict) -> None:
    """Atomically replace `path` with `manifest` (sorted keys, fsynced, renamed)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
