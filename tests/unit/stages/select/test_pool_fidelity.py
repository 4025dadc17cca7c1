"""The pool rule on a 100,000-row synthetic pool: every preference gets data of its own.

Two correlated Gaussian objectives (the shape reward-model scores tend to have), real Pareto
layers, the real select stage. With the pool grown to pool_factor × k × |grid| rows the one-hot
shards share (almost) nothing and neighbouring preferences overlap well under 0.6 on average;
with the old rule (grow only to k rows) the shards are nearly one set, which the same checks
catch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from selectgraph import select_graph

from paretohqd.config import config_from_dict
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner
from paretohqd.stages.kit.pareto.nds import nondominated_layers

N, K = 100_000, 100


def synthetic_pool(n: int, rho: float, seed: int) -> pl.DataFrame:
    """``n`` rows of two objectives with correlation ``rho``, their layers and normalisation."""
    rng = np.random.default_rng(seed)
    raw = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
    layer = nondominated_layers(raw)
    norm = (raw - raw.min(0)) / (raw.max(0) - raw.min(0))
    ids = [f"{i:016x}" for i in rng.permutation(n)]
    return pl.DataFrame(
        {
            "sample_id": ids,
            "layer": pl.Series(layer, dtype=pl.Int32),
            "raw": raw.tolist(),
            "norm": norm.tolist(),
        }
    )


def _run(tmp_path: Path, pool: pl.DataFrame, **select: Any) -> dict[str, Any]:
    config = config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "objectives": [{"name": n, "scorer": "heuristic"} for n in ("a", "b")],
            "select": {"k": K, **select},
        },
        base_dir=tmp_path,
        source="paretohqd.toml",
    )

    Runner(config, select_graph(pool, K)).run()
    overlap: dict[str, Any] = Manifest(config.run_dir).stages["select"]["metadata"]["overlap"]
    return overlap


@pytest.mark.parametrize("rho", [-0.6, 0.3])
def test_default_pool_rule_gives_each_preference_its_own_data(tmp_path: Path, rho: float) -> None:
    pool = synthetic_pool(N, rho, seed=20261129)
    overlap = _run(tmp_path / "new", pool)
    assert overlap["one_hot"]["max"] <= 0.05
    assert overlap["adjacent"]["mean"] <= 0.6
    assert overlap["distinct_share"] >= 0.5

    # The old rule (a pool of k rows) fails every one of these checks.
    old = _run(tmp_path / "old", pool, layers=1, pool_rows=K)
    assert old["one_hot"]["max"] > 0.5
    assert old["adjacent"]["mean"] > 0.6
    assert old["distinct_share"] < 0.5
