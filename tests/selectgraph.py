"""A two-stage graph for select tests: a producer of a given pool, then the real select stage.

Importable as ``selectgraph`` (``tests`` is on the path), shared by the select stage's tests.
"""

from __future__ import annotations

import polars as pl

from paretohqd.atomic import write_parquet
from paretohqd.stage import Artifact, Stage, StageContext
from paretohqd.stages.select import SELECTION, SHARD_OVERLAP, SHARDS, select_stage


def select_graph(pool: pl.DataFrame, k: int) -> list[Stage]:
    """``pool`` (sample_id, layer, raw, norm) as the layers table, one sample per row, then
    round one's select stage with ``k`` rows per preference."""

    def produce(ctx: StageContext) -> None:
        write_parquet(ctx.path("layers"), pool)
        ids = pool["sample_id"]
        write_parquet(
            ctx.path("samples"),
            pl.DataFrame(
                {
                    "sample_id": ids,
                    "prompt_id": ids,
                    "prompt": "\n\nHuman: q " + ids + "\n\nAssistant:",
                    "response": " a " + ids,
                    "source": "synthetic",
                    "split": "train",
                }
            ),
        )

    producer = Stage(
        name="pool",
        fn=produce,
        outputs=(Artifact("layers", "layers.parquet"), Artifact("samples", "samples.parquet")),
        params=lambda c: {"pool": int(pool.hash_rows().sum())},
    )
    select = select_stage(
        "select",
        layers="layers",
        samples="samples",
        round_=1,
        k=k,
        selection=SELECTION,
        shards=SHARDS,
        overlap=SHARD_OVERLAP,
    )
    return [producer, select]
