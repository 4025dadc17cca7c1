"""The select stage function: nearest-to-ray (or linear) top-k per preference, then shards.

The distance work is one DuckDB query over (pool × preferences): ``arg_min(sample_id, key, n)``
keeps a few more than k rows per preference in one pass. Ties are then resolved exactly in
Python: order by (key, sample_id), and if the last kept key still equals the k-th (a tie
crosses the cut), that preference is queried again with a wider n. Only preferences whose
inputs changed are computed and rewritten; the others keep their shard files untouched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paretohqd.catalog import query_arrow, run_sql, sql_hash
from paretohqd.errors import ConfigError, DataError
from paretohqd.hashing import sha256_json
from paretohqd.stage import StageContext
from paretohqd.stages.pareto.stage import layer_bounds
from paretohqd.stages.select import SQL_FILES
from paretohqd.stages.select.grid import Preference, build_grid
from paretohqd.stages.select.shards import ShardInfo, shard_is_current, write_shard

#: Extra candidates fetched beyond k so a tie at the cut rarely needs a second query.
SLACK = 16


def pool_max_layer(sizes: Sequence[tuple[int, int]], layers: int, k: int) -> int:
    """The last layer of the pool: ``layers``, grown until the pool holds at least ``k`` rows."""
    total = 0
    for layer, n in sizes:
        total += n
        if layer >= layers and total >= k:
            return int(layer)
    raise DataError(
        f"select: the whole scored pool has {total} rows but select.k = {k}; "
        "lower select.k or score more samples"
    )


def _prefs_table(prefs: Sequence[Preference]) -> Any:
    import pyarrow as pa

    vs, svs = [], []
    for p in prefs:
        d = np.asarray(p.weights) - 1.0
        norm = float(np.linalg.norm(d))
        v = d / norm if norm > 0 else d
        vs.append(v.tolist())
        svs.append(float(v.sum()))
    return pa.table(
        {
            "pref_id": [p.pref_id for p in prefs],
            "w": [list(p.weights) for p in prefs],
            "v": vs,
            "sv": svs,
        }
    )


def top_k(
    con: Any, sql: str, *, prefs: Sequence[Preference], k: int, max_layer: int, pool_size: int
) -> dict[str, list[tuple[str, float]]]:
    """Exact top-k (key ascending, then sample_id) per preference as ``(sample_id, key)``."""
    con.register("prefs", _prefs_table(prefs))
    out: dict[str, list[tuple[str, float]]] = {}
    todo = [p.pref_id for p in prefs]
    n = min(k + SLACK, pool_size)
    while todo:
        rows = run_sql(con, sql, {"max_layer": max_layer, "n": n, "only": todo}).fetchall()
        retry = []
        for pid, ids, keys in rows:
            ranked = sorted(zip(keys, ids, strict=True))
            complete = len(ranked) >= pool_size or ranked[-1][0] > ranked[k - 1][0]
            if complete:
                out[pid] = [(sid, key) for key, sid in ranked[:k]]
            else:
                retry.append(pid)
        todo, n = retry, min(n * 4, pool_size)
    con.unregister("prefs")
    return out


def run_select(
    ctx: StageContext,
    *,
    roles: Mapping[str, str],
    round_: int,
    k: int,
    selection: str,
    shards: str,
    mode: str | None = None,
) -> dict[str, Any]:
    """Select k rows per preference and write the selection table and the shards."""
    import polars as pl

    from paretohqd.atomic import write_parquet
    from paretohqd.stages.select.shards import remove_stale_shards

    cfg = ctx.config.select
    mode = mode or cfg.mode
    objectives = ctx.config.pareto_objectives
    prefs = build_grid(cfg.grid, len(objectives), step=cfg.step)
    if mode == "ray" and len(objectives) == 1:
        raise ConfigError(
            "select.mode = 'ray' needs at least two objectives (the ray from the ideal point "
            "toward w is undefined for one); use select.mode = 'linear'"
        )
    sql = "select_ray.sql" if mode == "ray" else "select_linear.sql"
    shard_root = ctx.path(shards)
    con = ctx.duckdb(roles)
    try:
        sizes = run_sql(con, "select_pool_sizes.sql").fetchall()
        max_layer = pool_max_layer(sizes, cfg.layers, k)
        pool_size = sum(n for layer, n in sizes if layer <= max_layer)
        bounds = layer_bounds(con, objectives)
        sources = {role: ctx.hasher.path(ctx.path(name)) for role, name in roles.items()}
        base = {
            "version": ctx.stage.version,
            "sql": {f: sql_hash(f) for f in SQL_FILES},
            "sources": sources,
            "objectives": objectives,
            "mode": mode,
            "k": k,
            "max_layer": max_layer,
        }
        hashes = {p.pref_id: sha256_json({**base, "weights": p.weights}) for p in prefs}
        pending = [
            p for p in prefs if not shard_is_current(shard_root / p.pref_id, hashes[p.pref_id])
        ]
        picked = (
            top_k(con, sql, prefs=pending, k=k, max_layer=max_layer, pool_size=pool_size)
            if pending
            else {}
        )
        frames = []
        for p in pending:
            keys = np.array([key for _, key in picked[p.pref_id]])
            dist = np.sqrt(np.maximum(keys, 0)) if mode == "ray" else keys
            frames.append(
                pl.DataFrame(
                    {
                        "pref_id": p.pref_id,
                        "rank": np.arange(1, len(keys) + 1, dtype=np.int32),
                        "sample_id": [sid for sid, _ in picked[p.pref_id]],
                        "distance": dist,
                    }
                )
            )
        rows = None
        if frames:
            con.register("picked", pl.concat(frames).to_arrow())
            rows = pl.from_arrow(query_arrow(con, "select_shard_rows.sql"))
            assert isinstance(rows, pl.DataFrame)
    finally:
        con.close()

    by_pref: dict[Any, Any] = {}
    if isinstance(rows, pl.DataFrame):
        by_pref = rows.partition_by("pref_id", as_dict=True)
    config_path = (
        os.path.relpath(ctx.config.source)
        if os.path.isabs(ctx.config.source)
        else (ctx.config.source)
    )
    command = f"paretohqd run --config {config_path} --only {ctx.stage.name}"
    diagnostics: dict[str, Any] = {}
    for p in pending:
        frame = by_pref[(p.pref_id,)]
        frame = _with_objective_columns(frame, p, objectives)
        info = ShardInfo(
            pref=p,
            objectives=objectives,
            round_=round_,
            mode=mode,
            k=k,
            layers=cfg.layers,
            max_layer=max_layer,
            pool_size=pool_size,
            bounds=bounds,
            sources=sources,
            selection_hash=hashes[p.pref_id],
            command=command,
        )
        diagnostics[p.pref_id] = write_shard(shard_root / p.pref_id, frame, info)
    remove_stale_shards(shard_root, {p.pref_id for p in prefs})

    # The selection table is small (prefs × k): rebuild it from every current shard.
    tables = [
        pl.read_parquet(
            shard_root / p.pref_id / "data.parquet",
            columns=["pref_id", "rank", "sample_id", "distance", "layer", "weights"],
        )
        for p in prefs
    ]
    write_parquet(ctx.path(selection), pl.concat(tables))
    return {
        "round": round_,
        "mode": mode,
        "k": k,
        "preferences": len(prefs),
        "recomputed": [p.pref_id for p in pending],
        "pool": {"layers": cfg.layers, "max_layer": max_layer, "rows": pool_size},
        "normalisation": bounds,
        "diagnostics": diagnostics,
    }


def _with_objective_columns(frame: Any, pref: Preference, objectives: Sequence[str]) -> Any:
    """Add the weights and one raw and one normalised column per objective (SQL-friendly)."""
    import polars as pl

    cols = [pl.lit(list(pref.weights), dtype=pl.List(pl.Float64)).alias("weights")]
    for i, name in enumerate(objectives):
        cols.append(pl.col("raw").list.get(i).alias(name))
        cols.append(pl.col("norm").list.get(i).alias(f"norm_{name}"))
    return frame.with_columns(cols)
