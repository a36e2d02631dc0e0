"""The one exception family of cache_format."""


class CacheFormatError(ValueError):
    """A cache is missing, damaged, or a caller passed data the format cannot hold.

    Messages name the cache folder, shard or key at fault, what was expected, and what to do.
    """


class MissingKeyError(CacheFormatError, KeyError):
    """A key that is not in the cache: both a CacheFormatError and a KeyError (mapping-style)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])
