"""The export package's one exception family.

Every mistake a user can make (a missing file, a bad field, K out of range, an output folder
holding another cache) is raised as `ExportError` with a message that names the value, what was
expected and what to do. `python -m export.lower` prints it as one line and exits with code 2.
"""
from __future__ import annotations


class ExportError(ValueError):
    """A user-facing problem with the export's inputs or outputs (one-line message)."""
