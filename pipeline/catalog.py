"""DuckDB over the run's artifacts, and the project's SQL files.

Every Parquet artifact becomes a view named after it, so users (``paretohqd sql``), checks
(``sql/checks/``) and stages query the same names. SQL lives in files with ``$named``
parameters, bound by DuckDB, never formatted into the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import StageError

if TYPE_CHECKING:
    import duckdb

    from paretohqd.stage import Artifact


def sql_text(name: str) -> str:
    """The text of ``sql/NAME`` (``checks/x.sql`` for a check)."""
    node = resources.files("paretohqd.sql")
    for part in name.split("/"):
        node = node / part
    try:
        return node.read_text()
    except FileNotFoundError:
        raise StageError(f"SQL file sql/{name} not found in the installed package") from None


def sql_hash(name: str) -> str:
    """sha256 of an SQL file, for fingerprints."""
    return hashlib.sha256(sql_text(name).encode()).hexdigest()


def _quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def register_views(
    con: duckdb.DuckDBPyConnection, run_dir: Path, artifacts: Iterable[Artifact]
) -> list[str]:
    """Create one view per table artifact that exists on disk; return the view names."""
    names = []
    for art in artifacts:
        glob = art.view_glob
        if glob is None:
            continue
        pattern = Path(run_dir) / glob
        if "*" in glob:
            if not any(Path(run_dir).glob(glob)):
                continue
        elif not pattern.exists():
            continue
        con.execute(
            f'CREATE OR REPLACE VIEW "{art.name}" AS SELECT * FROM '
            f"read_parquet({_quote(str(pattern))}, union_by_name = true)"
        )
        names.append(art.name)
    return names


def connect(run_dir: Path, artifacts: Iterable[Artifact]) -> duckdb.DuckDBPyConnection:
    """A fresh in-memory connection with the given artifacts as views."""
    import duckdb

    con = duckdb.connect(":memory:")
    register_views(con, run_dir, artifacts)
    return con


def run_sql(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """Execute ``sql/NAME`` with ``$named`` parameters; returns the connection for fetching."""
    text = sql_text(name)
    return con.execute(text, dict(params) if params else None)


def query_arrow(
    con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None
) -> Any:
    """Run ``sql/NAME`` and return its result as an Arrow table (no extra copy of the rows)."""
    return con.sql(sql_text(name), params=dict(params) if params else None).to_arrow_table()


def run_check(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Run ``sql/checks/NAME``; any returned row is a failure, shown in the error."""
    result = con.execute(sql_text(f"checks/{name}"))
    rows = result.fetchmany(5)
    if rows:
        cols = [d[0] for d in result.description or []]
        shown = "; ".join(str(dict(zip(cols, r, strict=False))) for r in rows)
        raise StageError(f"check sql/checks/{name} failed (rows that break it: {shown})")
