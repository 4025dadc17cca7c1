"""The score stage function: every objective over every sample, as resumable parts.

Work is split into parts of ``score.part_size`` rows. Each part is a pure function of (part,
scorers) — :func:`score_part` — written atomically with its counters in the Parquet metadata,
so a killed run resumes at the first missing part with no lost or duplicated rows, and the
manifest's counters add up across attempts. That function is also the seam for a distributed
executor.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from paretohqd.errors import DataError, ModelError
from paretohqd.stage import StageContext

STATS_KEY = b"paretohqd.score.stats"


def _extras(frame: Any) -> dict[str, np.ndarray]:
    """Numeric columns the ingest readers carried through (for ``column`` scorers)."""
    import polars as pl

    return {
        name: frame[name].cast(pl.Float64).to_numpy()
        for name, dtype in frame.schema.items()
        if dtype.is_numeric()
    }


def score_part(frame: Any, scorers: Sequence[Any], cache: Any | None = None) -> Any:
    """Score one part: a table of sample_id + one float64 column per objective.

    ``frame`` has sample_id, prompt, response and any extra numeric columns. Scores found in
    ``cache`` (keyed by text hash and scorer identity) are not recomputed. Returns an Arrow
    table whose schema metadata carries the part's counters.
    """
    import pyarrow as pa

    from paretohqd.stages.kit.scoring.cache import text_keys
    from paretohqd.stages.kit.scoring.scorers import ScoreValueError

    prompts = frame["prompt"].to_list()
    responses = frame["response"].to_list()
    ids = frame["sample_id"].to_list()
    extras = _extras(frame)
    keys = text_keys(prompts, responses) if cache is not None else None
    columns: dict[str, Any] = {"sample_id": pa.array(ids, pa.string())}
    stats: dict[str, dict[str, int]] = {}
    for scorer in scorers:
        counts: Counter[str] = Counter()
        values = np.full(len(ids), np.nan)
        todo = np.ones(len(ids), dtype=bool)
        if cache is not None and keys is not None:
            hit, missing = cache.lookup(scorer, keys)
            values[~missing] = hit[~missing]
            todo = missing
            counts["cache_hits"] += int((~missing).sum())
        idx = np.flatnonzero(todo)
        if idx.size:
            try:
                out = scorer.score(
                    [prompts[i] for i in idx],
                    [responses[i] for i in idx],
                    {k: v[idx] for k, v in extras.items()},
                )
            except ScoreValueError as exc:
                sid = ids[int(idx[exc.row])]
                raise DataError(
                    f"score: objective {scorer.name!r} gave {exc.value} for sample {sid} "
                    f"(`paretohqd sql \"select * from samples where sample_id = '{sid}'\"`); "
                    "fix the scorer or drop that sample"
                ) from None
            values[idx] = out
            counts.update(scorer.last_stats)
            if cache is not None and keys is not None:
                cache.store(scorer, [keys[i] for i in idx], values[idx])
        columns[scorer.name] = pa.array(values, pa.float64())
        stats[scorer.name] = dict(counts)
    table = pa.table(columns)
    return table.replace_schema_metadata({STATS_KEY: json.dumps(stats).encode()})


def score_cache(config: Any) -> Any:
    """The score cache shared by every run under ``run.root`` (None when ``score.cache`` is off)."""
    from paretohqd.stages.kit.scoring.cache import ScoreCache

    if not config.score.cache:
        return None
    return ScoreCache(config.resolve(config.run.root) / ".cache" / "scores")


def build_scorers(ctx: StageContext) -> list[Any]:
    """Instantiate every objective's scorer (one-line errors for bad kinds, options, models)."""
    from paretohqd.stages.kit.scoring.scorers import ScorerError, build_scorer
    from paretohqd.stages.score import resolve_model

    scorers = []
    for obj in ctx.config.objectives:
        try:
            scorers.append(
                build_scorer(
                    obj.scorer,
                    name=obj.name,
                    model=resolve_model(ctx.config, obj),
                    options=obj.options,
                    base_dir=ctx.config.base_dir,
                    empty_response=ctx.config.score.empty_response,
                    hasher=ctx.hasher,
                )
            )
        except ScorerError as exc:
            raise ModelError(f"{ctx.config.source}: {exc}") from None
    return scorers


def run_score(ctx: StageContext, *, samples: str, output: str) -> Mapping[str, Any]:
    """Score every row of the ``samples`` artifact part by part, then assemble ``output``."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    from paretohqd.atomic import write_parquet

    cfg = ctx.config.score
    rows = pl.read_parquet(ctx.path(samples))
    if rows.height == 0:
        raise DataError(f"score: {ctx.artifacts[samples].path} is empty; check its stage")
    scorers = build_scorers(ctx)
    cache = score_cache(ctx.config)
    parts = ctx.parts()
    parts.drop_stale()
    n_parts = math.ceil(rows.height / cfg.part_size)
    resumed = sum(parts.done(i) for i in range(n_parts))
    bar = tqdm(
        total=rows.height,
        initial=min(resumed * cfg.part_size, rows.height),
        unit="sample",
        desc="score",
        disable=not sys.stderr.isatty() or bool(os.environ.get("CI")),
    )
    try:
        for i in range(n_parts):
            if parts.done(i):
                continue
            part = rows.slice(i * cfg.part_size, cfg.part_size)
            parts.write(i, score_part(part, scorers, cache))
            bar.update(part.height)
    finally:
        bar.close()

    totals: dict[str, Counter[str]] = {s.name: Counter() for s in scorers}
    tables = []
    for path in parts.paths():
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(STATS_KEY, b"{}"))
        for name, counts in meta.items():
            totals.setdefault(name, Counter()).update(counts)
        tables.append(table.replace_schema_metadata(None))
    scores = pa.concat_tables(tables)
    if scores.num_rows != rows.height or scores.column("sample_id").to_pylist() != (
        rows["sample_id"].to_list()
    ):
        raise DataError(
            f"score: the parts hold {scores.num_rows} rows for {rows.height} rows; "
            "rerun with --force score to rebuild them"
        )
    write_parquet(ctx.path(output), scores)
    parts.clear()
    return {
        "scorers": {s.name: s.identity() for s in scorers},
        "counts": {name: dict(c) for name, c in totals.items()},
        "parts": n_parts,
        "resumed_parts": resumed,
        "empty_response_policy": cfg.empty_response,
        "means": {s.name: float(np.mean(scores.column(s.name).to_numpy())) for s in scorers},
    }
