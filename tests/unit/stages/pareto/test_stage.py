"""The pareto stage: min-max normalisation over the pool, layers, and its input errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from paretohqd.atomic import write_parquet
from paretohqd.config import config_from_dict
from paretohqd.errors import DataError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner
from paretohqd.stage import Artifact, Stage, StageContext
from paretohqd.stages.kit.pareto.nds import nondominated_layers
from paretohqd.stages.pareto import LAYERS, pareto_stage


def _config(tmp_path: Path, names: list[str], **pareto: Any) -> Any:
    return config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "objectives": [{"name": n, "scorer": "heuristic"} for n in names],
            "pareto": pareto,
        },
        base_dir=tmp_path,
        source="test",
    )


def _graph(scores: pl.DataFrame, splits: list[str]) -> list[Stage]:
    def produce(ctx: StageContext) -> None:
        ids = scores["sample_id"]
        write_parquet(
            ctx.path("samples"),
            pl.DataFrame(
                {
                    "sample_id": ids,
                    "prompt_id": ids,
                    "prompt": "p",
                    "response": "r",
                    "source": "s",
                    "split": splits,
                }
            ),
        )
        write_parquet(ctx.path("scores"), scores)

    producer = Stage(
        name="inputs",
        fn=produce,
        outputs=(Artifact("samples", "samples.parquet"), Artifact("scores", "scores.parquet")),
        params=lambda c: {"h": int(scores.hash_rows().sum()), "s": splits},
    )
    return [producer, pareto_stage("pareto", "samples", "scores", LAYERS)]


def _scores(n: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "sample_id": [f"{i:016x}" for i in range(n)],
            "a": rng.normal(size=n).round(1),
            "b": rng.normal(size=n) * 10,
            "c": rng.random(n),
        }
    )


def test_layers_and_normalisation_over_the_pool(tmp_path: Path) -> None:
    scores = _scores(400)
    splits = ["train"] * 350 + ["eval"] * 50
    config = _config(tmp_path, ["a", "b", "c"], objectives=["b", "a"])
    Runner(config, _graph(scores, splits)).run()
    layers = pl.read_parquet(config.run_dir / "layers.parquet").sort("sample_id")
    pool = scores.head(350)
    assert layers["sample_id"].to_list() == pool["sample_id"].to_list()  # eval rows left out
    raw = pool.select("b", "a").to_numpy()
    norm = (raw - raw.min(0)) / (raw.max(0) - raw.min(0))
    assert np.allclose(np.array(layers["norm"].to_list()), norm)
    assert np.allclose(layers["norm_b"].to_numpy(), norm[:, 0])
    assert (layers["layer"].to_numpy() == nondominated_layers(norm)).all()
    meta = Manifest(config.run_dir).stages["pareto"]["metadata"]
    assert meta["normalisation"]["b"] == {"min": raw[:, 0].min(), "max": raw[:, 0].max()}
    assert set(meta["normalisation"]) == {"a", "b"}


def test_nan_flat_and_missing_objectives_fail_clearly(tmp_path: Path) -> None:
    scores = _scores(50).with_columns(
        pl.when(pl.col("sample_id") == f"{7:016x}")
        .then(float("nan"))
        .otherwise(pl.col("a"))
        .alias("a")
    )
    with pytest.raises(DataError, match=f"objective 'a' is nan for sample {7:016x}"):
        Runner(_config(tmp_path / "nan", ["a", "b"]), _graph(scores, ["train"] * 50)).run()

    flat = _scores(50).with_columns(pl.lit(2.0).alias("c"))
    with pytest.raises(DataError, match=r"c \(all = 2\) have max == min"):
        Runner(_config(tmp_path / "flat", ["a", "c"]), _graph(flat, ["train"] * 50)).run()

    with pytest.raises(DataError, match="no column for objective"):
        Runner(_config(tmp_path / "miss", ["a", "zz"]), _graph(_scores(50), ["train"] * 50)).run()
