"""Where a bench command writes its results, checked before the minutes or hours of work that
produce them: a bad path found at the end would lose the run."""
from __future__ import annotations

import os


def output_file_problem(flag: str, path: str) -> str | None:
    """What is wrong with writing a file at `path` (given as `flag`), or None."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"{flag} {path}: is a folder; pass a file name"
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        return f"{flag} {path}: {parent} is not a folder this user can write to"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{flag} {path}: this user cannot write to it"
    return None
