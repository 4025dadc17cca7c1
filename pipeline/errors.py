"""User-facing error types.

Each kind of user mistake has its own exception type, raised at the edge with the file, row or
key that is wrong and how to fix it. The CLI prints these in one or two lines without a
traceback (``--debug`` shows it), and so it does the OS errors the machine causes
(:func:`describe_os_error`: a full disk, a read-only directory); anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno

#: The command line's exit codes, one per kind of outcome a script may act on differently.
EXIT_OK = 0
#: ``status --check``: some stage is stale, missing or running (like ``git diff --exit-code``).
EXIT_NOT_FRESH = 1
#: A usage error: an unknown command or option, an option value of the wrong shape.
EXIT_USAGE = 2
#: The input is wrong: the config, a ``--set``, the data, a model, a stage that cannot run.
EXIT_USER = 3
#: Another process is running in the same run directory: wait and retry, or use another name.
EXIT_BUSY = 4
#: The machine refused: a full disk, a read-only or unwritable directory.
EXIT_ENVIRONMENT = 5
#: Interrupted (Ctrl-C, SIGINT); completed stages are kept and a rerun resumes.
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_NOT_FRESH: "status --check: a stage is stale, missing or running",
    EXIT_USAGE: "usage error: unknown command or option, malformed option value",
    EXIT_USER: "the input is wrong: config, --set, data, model, or a stage that cannot run",
    EXIT_BUSY: "another process is running in the run directory",
    EXIT_ENVIRONMENT: "the machine refused: disk full, read-only or unwritable directory",
    EXIT_INTERRUPTED: "interrupted; a rerun resumes",
}


class ParetoHqDError(Exception):
    """Base class of every error whose message is meant for the user."""

    #: What ``paretohqd`` exits with when this error ends a command.
    exit_code = EXIT_USER


class UsageError(ParetoHqDError):
    """A command-line option's value is malformed (checked by the command, not the parser)."""

    exit_code = EXIT_USAGE


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

    exit_code = EXIT_BUSY


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
