"""The select stage function: nearest-to-ray (or linear) top-k per preference, then shards.

The pool is the first ``select.layers`` Pareto layers, grown layer by layer until it holds
``pool_factor × k × |grid|`` rows (or ``pool_rows``): only then can each preference find rows
of its own. After selection the pairwise overlap of the shards is measured and written next to
them, into the manifest and into every shard's card.

The distance work is one DuckDB query over (pool × preferences): ``arg_min(sample_id, key, n)``
keeps a few more than k rows per preference in one pass. Ties are then resolved exactly in
Python: order by (key, sample_id), and if the last kept key still equals the k-th (a tie
crosses the cut), that preference is queried again with a wider n. Only preferences whose
inputs changed are computed and rewritten; the others keep their shard files untouched.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.atomic import write_parquet
from paretohqd.catalog import query_arrow, run_sql, sql_hash
from paretohqd.errors import ConfigError, DataError
from paretohqd.hashing import sha256_json
from paretohqd.stage import StageContext
from paretohqd.stages.kit.cards import (
    ShardInfo,
    diagnostics,
    read_shard_meta,
    remove_stale_shards,
    shard_is_current,
    shard_meta,
    write_card,
    write_repo_card,
    write_shard_data,
)
from paretohqd.stages.kit.hub import dataset_keys
from paretohqd.stages.kit.pareto.bounds import layer_bounds
from paretohqd.stages.kit.preferences import Preference, adjacent_pairs, build_grid
from paretohqd.stages.select import SQL_FILES
from paretohqd.stages.select.overlap import overlap_summary, shard_overlap

#: Extra candidates fetched beyond k so a tie at the cut rarely needs a second query.
SLACK = 16
#: Selection keys (squared distances, or 1 − w·r̃) are rounded to this many decimal places, so
#: geometrically equal distances compare equal and fall to the sample_id tie-break. (In SQL:
#: ``round(key * 1e12) / 1e12``, which DuckDB computes 5× faster than ``round(key, 12)``.)
KEY_DECIMALS = 12
#: Enters every shard's ``selection_hash`` (what SFT keys its adapters on). Bump it when the
#: rows a shard holds could change; a change to the cards alone bumps only the stage's version,
#: so existing shards keep their hashes and their adapters.
ROWS_VERSION = "4"


def pool_target(k: int, n_prefs: int, *, pool_factor: float, pool_rows: int | None) -> int:
    """Rows the pool should hold: ``pool_rows``, else ``pool_factor × k × |grid|`` (at least k).

    With k rows per preference and |grid| preferences, a pool of k × |grid| rows is the
    smallest in which every preference *could* get rows of its own; a smaller pool forces the
    shards to share (measured before this rule: 134 distinct rows in 11 × 100).
    """
    if pool_rows is not None:
        return max(pool_rows, k)
    return max(math.ceil(pool_factor * k * n_prefs), k)


def pool_max_layer(sizes: Sequence[tuple[int, int]], layers: int, target: int, k: int) -> int:
    """The last layer of the pool: at least ``layers``, grown until it holds ``target`` rows.

    When the whole scored pool is smaller than ``target`` every layer is used; it must hold at
    least ``k`` rows.
    """
    total, last = 0, 0
    for layer, n in sizes:
        total += n
        last = int(layer)
        if layer >= layers and total >= target:
            return last
    if total < k:
        raise DataError(
            f"select: the whole scored pool has {total} rows but select.k = {k}; "
            "lower select.k or score more samples"
        )
    return last


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
        params = {"max_layer": max_layer, "n": n, "only": todo, "scale": 10.0**KEY_DECIMALS}
        rows = run_sql(con, sql, params).fetchall()
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
    overlap: str,
    mode: str | None = None,
) -> dict[str, Any]:
    """Select k rows per preference; write the selection table, the shards and their overlap."""
    cfg = ctx.config.select
    mode = mode or cfg.mode
    objectives = ctx.config.pareto_objectives
    prefs = build_grid(cfg.grid, len(objectives), step=cfg.step)
    if mode == "ray" and len(objectives) == 1:
        raise ConfigError(
            "select.mode = 'ray' needs at least two objectives (the ray from the ideal point "
            "toward w is undefined for one); use select.mode = 'linear'"
        )
    target = pool_target(k, len(prefs), pool_factor=cfg.pool_factor, pool_rows=cfg.pool_rows)
    shard_root = ctx.path(shards)
    request = _Request(prefs, objectives, mode, k, round_, target, shard_root)
    picked = _pick(ctx, roles, request)
    metas = _write_pending_shards(ctx, request, picked)
    remove_stale_shards(shard_root, {p.pref_id for p in prefs})

    table = _selection_table(shard_root, prefs, picked.hashes)
    write_parquet(ctx.path(selection), table)
    pairs = overlap_pairs(table)
    write_parquet(ctx.path(overlap), pairs)
    summary = overlap_summary(pairs, table, prefs)
    pool = {
        "layers": cfg.layers,
        "max_layer": picked.max_layer,
        "rows": picked.pool_size,
        "target_rows": target,
        "short": picked.pool_size < target,
    }
    cards = _write_cards(ctx, shard_root, prefs, metas, pairs, table, summary, pool)
    write_repo_card(
        shard_root,
        cards,
        dataset_keys(
            ctx.config,
            table.height,
            tags=[f"round-{round_}", mode],
            pretty_name=f"{ctx.config.run.name} round-{round_} shards ({mode})",
        ),
        {
            "round": round_,
            "mode": mode,
            "k": k,
            "objectives": objectives,
            "pool": pool,
            "overlap": summary,
            "reproduce": next(iter(cards.values()))["reproduce"],
        },
    )
    return {
        "round": round_,
        "mode": mode,
        "k": k,
        "preferences": len(prefs),
        "recomputed": [p.pref_id for p in picked.pending],
        "pool": pool,
        "normalisation": picked.bounds,
        "overlap": summary,
        "diagnostics": {pid: diagnostics(meta) for pid, meta in metas.items()},
    }


@dataclass(frozen=True)
class _Request:
    """What one run of the stage asks for: the grid, objectives, mode, k, round, the pool's
    target size and where the shards live."""

    prefs: list[Preference]
    objectives: list[str]
    mode: str
    k: int
    round_: int
    target: int
    shard_root: Path


@dataclass(frozen=True)
class _Picked:
    """What the DuckDB pass decided: the pool, each shard's rows and hash, what to rewrite."""

    max_layer: int
    pool_size: int
    bounds: Any
    sources: dict[str, Any]
    hashes: dict[str, str]
    pending: list[Preference]
    rows: Any  # the pending shards' rows (polars), or None when nothing is pending


