"""What a selection table says about its shards, read through SQL.

Selections record per preference the weights and the hash that identifies the shard's rows;
SFT keys its adapters on that hash and regenerate picks its representatives from the weights,
both reading the declared selection table rather than the shards' human-facing cards.
"""

from __future__ import annotations

from typing import Any

from paretohqd.catalog import run_sql
from paretohqd.stage import StageContext


def shard_index(ctx: StageContext, selection: str) -> dict[str, dict[str, Any]]:
    """Per preference of the ``selection`` artifact: weights, selection_hash and rows
    (``shard_index.sql``)."""
    con = ctx.duckdb({"selection": selection})
    try:
        rows = run_sql(con, "shard_index.sql").fetchall()
    finally:
        con.close()
    return {
        pref: {"weights": list(weights), "selection_hash": h, "rows": n}
        for pref, weights, h, n in rows
    }
