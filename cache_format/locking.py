"""One writer per manifest: an exclusive flock held for a writer's whole lifetime.

The lock file sits beside the manifest it guards (`manifest.json.lock`, or
`manifest.<part>.json.lock` for a parallel writer), so parallel parts never wait on each other
while two writers of the same manifest (or a writer and a merge) exclude each other. flock is
released by the kernel when the holding process dies, however it dies, so a killed build never
leaves a stale lock behind and a resume needs no clean-up. Readers take no lock; one that must
not read a cache mid-build asks `active_writer`, which probes the locks without waiting.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from .errors import CacheFormatError

LOCK_SUFFIX = ".lock"


class WriterLock:
    """Take the lock of `manifest` in folder `root` now, without waiting, or raise."""

    def __init__(self, root: Path, manifest: Path):
        self.path = manifest.with_name(manifest.name + LOCK_SUFFIX)
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheFormatError(
                f"{self.path}: cannot create the writer lock ({exc.strerror}); the cache folder "
                f"must be writable") from None
        try:
            _lock_exclusive(self._fd)
        except OSError as exc:
            holder = _read_holder(self._fd)
            os.close(self._fd)
            self._fd = None
            if exc.errno not in _BUSY:
                raise CacheFormatError(
                    f"{self.path}: cannot lock ({exc.strerror}); the file system must support "
                    "flock") from None
            raise CacheFormatError(
                f"{root}: another writer ({holder}) is writing {manifest.name} there; wait for "
                f"it to finish or write to another folder") from None
        # Who holds it, for the second writer's message; best effort (a full disk must not
        # stop a writer that could otherwise commit).
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        """Give the lock back (idempotent). The file stays: removing it would race."""
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
# A reader's `active_writer` probe holds a shared lock for microseconds: a writer that meets
# one retries for this long before it takes the lock for another writer's.
_PROBE_WAIT_S = 0.2


def _lock_exclusive(fd: int) -> None:
    deadline = time.monotonic() + _PROBE_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in _BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def active_writer(root) -> str | None:
    """Who is writing cache folder `root` now ("pid N"), or None. A reader sees the last commit
    of a cache being written, which may hold a third of its records: a run that needs the
    whole cache asks first. It probes each manifest's lock with a shared lock and no wait."""
    for path in sorted(Path(root).glob("manifest*.json" + LOCK_SUFFIX)):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # gone, or not ours to read: no writer we could wait for
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            if exc.errno in _BUSY:
                return _read_holder(fd)
        finally:
            os.close(fd)
    return None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"
