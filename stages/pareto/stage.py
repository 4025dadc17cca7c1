"""The pareto stage function: normalise in DuckDB, sort into layers (moocore on a small pool,
the numba kernels on a large one: :mod:`~paretohqd.stages.kit.pareto.engine`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from paretohqd.atomic import write_parquet
from paretohqd.catalog import query_arrow
from paretohqd.errors import DataError
from paretohqd.stage import StageContext


def run_pareto(ctx: StageContext, *, roles: Mapping[str, str], output: str) -> dict[str, Any]:
    """Write the layers artifact ``output`` for the samples/scores named by ``roles``."""
    import polars as pl
    import pyarrow as pa

    from paretohqd.stages.kit.pareto.engine import NonFiniteScoreError, pareto_layers

    objectives = ctx.config.pareto_objectives
    splits = ctx.config.pareto.splits
    params = {"objectives": objectives, "splits": splits}
    con = ctx.duckdb(roles)
    try:
        columns = {row[0] for row in con.execute("describe scores").fetchall()}
        missing = [o for o in objectives if o not in columns]
        if missing:
            raise DataError(
                f"pareto: scores has no column for objective(s) {', '.join(missing)} "
                f"(it has {', '.join(sorted(columns - {'sample_id'}))}); rerun the score stage"
            )
        table = query_arrow(con, "pareto_normalise.sql", params)
    finally:
        con.close()
    if table.num_rows == 0:
        raise DataError(
            f"pareto: no scored samples in splits {splits} (set pareto.splits, or check ingest)"
        )
    raw = np.asarray(table.column("raw").combine_chunks().flatten(), dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(raw))
    if bad.size:
        row, col = divmod(int(bad[0]), len(objectives))
        sid = table.column("sample_id")[row].as_py()
        raise DataError(
            f"pareto: objective {objectives[col]!r} is {raw[bad[0]]} for sample {sid} "
            f"({bad.size} non-finite score(s) in all); rescore or drop those samples"
        )
    matrix = raw.reshape(-1, len(objectives))
    bounds = [
        (name, float(lo), float(hi))
        for name, lo, hi in zip(objectives, matrix.min(0), matrix.max(0), strict=True)
    ]
    flat = [b for b in bounds if b[2] - b[1] == 0]
    if flat:
        names = ", ".join(f"{b[0]} (all = {b[1]:.6g})" for b in flat)
        raise DataError(
            f"pareto: objective(s) {names} have max == min over the pool, so they cannot be "
            "normalised or rank anything; drop them from [[objectives]] or fix their scorer"
        )
    norm_col = table.column("norm").combine_chunks()
    norm = np.asarray(norm_col.flatten(), dtype=np.float64).reshape(-1, len(objectives))
    try:
        layers, engine = pareto_layers(norm, engine=ctx.config.pareto.engine)
    except NonFiniteScoreError as exc:
        sid = table.column("sample_id")[exc.row].as_py()
        raise DataError(
            f"pareto: objective {objectives[exc.column]!r} is NaN/inf for sample {sid}; "
            "rescore or drop that sample"
        ) from None
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(pl.Series("layer", layers, dtype=pl.Int32)).with_columns(
        [pl.col("norm").list.get(i).alias(f"norm_{name}") for i, name in enumerate(objectives)]
    )
    frame = frame.select("sample_id", "layer", "raw", "norm", *[f"norm_{n}" for n in objectives])
    write_parquet(ctx.path(output), frame.sort("layer", "sample_id"))
    counts = np.bincount(layers)[1:]
    return {
        "normalisation": {b[0]: {"min": b[1], "max": b[2]} for b in bounds},
        "rows": int(table.num_rows),
        "layers": len(counts),
        "layer_sizes_first10": [int(c) for c in counts[:10]],
        "engine": engine,
        "arrow_type": str(pa.list_(pa.float64())),
    }
