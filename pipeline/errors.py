"""User-facing error types.

Each kind of user mistake has its own exception type, raised at the edge with the file, row or
key that is wrong and how to fix it. The CLI prints these in one or two lines without a
traceback (``--debug`` shows it), and so it does the OS errors the machine causes
(:func:`describe_os_error`: a full disk, a read-only directory); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno


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


#: The OS errors the machine causes rather than a bug, by errno: what happened, what to do.
_OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EFBIG: ("file too large for the file system", "use another file system"),
    errno.EROFS: ("read-only file system", "use a writable place"),
    errno.EACCES: ("permission denied", "make the directory writable for this user"),
    errno.EPERM: ("operation not permitted", "make the directory writable for this user"),
    errno.EIO: ("input/output error", "check the disk"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n)"),
    errno.ENFILE: ("too many open files on the system", "close other programs"),
    errno.EISDIR: ("a directory is in the way", "move it away"),
    errno.ENOTDIR: ("a file is in the way (a folder of the path is a file)", "move it away"),
}


def describe_os_error(exc: OSError) -> str | None:
    """``what happened: PATH; what to do`` for an OS error the machine caused (disk full, a
    read-only or unwritable directory, ...); ``None`` for any other ``OSError``, which is a
    bug and keeps its traceback."""
    known = _OS_ERRORS.get(exc.errno or 0)
    if known is None:
        return None
    what, todo = known
    where = f": {exc.filename}" if exc.filename else ""
    return f"{what}{where}; {todo}"
