"""User-facing error types.

Each kind of user mistake has its own exception type, raised at the edge with the file, row or
key that is wrong and how to fix it. The CLI prints these in one or two lines without a
traceback (``--debug`` shows it); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ParetoHqDError(Exception):
    """Base class of every error whose message is meant for the user."""


class ConfigError(ParetoHqDError):
    """The config file or a ``--set`` override is wrong (unknown key, bad type, bad value)."""


class DataError(ParetoHqDError):
    """Input data cannot be used (missing file or column, nothing valid left, NaN scores)."""


class ModelError(ParetoHqDError):
    """A model directory or hub id cannot be loaded as the kind of model the config asks for."""


class StageError(ParetoHqDError):
    """A stage cannot run: a missing upstream artifact, a failed check, an unknown stage name."""


class LockError(ParetoHqDError):
    """Another process holds the run directory."""
