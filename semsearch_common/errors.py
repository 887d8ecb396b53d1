"""Errors a user can fix that the standard exceptions do not name: a missing optional package.

Bad input raises `ValueError` (or a subclass such as `DatasetError`, `IndexDirError`, `ModelLoadError`) with a
message that names the file or value and the allowed ones; the CLI prints those as one line. Everything else keeps
its traceback, so a bare `ImportError` or `KeyError` is a bug, not an answer to a user.
"""

from __future__ import annotations


class MissingDependencyError(ImportError):
    """A package this feature needs is not installed; the message says what to `pip install`."""
