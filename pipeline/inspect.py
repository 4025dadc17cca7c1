"""``paretohqd sql``: DuckDB over a run's completed artifacts, read-only.

Each artifact of a stage that completed (per the manifest) is a view named after it; artifacts
of a stage that was interrupted are not shown, so a partial output never looks complete.

The session cannot write. DuckDB's own parser decides each statement's type: only reading
statements (SELECT, DESCRIBE/SHOW/SUMMARIZE, PRAGMA, and EXPLAIN [ANALYZE] of those) pass.
DuckDB itself is then locked: no file access outside the run directory
(``enable_external_access = false`` with ``allowed_directories``), and no setting can be
changed back (``lock_configuration``). ``--output`` is written by Python, never inside the run,
and never over an existing file unless forced.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import ConfigError, StageError

if TYPE_CHECKING:
    import duckdb

    from paretohqd.config import Config

FORMATS = ("table", "csv", "json")
_READING = {"SELECT", "EXPLAIN", "PRAGMA"}


@dataclass
class Result:
    """Column names and rows of a query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


def sql_error(exc: BaseException) -> str:
    """DuckDB's error in one line: its first line, and where in the query (DuckDB draws that
    as a ``LINE n: ...`` line and a ``^`` marker below it)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    message = f"SQL error: {lines[0] if lines else type(exc).__name__}"
    for line, marker in itertools.pairwise(lines):
        if line.startswith("LINE ") and marker.lstrip().startswith("^"):
            head = line.split(":", 1)[0]
            column = len(marker) - len(marker.lstrip()) - len(head) - 1
            message += f" (query {head.lower()}, column {column})"
            break
    return message


@dataclass
class Session:
    """A DuckDB connection with the run's artifacts as views."""

    con: duckdb.DuckDBPyConnection
    views: list[str]
    run_dir: Path

    @classmethod
    def open(cls, config: Config) -> Session:
        """Open the run of ``config``; views only for stages the manifest records as complete."""
        import duckdb

        from paretohqd.catalog import register_views
        from paretohqd.manifest import Manifest
        from paretohqd.registry import build_graph

        run_dir = config.run_dir
        if not (run_dir / "manifest.json").exists():
            raise StageError(f"{run_dir} has no completed stage yet; run `paretohqd run` first")
        manifest = Manifest(run_dir)
        stages = [s for s in build_graph(config) if manifest.get(s.name) is not None]
        con = duckdb.connect(":memory:")
        views = register_views(con, run_dir, [a for s in stages for a in s.outputs])
        quoted = "'" + str(run_dir).replace("'", "''") + "'"
        con.execute(f"SET allowed_directories = [{quoted}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return cls(con, views, run_dir)

    def _check(self, query: str) -> None:
        import duckdb

        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as exc:
            raise ConfigError(sql_error(exc)) from None
        if not statements:
            raise ConfigError("the query is empty; give a SELECT statement (see --schema)")
        for st in statements:
            kind = st.type.name
            if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs its statement: check that one too
                kind = _explained_type(st.query)
            if kind not in _READING or kind == "EXPLAIN":
                raise ConfigError(
                    f"paretohqd sql is read-only: {kind} statements are not allowed "
                    "(use --output FILE.parquet to save a result)"
                )

    def query(self, query: str) -> Result:
        """Run a reading query and fetch everything."""
        import duckdb

        self._check(query)
        try:
            rel = self.con.execute(query)
            rows = rel.fetchall()
        except duckdb.Error as exc:
            hint = f" (views: {', '.join(self.views)})" if "does not exist" in str(exc) else ""
            raise ConfigError(f"{sql_error(exc)}{hint}") from None
        return Result([d[0] for d in rel.description or []], rows)

    def export(self, query: str, output: Path, *, force: bool = False) -> int:
        """Write a query result to Parquet (atomically); returns the row count.

        Never inside the run directory (its artifacts are the pipeline's; a file there would
        look like one), never over an existing file unless ``force``.
        """
        import duckdb

        from paretohqd.atomic import write_parquet

        self._check(query)
        if output.suffix != ".parquet":
            raise ConfigError(f"--output {output}: only .parquet files are written")
        target = output.resolve()
        if target.is_relative_to(self.run_dir.resolve()):
            raise ConfigError(
                f"--output {output}: inside the run directory {self.run_dir}, whose files are "
                "the pipeline's artifacts; write the result somewhere else"
            )
        if target.exists() and not force:
            raise ConfigError(f"--output {output} exists; pass --force to replace it")
        try:
            result = self.con.sql(query).arrow()
            table = result.read_all() if hasattr(result, "read_all") else result
        except duckdb.Error as exc:
            raise ConfigError(sql_error(exc)) from None
        write_parquet(output, table)
        return int(table.num_rows)

    def schema(self) -> list[tuple[str, str, str]]:
        """(view, column, type) for every view."""
        out = []
        for view in self.views:
            for name, typ, *_ in self.con.execute(f'describe "{view}"').fetchall():
                out.append((view, name, typ))
        return out


def _explained_type(query: str) -> str:
    """The type of the statement an ``EXPLAIN [ANALYZE]`` wraps (DuckDB's parser decides)."""
    import re

    import duckdb

    inner = re.sub(r"^\s*explain\s+(analyze\s+)?", "", query, count=1, flags=re.IGNORECASE)
    try:
        statements = duckdb.extract_statements(inner)
    except duckdb.Error:
        return "EXPLAIN"
    return statements[0].type.name if len(statements) == 1 else "EXPLAIN"


def print_result(result: Result, fmt: str, console: Any) -> None:
    """Print a result as a table, CSV or JSON (records) on stdout."""
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return
    if fmt == "json":
        records = [dict(zip(result.columns, r, strict=True)) for r in result.rows]
        sys.stdout.write(json.dumps(records, default=str, ensure_ascii=False) + "\n")
        return
    from rich.table import Table

    table = Table()
    for col in result.columns:
        table.add_column(col, overflow="fold")
    for row in result.rows:
        table.add_row(*("NULL" if v is None else _cell(v) for v in row))
    console.print(table)
    console.print(f"{len(result.rows)} rows")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


def print_schema(session: Session, console: Any) -> None:
    """List views and their columns."""
    from rich.table import Table

    table = Table(title=f"views of {session.run_dir}")
    for col in ("view", "column", "type"):
        table.add_column(col)
    for view, name, typ in session.schema():
        table.add_row(view, name, typ)
    console.print(table)


def repl(session: Session, console: Any) -> None:
    """An interactive prompt: statements end with ';', `.schema` lists views, `.quit` exits."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    console.print(f"views: {', '.join(session.views)}  (.schema, .quit; end statements with ;)")
    buffer = ""
    while True:
        try:
            line = input("sql> " if not buffer else "...> ")
        except EOFError:
            break
        stripped = line.strip()
        if not buffer and stripped in (".quit", ".exit"):
            break
        if not buffer and stripped == ".schema":
            print_schema(session, console)
            continue
        buffer += line + "\n"
        if stripped.endswith(";"):
            try:
                print_result(session.query(buffer), "table", console)
            except ConfigError as exc:
                console.print(f"error: {exc}", markup=False)
            buffer = ""
