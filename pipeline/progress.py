"""Progress of the long loops: a bar on a terminal, a ``logging`` line now and then off one.

Every long loop (scoring batches, the parts and items of a stage, each adapter's training
steps) reports through :func:`progress`. On a terminal a tqdm bar shows rate and ETA; in CI, a
pipe or a log file there is no bar to redraw, so the same progress goes out as a line on the
``paretohqd.progress`` logger at most every :data:`INTERVAL_S` seconds and once at the end.
The lines always reach the stage's log file (``runs/NAME/logs/<stage>.log``); the console
shows them only when it shows no bar (see :mod:`paretohqd.logs`), so nothing prints twice.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any

logger = logging.getLogger("paretohqd.progress")

#: Seconds between two progress lines of one loop (``PARETOHQD_PROGRESS_SECONDS`` overrides).
INTERVAL_S = 30.0


def bars_enabled() -> bool:
    """Whether progress draws bars: stderr is a terminal, not CI, and not ``--quiet``."""
    from paretohqd import logs

    return sys.stderr.isatty() and not os.environ.get("CI") and not logs.quiet()


def _interval() -> float:
    raw = os.environ.get("PARETOHQD_PROGRESS_SECONDS")
    try:
        return float(raw) if raw else INTERVAL_S
    except ValueError:
        return INTERVAL_S


def _clock(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """One loop's progress: ``update(n)`` as work is done, ``note(text)`` for a live figure
    (a loss), ``close()`` at the end (also as a context manager)."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        bar: bool = True,
        lines: bool = True,
    ) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self.start = int(initial)
        self.text = ""
        self.interval = _interval()
        self.t0 = self.last = time.monotonic()
        self.closed = False
        self.lines = lines
        self._bar: Any = None
        if bar and bars_enabled():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; log a line when the interval has passed."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.monotonic()
        if self.lines and now - self.last >= self.interval:
            self.last = now
            self._line("")

    def note(self, text: str) -> None:
        """Show ``text`` beside the count (e.g. ``loss 1.234``) in the bar and the lines."""
        self.text = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """End the bar and log the final line (once; only when the loop did any work)."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        # A final line for loops worth one (a second or more): the record of how long it took.
        if self.lines and self.n > self.start and time.monotonic() - self.t0 >= 1.0:
            self._line("done ")

    def _line(self, prefix: str) -> None:
        elapsed = time.monotonic() - self.t0
        done = self.n - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        left = self.total - self.n
        eta = f", eta {_clock(left / rate)}" if rate > 0 and left > 0 else ""
        speed = f"{rate:.2f}" if rate < 10 else f"{rate:.0f}"
        note = f", {self.text}" if self.text else ""
        logger.info(
            "%s: %s%d/%d %s%s in %s, %s %s/s%s%s",
            self.desc,
            prefix,
            self.n,
            self.total,
            self.unit,
            pct,
            _clock(elapsed),
            speed,
            self.unit,
            eta,
            note,
        )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: ``progress(total, desc=..., unit=..., initial=..., bar=..., lines=...)``: ``bar=False`` for
#: log lines only (a loop inside another one's bar), ``lines=False`` too for silence (a call too
#: small to report).
progress = Progress