def _pick(ctx: StageContext, roles: Mapping[str, str], request: _Request) -> _Picked:
    """Size the pool, take each preference's top k, and fetch the rows of changed shards.

    Everything that reads the catalog happens here, on one connection that is always closed;
    a shard whose hash is unchanged is left out of ``pending`` and its rows are not fetched.
    """
    cfg = ctx.config.select
    prefs, objectives, mode, k = request.prefs, request.objectives, request.mode, request.k
    con = ctx.duckdb(roles)
    try:
        sizes = run_sql(con, "select_pool_sizes.sql").fetchall()
        max_layer = pool_max_layer(sizes, cfg.layers, request.target, k)
        pool_size = sum(n for layer, n in sizes if layer <= max_layer)
        bounds = layer_bounds(con, objectives)
        sources = {role: ctx.hasher.path(ctx.path(name)) for role, name in roles.items()}
        base = {
            "version": ROWS_VERSION,
            "sql": {f: sql_hash(f) for f in SQL_FILES},
            "sources": sources,
            "objectives": objectives,
            "mode": mode,
            "k": k,
        }
        sql = "select_ray.sql" if mode == "ray" else "select_linear.sql"
        picked = top_k(con, sql, prefs=prefs, k=k, max_layer=max_layer, pool_size=pool_size)
        # A shard is identified by what it holds, not by the pool it came from: growing the
        # pool (a larger grid or k) keeps every shard whose rows stay the same, and so its SFT.
        hashes = {
            p.pref_id: sha256_json({**base, "weights": p.weights, "rows": picked[p.pref_id]})
            for p in prefs
        }
        pending = [
            p
            for p in prefs
            if not shard_is_current(request.shard_root / p.pref_id, hashes[p.pref_id])
        ]
        rows = _shard_rows(con, mode, pending, picked)
    finally:
        con.close()
    return _Picked(max_layer, pool_size, bounds, sources, hashes, pending, rows)


