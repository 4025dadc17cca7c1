"""Malformed command lines: stage names, ``--set``, ``paretohqd sql``, the other commands.

Each is one ``error:`` line: exit 2 for a usage error (click's own too: an unknown option or
command, an option value of the wrong type; one line with the ``--help`` to try), 3 for a
wrong input, 5 where the machine refuses (a directory in the way).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzzkit import Case, check, config, jsonl

DATA = {"d.jsonl": jsonl()}
CFG = config()
INGESTED = (("run", "--until", "ingest"),)


def _run(id_: str, *args: str, says: tuple[str, ...], note: str = "", code: int = 3) -> Case:
    return Case(id_, DATA, CFG, args=("run", *args), code=code, says=says, note=note)


def _sql(id_: str, *args: str, says: tuple[str, ...], note: str = "", code: int = 3) -> Case:
    """A ``paretohqd sql`` call on a run whose ingest completed; it must leave it so."""
    return Case(
        id_,
        DATA,
        CFG,
        args=("sql", *args),
        code=code,
        says=says,
        before=INGESTED,
        missing=(),
        complete=("ingest",),
        note=note,
    )


def _read_only(statement: str) -> Case:
    word = statement.split()[0].lower()
    return _sql(f"sql-{word}", statement, says=("read-only",))


CASES = [
    _run("only-unknown-stage", "--only", "nope", says=("no stage named 'nope'", "ingest, score")),
    _run("from-unknown-stage", "--from", "nope", says=("no stage named 'nope'",)),
    _run("until-unknown-stage", "--until", "nope", says=("no stage named 'nope'",)),
    _run("only-one-unknown-of-two", "--only", "ingest,nope", says=("no stage named 'nope'",)),
    _run(
        "only-no-name",
        "--only",
        ",",
        code=2,
        says=("--only was given no stage name",),
        note="ran every stage",
    ),
    _run(
        "until-empty-name",
        "--until",
        "",
        code=2,
        says=("--until was given no stage name",),
        note="ran every stage",
    ),
    _run("set-without-equals", "--set", "select.k", says=("--set 'select.k'", "section.key=value")),
    _run("set-without-key", "--set", "=3", says=("--set '=3'", "section.key=value")),
    _run(
        "set-empty-key-part",
        "--set",
        "select..k=3",
        says=("--set 'select..k=3'",),
        note="reported as unknown key `select.`",
    ),
    _run("set-unknown-key", "--set", "select.kk=3", says=("(with --set)", "`select.kk`")),
    _run("set-unknown-table", "--set", "bogus.k=3", says=("(with --set)", "unknown key `bogus`")),
    _run("set-bool-for-number", "--set", "select.k=true", says=("`select.k`", "boolean")),
    _run("set-text-for-number", "--set", "select.k=abc", says=("`select.k`", "'abc'")),
    _run("set-zero-count", "--set", "select.k=0", says=("`select.k`", "greater than")),
    _run("set-below-a-scalar", "--set", "select.k.x=3", says=("`select.k`",)),
    _run("set-scalar-over-table", "--set", "run=3", says=("`run`",)),
    _run(
        "set-list-index-out-of-range",
        "--set",
        "ingest.sources.5.limit=3",
        says=("ingest.sources.5", "not an index of a list of 1"),
    ),
    _run("set-list-index-not-a-number", "--set", "ingest.sources.x.limit=3", says=("'x'",)),
    _run("set-bad-device", "--set", "policy.device=gpu0", says=("`policy.device`", "cuda:N")),
    _run("set-bad-run-name", "--set", "run.name=../x", says=("`run.name`",)),
    Case(
        "config-path-missing",
        DATA,
        CFG,
        args=("status", "-c", "{dir}/missing.toml"),
        says=("missing.toml", "not found", "paretohqd init"),
    ),
    Case("sql-before-any-run", DATA, CFG, args=("sql", "select 1"), says=("paretohqd run",)),
    *map(
        _read_only,
        [
            "drop view samples",
            "insert into samples select * from samples",
            "delete from samples",
            "update samples set prompt = 'x'",
            "create table x as select 1",
            "copy samples to 'x.csv'",
            "attach 'x.db'",
            "set threads = 1",
            "load httpfs",
            "export database 'x'",
            "checkpoint",
            "vacuum",
        ],
    ),
    _sql("sql-select-then-drop", "select 1; drop view samples", says=("read-only", "DROP")),
    _sql(
        "sql-syntax-error",
        "select from",
        says=("SQL error: Parser Error", "line 1, column 8"),
        note="DuckDB's LINE/caret lines made it 3 lines",
    ),
    _sql(
        "sql-file-outside-run",
        "select * from read_csv('/etc/hostname')",
        says=("SQL error", "Permission Error"),
        note="3 lines",
    ),
    _sql("sql-unknown-view", "select * from nope", says=("nope does not exist", "views: samples")),
    _sql("sql-empty", "", says=("the query is empty",), note="AttributeError traceback"),
    _sql("sql-only-a-semicolon", ";", says=("the query is empty",), note="AttributeError"),
    _sql("sql-bad-format", "select 1", "--format", "xml", says=("table, csv, json",), code=2),
    _sql(
        "sql-output-into-run",
        "select 1",
        "-o",
        "{dir}/runs/t/x.parquet",
        says=("inside the run directory",),
    ),
    _sql("sql-output-not-parquet", "select 1", "-o", "{dir}/x.csv", says=("only .parquet",)),
    Case(
        "sql-output-exists",
        {**DATA, "old.parquet": "not replaced"},
        CFG,
        args=("sql", "select 1", "-o", "{dir}/old.parquet"),
        says=("old.parquet exists", "--force"),
        before=INGESTED,
        missing=(),
    ),
    Case(
        "init-onto-a-file",
        DATA,
        CFG,
        args=("init", "{dir}/d.jsonl"),
        says=("d.jsonl", "is not a directory"),
        note="FileExistsError traceback",
    ),
    Case("init-over-a-config", DATA, CFG, args=("init", "{dir}"), says=("--force",)),
    Case("report-without-evaluate", DATA, CFG, args=("report",), says=("`report`",)),
    Case(
        "plot-unknown-round",
        DATA,
        CFG,
        args=("plot", "selection", "--round", "3", "-c", "{dir}/paretohqd.toml"),
        says=("round3",),
    ),
    Case(
        "manifest-corrupt",
        {**DATA, "runs/t/manifest.json": "{not json"},
        CFG,
        args=("status",),
        says=("manifest.json", "move it away"),
    ),
    Case(
        "run-root-is-a-data-file",
        DATA,
        CFG.replace('name = "t"', 'name = "t"\nroot = "d.jsonl"'),
        says=("d.jsonl is a file", "choose another run.root"),
        note="NotADirectoryError traceback",
    ),
    Case(
        "status-with-run-root-a-file",
        DATA,
        CFG.replace('name = "t"', 'name = "t"\nroot = "d.jsonl"'),
        args=("status",),
        says=("d.jsonl is a file",),
        note="NotADirectoryError traceback",
    ),
    Case(
        "run-directory-is-a-file",
        {**DATA, "runs/t": "not a directory"},
        CFG,
        says=("runs/t is a file",),
        note="FileExistsError traceback",
    ),
    Case(
        "output-path-is-a-directory",
        {**DATA, "runs/t/samples.parquet": None},
        CFG,
        code=5,
        says=("a directory is in the way", "samples.parquet", "move it away"),
        note="IsADirectoryError traceback",
    ),
    Case(
        "lock-path-is-a-directory",
        {**DATA, "runs/t/.lock": None},
        CFG,
        code=5,
        says=("a directory is in the way", ".lock"),
        note="IsADirectoryError traceback",
    ),
    Case(
        "train-reward-missing-data",
        {},
        None,
        args=("train-reward", "{dir}/nope.jsonl", "-o", "{dir}/head"),
        says=("nope.jsonl does not exist; give a pairwise data file",),
        note="said 'ingest.sources[0].path ... relative to the config file' (there is none)",
    ),
    Case(
        "train-reward-column-without-equals",
        DATA,
        None,
        args=("train-reward", "{dir}/d.jsonl", "-o", "{dir}/head", "--column", "prompt"),
        code=2,
        says=("--column prompt", "SCHEMA=COLUMN"),
        note="ValueError traceback",
    ),
    Case(
        "train-reward-unknown-kind",
        DATA,
        None,
        args=("train-reward", "{dir}/d.jsonl", "-o", "{dir}/head", "--kind", "xml"),
        says=("train-reward", "kind", "'xml'"),
        note="named the source 'cli'",
    ),
    Case(
        "usage-unknown-option",
        DATA,
        CFG,
        args=("run", "--bogus"),
        code=2,
        says=("--bogus", "paretohqd run --help"),
        note="click's Usage line and a boxed panel (3+ lines)",
    ),
    Case(
        "usage-unknown-command",
        DATA,
        CFG,
        args=("nope",),
        code=2,
        says=("'nope'", "paretohqd --help"),
        note="click's Usage line and a boxed panel (3+ lines)",
    ),
    Case(
        "usage-round-not-a-number",
        DATA,
        CFG,
        args=("plot", "selection", "--round", "abc"),
        code=2,
        says=("--round", "paretohqd plot selection --help"),
        note="click's Usage line and a boxed panel (3+ lines)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_command_line(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)
