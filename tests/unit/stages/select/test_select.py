"""The select stage: exact top-k per preference ray against numpy, ties, pool growth, shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from paretohqd.atomic import write_parquet
from paretohqd.catalog import connect
from paretohqd.config import config_from_dict
from paretohqd.errors import ConfigError, DataError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner
from paretohqd.stage import Artifact, Stage, StageContext
from paretohqd.stages.select import SELECTION, SHARDS, select_stage
from paretohqd.stages.select.grid import build_grid
from paretohqd.stages.select.shards import read_front_matter

OBJECTIVES = ["harmless", "helpful"]


def _config(tmp_path: Path, **select: Any) -> Any:
    return config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "objectives": [{"name": n, "scorer": "heuristic"} for n in OBJECTIVES],
            "select": select,
        },
        base_dir=tmp_path,
        source="paretohqd.toml",
    )


def _pool(n: int, seed: int, decimals: int | None, layer_of: Any = None) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, 2)) * [2.0, 5.0] + [1.0, -3.0]
    if decimals is not None:
        raw = raw.round(decimals)
    lo, hi = raw.min(0), raw.max(0)
    norm = (raw - lo) / (hi - lo)
    layer = layer_of(norm) if layer_of else rng.integers(1, 6, size=n)
    ids = [f"{i:016x}" for i in rng.permutation(n)]
    return pl.DataFrame(
        {
            "sample_id": ids,
            "layer": pl.Series(layer, dtype=pl.Int32),
            "raw": raw.tolist(),
            "norm": norm.tolist(),
        }
    )


def _graph(pool: pl.DataFrame, k: int) -> list[Stage]:
    def produce(ctx: StageContext) -> None:
        write_parquet(ctx.path("layers"), pool)
        write_parquet(
            ctx.path("samples"),
            pl.DataFrame(
                {
                    "sample_id": pool["sample_id"],
                    "prompt_id": pool["sample_id"],
                    "prompt": "\n\nHuman: q " + pool["sample_id"] + "\n\nAssistant:",
                    "response": " a " + pool["sample_id"],
                    "source": "synthetic",
                    "split": "train",
                }
            ),
        )

    producer = Stage(
        name="pool",
        fn=produce,
        outputs=(Artifact("layers", "layers.parquet"), Artifact("samples", "samples.parquet")),
        params=lambda c: {"pool": pool.hash_rows().sum()},
    )
    sel = select_stage(
        "select",
        layers="layers",
        samples="samples",
        round_=1,
        k=k,
        selection=SELECTION,
        shards=SHARDS,
    )
    return [producer, sel]


def _reference(pool: pl.DataFrame, w: np.ndarray, k: int, max_layer: int, mode: str) -> list[str]:
    sub = pool.filter(pl.col("layer") <= max_layer)
    r = np.array(sub["norm"].to_list())
    if mode == "ray":
        v = (w - 1) / np.linalg.norm(w - 1)
        z = r - 1
        t = z @ v
        key = np.where(t >= 0, np.maximum((z * z).sum(1) - t * t, 0), (z * z).sum(1))
    else:
        key = 1 - r @ w
    order = sorted(zip(key.tolist(), sub["sample_id"].to_list(), strict=True))
    return [sid for _, sid in order[:k]]


@pytest.mark.parametrize("mode", ["ray", "linear"])
@pytest.mark.parametrize("decimals", [None, 1])
def test_top_k_matches_numpy_reference_with_ties(
    tmp_path: Path, mode: str, decimals: int | None
) -> None:
    pool = _pool(3000, seed=1, decimals=decimals)
    k = 25
    config = _config(tmp_path, k=k, layers=2, mode=mode)
    Runner(config, _graph(pool, k)).run()
    selection = pl.read_parquet(config.run_dir / "selection.parquet")
    for pref in build_grid("simplex", 2, step=0.1):
        got = selection.filter(pl.col("pref_id") == pref.pref_id).sort("rank")["sample_id"]
        assert got.to_list() == _reference(pool, np.array(pref.weights), k, 2, mode), pref


def test_pool_grows_until_k_and_small_pool_fails(tmp_path: Path) -> None:
    pool = _pool(200, seed=2, decimals=None, layer_of=lambda norm: np.arange(len(norm)) // 10 + 1)
    config = _config(tmp_path, k=35, layers=1)
    Runner(config, _graph(pool, 35)).run()
    meta = Manifest(config.run_dir).stages["select"]["metadata"]
    assert meta["pool"] == {"layers": 1, "max_layer": 4, "rows": 40}

    config = _config(tmp_path / "small", k=500, layers=1)
    with pytest.raises(DataError, match=r"200 rows but select\.k = 500"):
        Runner(config, _graph(pool, 500)).run()


def test_shards_cards_sql_and_incremental_rerun(tmp_path: Path) -> None:
    pool = _pool(1000, seed=3, decimals=2)
    config = _config(tmp_path, k=10, grid=[[0.0, 1.0], [0.5, 0.5]])
    Runner(config, _graph(pool, 10)).run()
    root = config.run_dir / "shards/round1"
    assert sorted(p.name for p in root.iterdir()) == ["pref-000-100", "pref-050-050"]
    card = read_front_matter(root / "pref-050-050/README.md")
    assert card is not None
    assert card["preference"] == {"harmless": 0.5, "helpful": 0.5}
    assert card["rows"] == 10 and card["k"] == 10 and card["objectives"] == OBJECTIVES
    assert set(card["normalisation"]) == set(OBJECTIVES)
    assert card["distance"]["min"] <= card["distance"]["max"]
    assert card["reproduce"] == "paretohqd run --config paretohqd.toml --only select"
    data = pl.read_parquet(root / "pref-050-050/data.parquet")
    assert {
        "prompt",
        "completion",
        "response",
        "distance",
        "layer",
        "weights",
        "harmless",
        "norm_helpful",
    } <= set(data.columns)
    assert (data["completion"] == data["response"]).all()
    con = connect(config.run_dir, [SHARDS])
    rows = con.execute("select pref_id, count(*) from shards group by 1 order by 1").fetchall()
    assert rows == [("pref-000-100", 10), ("pref-050-050", 10)]

    # Adding a preference computes only that one; the others' files are untouched.
    before = (root / "pref-050-050/data.parquet").stat().st_mtime_ns
    config = _config(tmp_path, k=10, grid=[[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    Runner(config, _graph(pool, 10)).run()
    meta = Manifest(config.run_dir).stages["select"]["metadata"]
    assert meta["recomputed"] == ["pref-100-000"]
    assert (root / "pref-050-050/data.parquet").stat().st_mtime_ns == before
    assert pl.read_parquet(config.run_dir / "selection.parquet").height == 30

    # Changing k recomputes all; dropping a preference removes its shard.
    config = _config(tmp_path, k=5, grid=[[0.0, 1.0], [1.0, 0.0]])
    Runner(config, _graph(pool, 5)).run()
    meta = Manifest(config.run_dir).stages["select"]["metadata"]
    assert meta["recomputed"] == ["pref-000-100", "pref-100-000"]
    assert sorted(p.name for p in root.iterdir()) == ["pref-000-100", "pref-100-000"]


def test_grids() -> None:
    assert len(build_grid("simplex", 2, step=0.1)) == 11
    assert len(build_grid("simplex", 3, step=0.1)) == 66
    ric = build_grid("ric13", 3)
    assert len(ric) == 13 and "pref-033-033-033" in {p.pref_id for p in ric}
    assert build_grid("simplex", 2, step=0.5)[0].pref_id == "pref-100-000"
    with pytest.raises(ConfigError, match=r"select.grid\[1\].*sum to 1"):
        build_grid([[0.5, 0.5], [0.5, 0.6]], 2)
    with pytest.raises(ConfigError, match="non-negative"):
        build_grid([[-0.5, 1.5]], 2)
    with pytest.raises(ConfigError, match="2 weights but there are 3"):
        build_grid([[0.5, 0.5]], 3)
    with pytest.raises(ConfigError, match="whole number"):
        build_grid("simplex", 2, step=0.3)
    with pytest.raises(ConfigError, match="ric13"):
        build_grid("ric13", 2)


def test_plot_selection_writes_png(tmp_path: Path) -> None:
    from paretohqd.stages.select.plot import plot_selection

    pool = _pool(500, seed=4, decimals=None)
    config = _config(tmp_path, k=5, grid=[[0.2, 0.8], [0.8, 0.2]])
    Runner(config, _graph(pool, 5)).run()
    out = plot_selection(
        config.run_dir / "layers.parquet",
        config.run_dir / "selection.parquet",
        OBJECTIVES,
        tmp_path / "sel.png",
    )
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")
    assert width > 300 and height > 300
    with pytest.raises(DataError, match="does not exist"):
        plot_selection(tmp_path / "nope.parquet", out, OBJECTIVES, tmp_path / "x.png")
