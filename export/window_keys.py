"""The cache keys of stride windows: window N of a long record ID is keyed "ID#N".

Export writes these keys (export.tokenize), the build counts a record as done when all its
windows are (export.build), and the runtime joins a labels row for ID to every window of it
(runtime.labels). This module is the one place that knows the spelling; it imports nothing, so
the runtime can use it without loading the export stack.
"""
from __future__ import annotations

_SEPARATOR = "#"


def window_key(example_id: str, n: int) -> str:
    """The cache key of window `n` (0-based) of the record `example_id`."""
    return f"{example_id}{_SEPARATOR}{n}"


def example_id_of(key: str) -> str:
    """The record id a window key was made from: everything before the last "#".

    Record ids may themselves hold "#" (window_key("a#b", 0) is "a#b#0", which gives back
    "a#b"), so a key is only a window key where the caller knows it is one: a build with
    stride, or a key that is not itself a labels row. A key without "#" comes back unchanged.
    """
    return key.rsplit(_SEPARATOR, 1)[0]
