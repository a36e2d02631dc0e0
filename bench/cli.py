"""What every bench command shares at its edge: the one-line error path and the checks of its
options that run before the minutes or hours of work (a bad path found at the end would lose
the run; a thread count of -2 would be torch's traceback)."""
from __future__ import annotations

import argparse
import os
from typing import Callable


class BenchArgumentError(ValueError):
    """A bench command's option, refused before any work."""


def run_bench_cli(body: Callable[[], int | None]) -> int:
    """`body` under cache_format's run_cli with the project's user-error families (those of
    runtime.train, the last stage bench drives) and bench's own: one line, exit 2. Any other
    ValueError is a bug and keeps its traceback."""
    from cache_format.cli_errors import run_cli
    from runtime.train import user_errors

    return run_cli(body, user_errors=(*user_errors(), BenchArgumentError))


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `low`, else argparse's one-line usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def layer_list(text: str) -> tuple[int, ...] | str:
    """An argparse type: "all", or K and ranges of K, comma-separated ("3,6,9", "1-5,8"),
    each at least 1, as a sorted tuple; the model's own bound is checked once it is known."""
    if text.strip() == "all":
        return "all"
    layers = set()
    for part in (p.strip() for p in text.split(",")):
        low, _, high = part.partition("-")
        try:
            ks = range(int(low), int(high or low) + 1)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not K or a range K-K") from None
        if not ks:
            raise argparse.ArgumentTypeError(f"{part!r}: a range runs low-high")
        if ks[0] < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: K must be at least 1")
        layers.update(ks)
    return tuple(sorted(layers))


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


def output_folder_problem(flag: str, path: str) -> str | None:
    """What is wrong with keeping files in the folder `path` (given as `flag`), or None; a
    folder not there yet needs a parent this user can write to."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            return f"{flag} {path}: is a file; pass a folder"
        return None if os.access(path, os.W_OK) else f"{flag} {path}: this user cannot write to it"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        return f"{flag} {path}: {parent} is not a folder this user can write to"
    return None
