"""The score stage function: every objective over every sample, as resumable parts.

Work is split into parts of ``score.part_size`` rows. Part ``i`` is :func:`score_samples_part`,
a plain function of (:class:`ScoreSpec`, ``i``) that the engine's executor runs
(:meth:`~paretohqd.stage.StageContext.map_parts`): it rebuilds the scorers from the spec once
per process and scores the rows through :func:`score_part`. Each part is written atomically
with its counters in the Parquet metadata, so a killed run resumes at the first missing part
with no lost or duplicated rows, and the manifest's counters add up across attempts.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paretohqd.errors import DataError
from paretohqd.executor import worker_state
from paretohqd.stage import StageContext
from paretohqd.stages.kit.scoring.run import (
    STATS_KEY,
    ScoringSpec,
    score_part,
    scoring_spec,
    worker_scorers,
)

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class ScoreSpec:
    """Everything a score part needs, picklable: the samples file, rows per part, and how to
    rebuild the scorers."""

    samples: Path
    part_size: int
    scoring: ScoringSpec


def score_samples_part(spec: ScoreSpec, index: int) -> pa.Table:
    """Part ``index``: rows ``[index * part_size, (index + 1) * part_size)`` of the samples,
    scored by every objective (the samples table is read once per process; sentence encoders
    on ``run.encode_threads``)."""
    import polars as pl

    from paretohqd.stages.kit.scoring.embedding import encode_threads

    rows = worker_state(
        "score.samples",
        {"path": str(spec.samples), "key": spec.scoring.key},
        lambda: pl.read_parquet(spec.samples),
    )
    scorers, cache = worker_scorers(spec.scoring)
    with encode_threads(spec.scoring.config.run.encode_threads):
        return score_part(rows.slice(index * spec.part_size, spec.part_size), scorers, cache)


def run_score(ctx: StageContext, *, samples: str, output: str) -> Mapping[str, Any]:
    """Score every row of the ``samples`` artifact part by part, then assemble ``output``."""
    import polars as pl
    import pyarrow as pa

    from paretohqd.atomic import write_parquet

    cfg = ctx.config.score
    rows = pl.read_parquet(ctx.path(samples))
    if rows.height == 0:
        raise DataError(f"score: {ctx.artifacts[samples].path} is empty; check its stage")
    spec = ScoreSpec(samples=ctx.path(samples), part_size=cfg.part_size, scoring=scoring_spec(ctx))
    # Loaded through the workers' state, so the local map reuses them rather than loading them
    # twice; this reference outlives the map (which drops worker state) for the identities.
    scorers, _ = worker_scorers(spec.scoring, ctx.hasher)
    n_parts = math.ceil(rows.height / cfg.part_size)
    sizes = [min(cfg.part_size, rows.height - i * cfg.part_size) for i in range(n_parts)]
    run = ctx.map_parts(score_samples_part, spec, n_parts, sizes=sizes, unit="sample")

    totals: dict[str, Counter[str]] = {s.name: Counter() for s in scorers}
    tables = []
    for table in ctx.read_parts():
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
    ctx.parts().clear()
    return {
        "scorers": {s.name: s.identity() for s in scorers},
        "counts": {name: dict(c) for name, c in totals.items()},
        "parts": run.parts,
        "resumed_parts": run.resumed,
        "empty_response_policy": cfg.empty_response,
        "means": {s.name: float(np.mean(scores.column(s.name).to_numpy())) for s in scorers},
    }
