"""Progress off a terminal: log lines at the interval and at the end, none for quick loops."""

from __future__ import annotations

import logging
import time

import pytest

from paretohqd import logs
from paretohqd.progress import progress


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> _Lines:
    handler = _Lines()
    logger = logging.getLogger("paretohqd.progress")
    logger.addHandler(handler)
    before = logger.level
    logger.setLevel(logging.INFO)
    yield handler  # type: ignore[misc]
    logger.removeHandler(handler)
    logger.setLevel(before)


def test_lines_at_each_interval_and_a_final_one(
    lines: _Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARETOHQD_PROGRESS_SECONDS", "0")
    bar = progress(4, desc="sft pref-000-100", unit="step", bar=False)
    for k in range(4):
        bar.note(f"loss {1.0 / (k + 1):.4f}")
        bar.update()
    time.sleep(1.0)  # the final line is for loops that took a second or more
    bar.close()
    assert len(lines.lines) == 5
    assert lines.lines[1].startswith("sft pref-000-100: 2/4 step (50%) in 0:00, ")
    assert lines.lines[1].endswith("loss 0.5000")
    assert lines.lines[-1].startswith("sft pref-000-100: done 4/4 step (100%)")


def test_quick_loops_and_silent_ones_log_nothing(lines: _Lines) -> None:
    with progress(3, desc="quick") as bar:  # under the interval and under a second
        bar.update(3)
    with progress(3, desc="silent", lines=False) as bar:
        bar.update(3)
    assert lines.lines == []


def test_stage_log_keeps_info_when_the_console_is_quiet(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    logs.configure(-1)
    try:
        with logs.stage_log(tmp_path, "toy"):
            logging.getLogger("paretohqd.toy").info("hello from the stage")
            logging.getLogger("paretohqd.toy").warning("a warning")
        text = (tmp_path / "logs" / "toy.log").read_text()
        assert "hello from the stage" in text and "a warning" in text
        err = capsys.readouterr().err
        assert "a warning" in err and "hello" not in err
    finally:
        logs.configure(0)
