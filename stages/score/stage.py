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
from collections.abc import Mapping
from typing import Any

import numpy as np

from paretohqd.errors import DataError
from paretohqd.stage import StageContext
from paretohqd.stages.kit.scoring.run import STATS_KEY, build_scorers, score_cache, score_part


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
    scorers = build_scorers(ctx.config, ctx.hasher)
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
