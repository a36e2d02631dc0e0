"""An exclusive advisory file lock, for the steps parallel shard writers must not overlap
(exporting the ONNX model into the shared folder, merging part manifests)."""
from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path):
    """Hold an exclusive flock on `path` (created if missing) for the `with` block."""
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
