"""Splitting a build over processes, and merging their parts when the last one finishes.

Shard I of N encodes the records whose 0-based number in the corpus is I modulo N (so it can
pick them while streaming, before tokenizing, and on a big corpus each shard gets about the same
number of tokens) and writes its own cache part (`part="rank<I>"`). When a shard's writer
has committed, it leaves a marker `.export-shards/done-<I>-of-<N>`; under a file lock, the shard
that finds all N markers merges the part manifests into manifest.json. No barrier is needed, so
the same protocol works for `--num-shards` processes launched by hand and under `torchrun`
(RANK / WORLD_SIZE), on one machine or on several sharing the output folder. A lost merge can be
redone with `python -m export.lower --merge --out DIR`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .errors import ExportError
from .locking import file_lock

MARKER_DIR = ".export-shards"
MERGE_LOCK = ".merge.lock"


def shard_from_env(environ: Mapping[str, str]) -> tuple[int, int] | None:
    """(num_shards, shard_index) from torchrun's WORLD_SIZE and RANK, or None when unset."""
    if "WORLD_SIZE" not in environ or "RANK" not in environ:
        return None
    try:
        world, rank = int(environ["WORLD_SIZE"]), int(environ["RANK"])
    except ValueError:
        raise ExportError(f"RANK={environ['RANK']!r} / WORLD_SIZE={environ['WORLD_SIZE']!r} "
                          f"are not integers; unset them or launch with torchrun") from None
    return world, rank


def threads_per_process(environ: Mapping[str, str], cores: int) -> int:
    """Cores divided among the processes torchrun started on this machine."""
    try:
        local = int(environ.get("LOCAL_WORLD_SIZE", "1"))
    except ValueError:
        local = 1
    return max(1, cores // max(1, local))


def check_shard(num_shards: int, shard_index: int) -> None:
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ExportError(f"--shard-index {shard_index} / --num-shards {num_shards} are out of "
                          f"range; need num_shards >= 1 and 0 <= shard_index < num_shards")


def part_name(num_shards: int, shard_index: int) -> str | None:
    """The cache_format part a shard writes; None for a single-process build."""
    return None if num_shards == 1 else f"rank{shard_index}"


def in_shard(number: int, num_shards: int, shard_index: int) -> bool:
    """Whether record `number` (0-based, in corpus order) belongs to this shard."""
    return number % num_shards == shard_index


def mark_done(out: Path, num_shards: int, shard_index: int) -> None:
    folder = out / MARKER_DIR
    folder.mkdir(exist_ok=True)
    (folder / f"done-{shard_index}-of-{num_shards}").touch()


def merge_if_complete(out: Path, num_shards: int) -> bool:
    """Merge the parts when all `num_shards` markers are there; True if this call merged."""
    import cache_format

    with file_lock(out / MERGE_LOCK):
        done = all((out / MARKER_DIR / f"done-{i}-of-{num_shards}").exists()
                   for i in range(num_shards))
        if done:
            cache_format.merge(out)
        return done


def merge_now(out: Path) -> dict:
    """Merge whatever parts `out` holds (the `--merge` step); returns the manifest."""
    import cache_format

    if not Path(out).is_dir():
        raise ExportError(f"--out {out} does not exist; nothing to merge")
    with file_lock(Path(out) / MERGE_LOCK):
        return cache_format.merge(out)

