"""The fuzz harness (importable as ``fuzzkit``): one malformed input per case, run through the
CLI, held to the same promises.

A case is a directory of files (a config and the data it reads), the command to run and what
must come out:

* an exit code (3 for a wrong input, 2 for a usage error, 5 where the machine refuses; 0
  where a bad row is quarantined);
* on failure, exactly one ``error:`` line that names what is at fault (file, row or key) and
  no traceback; the only other lines are the runner's progress lines of the stages before;
* no stage named in ``missing`` is complete in ``manifest.json``, so a fixed rerun redoes it;
* on success, the valid rows are all in ``samples.parquet``, unchanged, and each bad row is in
  ``quarantine.parquet`` with its row number and reason.

``outcome(case, directory)`` runs one case and returns what happened (for the report table);
``check(case, directory)`` runs it and asserts the promises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from typer.testing import CliRunner, Result

from paretohqd.cli import app

#: The five rows every data case starts from (a "table" source, prompt + response).
GOOD = [
    {"prompt": f"question {i}", "response": f"answer number {i} " + "word " * i} for i in range(5)
]
#: Their responses as ingest stores them (normalised: surrounding whitespace stripped).
GOOD_RESPONSES = tuple(r["response"].strip() for r in GOOD)

#: Runner output that is progress, not an error message.
PROGRESS = re.compile(
    r"^\S+\s+(running|ran|skipped \(fresh\)|would run)\s|^run directory: "
    r"|^\d\d:\d\d:\d\d "  # a log line (paretohqd.logs: progress of a loop that took a while)
)
#: Commands that take ``--config``; the harness passes the case's config unless the case does.
CONFIGURED = {"run", "status", "sql", "summary", "report"}


def jsonl(*extra: str | bytes, good: bool = True) -> bytes:
    """JSONL bytes: the five good rows (unless ``good`` is false), then ``extra`` lines."""
    lines = [json.dumps(r).encode() for r in GOOD] if good else []
    lines += [x if isinstance(x, bytes) else x.encode() for x in extra]
    return b"\n".join(lines) + b"\n"


def config(
    *,
    kind: str = "table",
    path: str = "d.jsonl",
    source: str = "",
    tables: str = "",
    objective: bool = True,
) -> str:
    """A config with one ingest source (``source``: extra keys of it), a heuristic objective
    (unless ``objective`` is false) and ``tables`` appended."""
    text = f'[run]\nname = "t"\n\n[[ingest.sources]]\nkind = "{kind}"\npath = "{path}"\n{source}\n'
    if objective:
        text += (
            '[[objectives]]\nname = "short"\nscorer = "heuristic"\n'
            'options = { metric = "conciseness", target = 3 }\n'
        )
    return text + tables


@dataclass(frozen=True)
class Case:
    """One malformed input and what must come of it."""

    id: str
    files: Mapping[str, bytes | str | None]  # None: a directory
    config: str | bytes | None  # None: no config file is written
    args: tuple[str, ...] = ("run", "--until", "ingest")
    code: int = 3  # paretohqd.errors.EXIT_USER; 2 is a usage error (EXIT_USAGE)
    says: tuple[str, ...] = ()  # the error line names these (file, row, key)
    missing: tuple[str, ...] = ("ingest",)  # stages that must not be complete
    complete: tuple[str, ...] = ()  # stages that must be complete
    kept: tuple[str, ...] | None = None  # exit 0: the responses in samples.parquet
    quarantined: tuple[tuple[int, str], ...] = ()  # exit 0: (row, reason fragment)
    before: tuple[tuple[str, ...], ...] = ()  # commands that must succeed first
    note: str = ""  # for the report: the bug this case found, if any


@dataclass
class Outcome:
    """What one case did."""

    code: int
    output: str
    stderr: str
    exception: BaseException | None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def error_lines(self) -> list[str]:
        """Every non-blank output line that is not a progress line."""
        return [
            line for line in self.output.splitlines() if line.strip() and not PROGRESS.match(line)
        ]


_runner = CliRunner()


def _args(case: Case, directory: Path, args: tuple[str, ...]) -> list[str]:
    cfg = directory / "paretohqd.toml"
    out = [a.replace("{dir}", str(directory)) for a in args]
    if out and out[0] in CONFIGURED and "-c" not in out and "--config" not in out:
        out += ["-c", str(cfg)]
    return out


def _write(case: Case, directory: Path) -> None:
    for name, content in case.files.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            target.mkdir()
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    if case.config is not None:
        cfg = directory / "paretohqd.toml"
        if isinstance(case.config, bytes):
            cfg.write_bytes(case.config)
        else:
            cfg.write_text(case.config)


def invoke(args: list[str]) -> Result:
    """The CLI in this process, as a user would call it."""
    return _runner.invoke(app, args)


def outcome(case: Case, directory: Path) -> Outcome:
    """Write the case's files into ``directory``, run its commands, return what happened."""
    _write(case, directory)
    for before in case.before:
        result = invoke(_args(case, directory, before))
        assert result.exit_code == 0, f"{case.id}: setup {before} failed: {result.output}"
    result = invoke(_args(case, directory, case.args))
    manifest_file = directory / "runs" / "t" / "manifest.json"
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError):  # none, or the corrupt one a case wrote: nothing complete
        manifest = {}
    exception = None if isinstance(result.exception, SystemExit) else result.exception
    return Outcome(result.exit_code, result.output, result.stderr, exception, manifest)


def check(case: Case, directory: Path) -> Outcome:
    """Run ``case`` and assert every promise of the module docstring."""
    got = outcome(case, directory)
    shown = f"{case.id}: exit {got.code}\n{got.output}"
    assert got.exception is None, f"{shown}\nuncaught {got.exception!r}"
    assert "Traceback" not in got.output, shown
    assert got.code == case.code, shown
    if case.code != 0:
        assert len(got.error_lines) == 1, f"{shown}\nexpected one error line"
        assert got.error_lines[0].startswith("error: "), shown
        errors = [x for x in got.stderr.splitlines() if x.strip() and not PROGRESS.match(x)]
        assert errors == got.error_lines[:1], shown
    for fragment in case.says:
        assert fragment in "\n".join(got.error_lines or [got.output]), f"{shown}\nno {fragment!r}"
    stages = got.manifest.get("stages", {})
    for name in case.missing if case.code != 0 else ():
        assert name not in stages, f"{shown}\nstage {name} is marked complete"
    for name in case.complete:
        assert name in stages, f"{shown}\nstage {name} is not complete"
    if case.kept is not None:
        run = directory / "runs" / "t"
        samples = pl.read_parquet(run / "samples.parquet")
        assert sorted(samples["response"].to_list()) == sorted(case.kept), shown
        quarantine = pl.read_parquet(run / "quarantine.parquet")
        rows = list(zip(quarantine["row"].to_list(), quarantine["reason"].to_list(), strict=True))
        assert len(rows) == len(case.quarantined), f"{shown}\nquarantine: {rows}"
        for (row, reason), (want_row, fragment) in zip(
            sorted(rows), sorted(case.quarantined), strict=True
        ):
            assert row == want_row and fragment in reason, f"{shown}\nquarantine: {rows}"
    return got
