"""Per-objective raw bounds of a layers table (``sql/layer_bounds.sql``): the normalisation of
its pool, for the shard cards and the default evaluation bounds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def layer_bounds(con: Any, objectives: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-objective raw min/max over a ``layers`` view: the normalisation of its pool, for the
    shard cards and the default evaluation bounds."""
    from paretohqd.catalog import run_sql

    rows = {int(pos): (lo, hi) for pos, lo, hi in run_sql(con, "layer_bounds.sql").fetchall()}
    return {
        name: {"min": float(rows[i + 1][0]), "max": float(rows[i + 1][1])}
        for i, name in enumerate(objectives)
    }