def _write_pending_shards(
    ctx: StageContext, request: _Request, picked: _Picked
) -> dict[str, dict[str, Any]]:
    """Write the data of every pending shard; return their card metadata by pref_id.

    The cards themselves are written later, once the overlap with every shard is known.
    """
    cfg = ctx.config.select
    config_path = (
        os.path.relpath(ctx.config.source)
        if os.path.isabs(ctx.config.source)
        else (ctx.config.source)
    )
    metas: dict[str, dict[str, Any]] = {}
    rows = picked.rows
    by_pref = rows.partition_by("pref_id", as_dict=True) if rows is not None else {}
    for p in picked.pending:
        frame = _with_objective_columns(by_pref[(p.pref_id,)], p, request.objectives)
        info = ShardInfo(
            pref=p,
            objectives=request.objectives,
            round_=request.round_,
            mode=request.mode,
            k=request.k,
            layers=cfg.layers,
            max_layer=picked.max_layer,
            pool_size=picked.pool_size,
            bounds=picked.bounds,
            sources=picked.sources,
            selection_hash=picked.hashes[p.pref_id],
            command=f"paretohqd run --config {config_path} --only {ctx.stage.name}",
            target_rows=request.target,
        )
        write_shard_data(request.shard_root / p.pref_id, frame)
        metas[p.pref_id] = shard_meta(frame, info)
    return metas


def _selection_table(
    shard_root: Any, prefs: Sequence[Preference], hashes: Mapping[str, str]
) -> Any:
    """The selection table, rebuilt from every current shard (kept or rewritten).

    It is small (prefs × k) and carries each shard's selection_hash, which is what the SFT
    stages key their adapters on.
    """
    import polars as pl

    return pl.concat(
        [
            pl.read_parquet(
                shard_root / p.pref_id / "data.parquet",
                columns=["pref_id", "rank", "sample_id", "distance", "layer", "weights"],
            )
            for p in prefs
        ]
    ).with_columns(
        pl.col("pref_id").replace_strict(hashes, return_dtype=pl.String).alias("selection_hash")
    )


def _shard_rows(
    con: Any,
    mode: str,
    pending: Sequence[Preference],
    picked: Mapping[str, Sequence[tuple[str, float]]],
) -> Any:
    """The shard rows (text, scores, layer, rank, distance) of the preferences to rewrite."""
    import polars as pl

    if not pending:
        return None
    frames = []
    for p in pending:
        keys = np.array([key for _, key in picked[p.pref_id]])
        frames.append(
            pl.DataFrame(
                {
                    "pref_id": p.pref_id,
                    "rank": np.arange(1, len(keys) + 1, dtype=np.int32),
                    "sample_id": [sid for sid, _ in picked[p.pref_id]],
                    "distance": np.sqrt(np.maximum(keys, 0)) if mode == "ray" else keys,
                }
            )
        )
    con.register("picked", pl.concat(frames).to_arrow())
    rows = pl.from_arrow(query_arrow(con, "select_shard_rows.sql"))
    assert isinstance(rows, pl.DataFrame)
    return rows


def overlap_pairs(selection: Any) -> Any:
    """The pairwise overlap table of a selection (``sql/select_overlap.sql``)."""
    import duckdb
    import polars as pl

    con = duckdb.connect(":memory:")
    try:
        con.register("picked", selection.select("pref_id", "sample_id").to_arrow())
        pairs = pl.from_arrow(query_arrow(con, "select_overlap.sql"))
    finally:
        con.close()
    assert isinstance(pairs, pl.DataFrame)
    return pairs


def _write_cards(
    ctx: StageContext,
    root: Any,
    prefs: Sequence[Preference],
    metas: Mapping[str, dict[str, Any]],
    pairs: Any,
    table: Any,
    summary: Mapping[str, Any],
    pool: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Every shard's card, with its overlap with the others (which any rerun can change);
    returns the project's record of each, by pref_id in grid order."""
    adjacent = adjacent_pairs(prefs)
    run = {key: summary[key] for key in ("rows", "distinct_rows", "distinct_share")}
    out: dict[str, dict[str, Any]] = {}
    for p in prefs:
        meta = metas.get(p.pref_id) or read_shard_meta(root / p.pref_id)
        if meta is None:  # pragma: no cover - a current shard always has a readable card
            raise DataError(f"select: the card of {p.pref_id} is unreadable; rerun with --force")
        meta["pool"] = dict(pool)  # a kept shard's rows came from this pool too
        meta["overlap"] = shard_overlap(p.pref_id, pairs, table, adjacent) | {"selection": run}
        standard = dataset_keys(ctx.config, meta["rows"], tags=[f"round-{meta['round']}"])
        write_card(root / p.pref_id, meta, standard)
        out[p.pref_id] = meta
    return out


def _with_objective_columns(frame: Any, pref: Preference, objectives: Sequence[str]) -> Any:
    """Add the weights and one raw and one normalised column per objective (SQL-friendly)."""
    import polars as pl

    cols = [pl.lit(list(pref.weights), dtype=pl.List(pl.Float64)).alias("weights")]
    for i, name in enumerate(objectives):
        cols.append(pl.col("raw").list.get(i).alias(name))
        cols.append(pl.col("norm").list.get(i).alias(f"norm_{name}"))
    return frame.with_columns(cols)
