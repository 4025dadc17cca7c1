"""One run at a time per run directory.

An advisory ``flock`` on ``RUN_DIR/.lock``: the kernel drops it when the process dies, so a
killed run never leaves a stale lock behind, and a second concurrent run refuses at once.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from paretohqd.errors import LockError


class RunLock:
    """Exclusive, non-blocking lock on a run directory (a context manager)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LockError` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock_soon(fd, fcntl.LOCK_EX)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise LockError(
                f"another paretohqd process (pid {holder}) is using {self.path.parent}; "
                "wait for it to finish, or use another run name (--set run.name=...)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; the lock is the flock, not the file)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _flock_soon(fd: int, kind: int, tries: int = 5) -> None:
    """``flock`` without waiting on a run, but past a moment's probe by :func:`holder` (a
    ``status`` in another shell holds the lock shared for microseconds)."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(0.02)


def holder(run_dir: Path) -> int | None:
    """The pid of the process running in ``run_dir`` now, or ``None`` when none is (a killed
    run's lock died with it, so its stages read as interrupted, not running). ``0`` when the
    lock is held but the holder did not record its pid."""
    try:
        fd = os.open(Path(run_dir) / ".lock", os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 64, 0).decode(errors="replace").strip()
            return int(pid) if pid.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
