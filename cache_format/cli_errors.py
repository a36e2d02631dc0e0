"""The one error path of every command line in the project: one line on stderr, exit 2.

It lives in cache_format because that is the one package every CLI may import: imports go
cache_format <- export <- runtime <- bench, and cache_format imports nothing of the others, so
export.lower, runtime.train, runtime.predict and python -m cache_format can all share it without
breaking that direction. It needs only the standard library. For the same reason it also
holds the help formatter those CLIs share (`DefaultsHelpFormatter`).

    parser = OneLineParser(prog="python -m runtime.train", ...)
    return run_cli(lambda: _run(parser.parse_args(argv)), user_errors=(RuntimeConfigError,))

- argparse usage errors: `PROG: error: MESSAGE (see --help)`, exit 2 (argparse's own code).
- the package error families given (and CacheFormatError): `error: MESSAGE`, exit 2.
- every OSError (a full disk, a file too large, no permission, a read-only or missing folder,
  a path that is a file): `error: PATH: REASON; WHAT TO DO`, exit 2. Whatever the failing step
  had written under a temporary name it removes itself (cache_format's writers do).
- Ctrl-C: one line saying that committed work is kept, exit 130.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import copy
import errno
import sys
from typing import Callable

from .errors import CacheFormatError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
TYPED_DESTS = "_typed_dests"  # what OneLineParser.parse_known_args adds to a namespace

_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is exhausted: free space or write somewhere else",
    errno.EFBIG: "the file is larger than this file system or ulimit -f allows: write "
                 "somewhere else or raise the limit",
    errno.EACCES: "permission denied: pass a path you can read and write",
    errno.EPERM: "operation not permitted: pass a path you can read and write",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.ENOTDIR: "a part of the path is a file, not a folder: pass a folder",
    errno.EISDIR: "the path is a folder where a file was expected",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "the path already exists",
    errno.ENAMETOOLONG: "the path is too long",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line plus "(see --help)", exit code 2.

    Sub-parsers made by `add_subparsers` are of the same class, so they behave alike.
    """

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)} (see --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """argparse's parse, which also keeps on the namespace (as `_typed_dests`) the dests
        the command line named, so `given` can tell `--lora-r 8` typed from 8 by default."""
        parsed, extras = super().parse_known_args(args, namespace)
        shadow = copy.deepcopy(self)
        _suppress_defaults(shadow)
        # argparse's own parse, not ours: the shadow's defaults are gone, so what it returns is
        # what was typed; the same arguments already parsed once, so it cannot fail now
        typed, _ = argparse.ArgumentParser.parse_known_args(shadow, args, None)
        setattr(parsed, TYPED_DESTS, frozenset(d for d in vars(typed) if d != TYPED_DESTS))
        return parsed, extras

    def given(self, args, dests) -> list:
        """The flags (as `--help` names them) of those `dests` that the command line behind
        `args` named, even at their default value: the options a user typed, for refusing one
        that would be read by nothing in the mode the rest of the command picks. For a
        namespace this class did not parse, those held at other than their default."""
        flags = {a.dest: a.option_strings[0] for a in self._actions if a.option_strings}
        typed = getattr(args, TYPED_DESTS, None)
        if typed is None:
            typed = {d for d in dests if getattr(args, d) != self.get_default(d)}
        return [flags.get(d, d) for d in dests if d in typed]


def _suppress_defaults(parser: argparse.ArgumentParser) -> None:
    """Every default of `parser` and its sub-parsers unset, so a parse sets only what the
    command line names."""
    parser._defaults.clear()  # set_defaults(); argparse has no public way to drop them
    for action in parser._actions:
        if action.dest != argparse.SUPPRESS:
            action.default = argparse.SUPPRESS
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _suppress_defaults(sub)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" only where it tells something: not for an option left unset
    (None, False, an empty list), and not where the help already says its default in words
    ("K (default N // 2)"), which would otherwise read "(default: None)" after it."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ([], ())
        if unset or "default" in help_text:  # `is`, not ==: a default of 0 is a default
            return help_text
        return super()._get_help_string(action)


def one_line(text) -> str:
    """`text` with its line breaks folded, so that an error is always one line."""
    return " ".join(str(text).split("\n")).strip()


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the path, what went wrong, what to do."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = _HINTS.get(exc.errno) or exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def run_cli(body: Callable[[], int | None], *, user_errors: tuple = (),
            interrupted: str = "interrupted: work committed so far is kept") -> int:
    """Run a CLI's `body` and turn user mistakes into one line on stderr; return the exit code."""
    try:
        return body() or 0
    except (CacheFormatError, *user_errors) as exc:
        message = str(exc)
    except OSError as exc:
        message = os_error_message(exc)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"error: {one_line(message)}", file=sys.stderr)
    return EXIT_USAGE
