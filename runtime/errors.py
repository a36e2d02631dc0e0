"""runtime.errors: the one exception family of the runtime package.

Every user-facing mistake the runtime detects (a layer index out of range, an unsupported
architecture, a bad adapter setting, a labels file that does not match the cache, ...) raises
`RuntimeConfigError`. It subclasses `ValueError` so callers that already catch `ValueError` keep
working; the CLIs turn it into one line on stderr and exit code 2. Messages give the value, what
was expected and what to do.
"""


class RuntimeConfigError(ValueError):
    """A runtime input or setting is wrong; the message names the value and the fix."""
