"""Logging: the console's verbosity (``-v``/``-q``) and one log file per stage.

The project logs under the ``paretohqd`` logger. The library adds no handler of its own; the
command line calls :func:`configure`, which prints records on stderr at the chosen verbosity,
and the runner wraps each stage in :func:`stage_log`, which appends everything the stage logs
at INFO (DEBUG with ``-v``) to ``RUN_DIR/logs/<stage>.log`` whatever the console shows: a
quiet run still leaves a full record, and a failure's traceback is in the file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = "paretohqd"
PROGRESS = "paretohqd.progress"
_state = {"verbosity": 0, "configured": False}

_FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def verbosity() -> int:
    """-1 with ``--quiet``, 0 by default, 1 (or more) with ``--verbose``."""
    return int(_state["verbosity"])


def quiet() -> bool:
    """Whether the console shows warnings and errors only."""
    return verbosity() < 0


#: Loggers whose lines are for the stage's file: the command line prints the same on its own.
FILE_ONLY = "paretohqd.runner"


class _ConsoleFilter(logging.Filter):
    """Keep off the console what it shows another way: progress lines while bars are drawn,
    and the runner's stage lines (``run`` prints its own table of them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from paretohqd.progress import bars_enabled

        if record.name.startswith(FILE_ONLY):
            return False
        return not (record.name.startswith(PROGRESS) and bars_enabled())


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr as it is at each record (tests and tools swap ``sys.stderr``)."""

    def __init__(self) -> None:
        super().__init__()

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure(verbosity: int = 0) -> None:
    """Print the project's log records on stderr: INFO and up by default, DEBUG with
    ``verbosity > 0``, WARNING and up with ``verbosity < 0``. Idempotent per process."""
    _state["verbosity"] = verbosity
    # The libraries' own bars (transformers' "Loading weights" per model load, hub downloads)
    # would interleave with the project's progress, and print even under --quiet; a user can
    # still set HF_HUB_DISABLE_PROGRESS_BARS=0. Read when transformers is imported, which the
    # stages do after this.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(handler)
    console = _ConsoleHandler()
    console.setLevel(
        logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    )
    console.addFilter(_ConsoleFilter())
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger.addHandler(console)
    logger.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    logger.propagate = False  # one copy on the console even when a library set up the root
    _state["configured"] = True


def log_path(run_dir: Path, stage: str) -> Path:
    """Where stage ``stage`` of the run in ``run_dir`` logs."""
    return Path(run_dir) / "logs" / f"{stage}.log"


@contextmanager
def stage_log(run_dir: Path, stage: str) -> Iterator[Path]:
    """Append the project's log records to ``RUN_DIR/logs/<stage>.log`` while the block runs;
    a failure's traceback is written there before it propagates."""
    path = log_path(run_dir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(ROOT)
    level = logging.DEBUG if verbosity() > 0 else logging.INFO
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FILE_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    before = logger.level
    if before == logging.NOTSET or before > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    _to_file(handler, logging.INFO, f"stage {stage} started {started} (pid {os.getpid()})")
    try:
        yield path
    except KeyboardInterrupt:
        _to_file(handler, logging.WARNING, f"stage {stage} interrupted")
        raise
    except BaseException:
        # The console prints the error its own way (one line for a user's mistake); the file
        # keeps the whole traceback for the bug report.
        _to_file(handler, logging.ERROR, f"stage {stage} failed", sys.exc_info())
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(before)


def _to_file(handler: logging.Handler, level: int, message: str, exc_info: object = None) -> None:
    """A record for the stage's file only (not the console)."""
    record = logging.LogRecord(ROOT, level, __file__, 0, message, None, exc_info)  # type: ignore[arg-type]
    handler.handle(record)
