"""The one exception family of cache_format, and reading a file as one of its errors."""

from pathlib import Path


class CacheFormatError(ValueError):
    """A cache is missing, damaged, or a caller passed data the format cannot hold.

    Messages name the cache folder, shard or key at fault, what was expected, and what to do.
    """


class MissingKeyError(CacheFormatError, KeyError):
    """A key that is not in the cache: both a CacheFormatError and a KeyError (mapping-style)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def read_or_raise(path: Path, what: str, missing: str) -> bytes:
    """The bytes of `path`; a missing or unreadable file is a CacheFormatError naming it.

    what: the file's role ("the manifest"); missing: the message when it does not exist.
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CacheFormatError(f"{path}: {missing}") from None
    except OSError as exc:
        raise CacheFormatError(f"{path}: cannot read {what} ({exc.strerror})") from None
