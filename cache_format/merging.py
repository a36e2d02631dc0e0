"""Merging the part manifests of parallel writers into the one manifest readers open.

Each parallel writer (one per rank or machine) writes its own shards and its own
manifest.<part>.json, with no shared lock. `merge` then checks that the parts agree on what they
store and hold disjoint keys, and writes manifest.json listing every shard. Merging again after
more parts were written is safe: shards already listed keep their place.
"""
from __future__ import annotations

from pathlib import Path

from . import layout as L
from .codec import get_codec
from .errors import CacheFormatError
from .locking import WriterLock
from .manifest import (
    identity_digest, part_manifest_paths, read_manifest, same_kind, write_manifest,
)
from .shard import open_shard


def merge_parts(path) -> dict:
    """Write manifest.json from every manifest.<part>.json in `path`; return it."""
    root = Path(path)
    if not root.is_dir():
        raise CacheFormatError(f"{root}: no such cache folder")
    lock = WriterLock(root, root / L.MANIFEST_NAME)  # excludes a single writer and other merges
    try:
        return _merge_locked(root)
    finally:
        lock.release()


def _merge_locked(root: Path) -> dict:
    parts = part_manifest_paths(root)
    main_path = root / L.MANIFEST_NAME
    base = read_manifest(main_path) if main_path.exists() else None
    if not parts and base is None:
        raise CacheFormatError(f"{root}: no part manifests (manifest.<part>.json) to merge")
    manifests = ([base] if base else []) + [read_manifest(p) for p in parts]
    first = manifests[0]
    for p, m in zip(([main_path] if base else []) + parts, manifests):
        diffs = same_kind(first, m)
        if diffs:
            raise CacheFormatError(f"{p}: differs from the other parts ({'; '.join(diffs)})")
    merged = {k: v for k, v in first.items() if k != "part"}
    # The merged cache keeps the id of the manifest already there, else the first part's;
    # every shard entry keeps the id of the writer that wrote it (its files carry that id).
    merged["cache_id"] = first["cache_id"]
    merged["shards"], seen = [], set()
    for m in manifests:
        for entry in m["shards"]:
            if entry["name"] not in seen:
                seen.add(entry["name"])
                merged["shards"].append(entry)
    _check_disjoint(root, merged)
    merged["num_examples"] = sum(e["num_records"] for e in merged["shards"])
    merged["num_tokens"] = sum(e["num_tokens"] for e in merged["shards"])
    write_manifest(main_path, merged)
    return merged


def _check_disjoint(root: Path, manifest: dict) -> None:
    codec = get_codec(manifest["codec"])
    identity = identity_digest(manifest)
    owner: dict[str, str] = {}
    for entry in manifest["shards"]:
        shard = open_shard(root, entry, hidden_size=int(manifest["hidden_size"]),
                           dtype=manifest["dtype"], codec=codec, identity=identity)
        for key in shard.keys:
            if key in owner:
                raise CacheFormatError(
                    f"{root}: key {key!r} was written by shard {owner[key]} and by "
                    f"{entry['name']}; parallel writers must write disjoint keys")
            owner[key] = entry["name"]
