"""The select stage: exact top-k per preference ray against numpy, ties, pool growth, shards."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from selectgraph import select_graph

from paretohqd.catalog import connect
from paretohqd.config import config_from_dict
from paretohqd.errors import ConfigError, DataError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner
from paretohqd.stages.kit.cards import read_shard_meta
from paretohqd.stages.kit.preferences import build_grid
from paretohqd.stages.select import SHARD_OVERLAP, SHARDS
from paretohqd.stages.select.stage import KEY_DECIMALS

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


def _reference(pool: pl.DataFrame, w: np.ndarray, k: int, max_layer: int, mode: str) -> list[str]:
    """Top k by the exact key (rational arithmetic on the stored floats), rounded like the SQL.

    Ray: squared perpendicular distance ‖z‖² − (z·d)²/‖d‖² with z = r̃ − 1, d = w − 1 (‖z‖² when
    the projection falls behind the ideal point); linear: 1 − w·r̃. Ties go to sample_id.
    """
    sub = pool.filter(pl.col("layer") <= max_layer)
    d = [Fraction(x) - 1 for x in w.tolist()]
    dd = sum(x * x for x in d)
    keys = []
    for row in sub["norm"].to_list():
        if mode == "ray":
            z = [Fraction(x) - 1 for x in row]
            zz = sum(x * x for x in z)
            zd = sum(a * b for a, b in zip(z, d, strict=True))
            key = zz - zd * zd / dd if zd >= 0 else zz
        else:
            key = 1 - sum(Fraction(x) * Fraction(c) for x, c in zip(row, w.tolist(), strict=True))
        keys.append(round(key, KEY_DECIMALS))
    order = sorted(zip(keys, sub["sample_id"].to_list(), strict=True))
    return [sid for _, sid in order[:k]]


@pytest.mark.parametrize("mode", ["ray", "linear"])
@pytest.mark.parametrize("decimals", [None, 1])
def test_top_k_matches_numpy_reference_with_ties(
    tmp_path: Path, mode: str, decimals: int | None
) -> None:
    pool = _pool(3000, seed=1, decimals=decimals)
    k = 25
    config = _config(tmp_path, k=k, layers=2, mode=mode)
    Runner(config, select_graph(pool, k)).run()
    selection = pl.read_parquet(config.run_dir / "selection.parquet")
    max_layer = Manifest(config.run_dir).stages["select"]["metadata"]["pool"]["max_layer"]
    for pref in build_grid("simplex", 2, step=0.1):
        got = selection.filter(pl.col("pref_id") == pref.pref_id).sort("rank")["sample_id"]
        want = _reference(pool, np.array(pref.weights), k, max_layer, mode)
        assert got.to_list() == want, pref


def test_pool_grows_to_factor_times_k_times_grid(tmp_path: Path) -> None:
    # 20 layers of 10 rows; 11 preferences.
    pool = _pool(200, seed=2, decimals=None, layer_of=lambda norm: np.arange(len(norm)) // 10 + 1)

    def pool_meta(name: str, k: int, **select: Any) -> Any:
        config = _config(tmp_path / name, k=k, **select)
        Runner(config, select_graph(pool, k)).run()
        return Manifest(config.run_dir).stages["select"]["metadata"]["pool"]

    # k × |grid| = 5 × 11 = 55 rows → 6 layers (60 rows)
    assert pool_meta("default", 5, layers=1) == {
        "layers": 1,
        "max_layer": 6,
        "rows": 60,
        "target_rows": 55,
        "short": False,
    }
    assert pool_meta("factor", 5, layers=1, pool_factor=2.0)["max_layer"] == 11  # 110 rows
    assert pool_meta("minimum", 5, layers=8)["max_layer"] == 8  # layers is a floor
    assert pool_meta("rows", 5, layers=1, pool_rows=21)["max_layer"] == 3  # pool_rows overrides
    assert pool_meta("k-floor", 35, layers=1, pool_rows=1)["max_layer"] == 4  # never below k
    # the target exceeds the whole pool (35 × 11 > 200): every layer, flagged short
    assert pool_meta("short", 35, layers=1) == {
        "layers": 1,
        "max_layer": 20,
        "rows": 200,
        "target_rows": 385,
        "short": True,
    }
    config = _config(tmp_path / "small", k=500, layers=1)
    with pytest.raises(DataError, match=r"200 rows but select\.k = 500"):
        Runner(config, select_graph(pool, 500)).run()


@pytest.mark.parametrize("weights", [(0.3, 0.7), (0.2, 0.5, 0.3)])
def test_equidistant_points_tie_by_sample_id(tmp_path: Path, weights: tuple[float, ...]) -> None:
    """Points on a line parallel to the ray, all at distance 0.1 from it: one tie, by id."""
    w = np.array(weights)
    m = len(w)
    v = (w - 1) / np.linalg.norm(w - 1)
    u = np.zeros(m)  # a unit vector perpendicular to v
    u[0], u[1] = v[1], -v[0]
    u /= np.linalg.norm(u)
    rng = np.random.default_rng(7)
    t = rng.uniform(0.05, 0.6, size=12)
    tied = 1 + t[:, None] * v + 0.1 * u  # 12 rows geometrically at distance 0.1
    far = 1 + t[:4, None] * v + 0.3 * u  # 4 rows farther away
    norm = np.vstack([tied, far])
    ids = [f"{i:016x}" for i in rng.permutation(len(norm))]
    frame = pl.DataFrame(
        {
            "sample_id": ids,
            "layer": pl.Series([1] * len(norm), dtype=pl.Int32),
            "raw": norm.tolist(),
            "norm": norm.tolist(),
        }
    )
    config = config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "objectives": [{"name": f"o{i}", "scorer": "heuristic"} for i in range(m)],
            "select": {"k": 5, "grid": [list(weights)]},
        },
        base_dir=tmp_path,
        source="paretohqd.toml",
    )
    Runner(config, select_graph(frame, 5)).run()
    got = pl.read_parquet(config.run_dir / "selection.parquet").sort("rank")
    assert got["sample_id"].to_list() == sorted(ids[:12])[:5]
    assert got["distance"].n_unique() == 1
    assert got["distance"][0] == pytest.approx(0.1, abs=1e-9)


def test_shards_cards_sql_and_incremental_rerun(tmp_path: Path) -> None:
    pool = _pool(1000, seed=3, decimals=2)
    config = _config(tmp_path, k=10, grid=[[0.0, 1.0], [0.5, 0.5]])
    Runner(config, select_graph(pool, 10)).run()
    root = config.run_dir / "shards/round1"
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "pref-000-100", "pref-050-050"]
    card = read_shard_meta(root / "pref-050-050")
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
    Runner(config, select_graph(pool, 10)).run()
    meta = Manifest(config.run_dir).stages["select"]["metadata"]
    assert meta["recomputed"] == ["pref-100-000"]
    assert (root / "pref-050-050/data.parquet").stat().st_mtime_ns == before
    assert pl.read_parquet(config.run_dir / "selection.parquet").height == 30

    # Changing k recomputes all; dropping a preference removes its shard.
    config = _config(tmp_path, k=5, grid=[[0.0, 1.0], [1.0, 0.0]])
    Runner(config, select_graph(pool, 5)).run()
    meta = Manifest(config.run_dir).stages["select"]["metadata"]
    assert meta["recomputed"] == ["pref-000-100", "pref-100-000"]
    assert sorted(p.name for p in root.iterdir()) == ["README.md", "pref-000-100", "pref-100-000"]


def test_overlap_table_metadata_and_cards(tmp_path: Path) -> None:
    pool = _pool(400, seed=4, decimals=None, layer_of=lambda norm: np.ones(len(norm), int))
    config = _config(tmp_path, k=20, grid=[[0.0, 1.0], [0.1, 0.9], [0.9, 0.1], [1.0, 0.0]])
    Runner(config, select_graph(pool, 20)).run()
    selection = pl.read_parquet(config.run_dir / "selection.parquet")
    sets = {
        pid: set(g["sample_id"].to_list())
        for (pid,), g in selection.group_by(["pref_id"], maintain_order=True)
    }
    pairs = pl.read_parquet(config.run_dir / "shard_overlap.parquet")
    assert pairs.height == 6  # every unordered pair, shared or not
    for row in pairs.iter_rows(named=True):
        a, b = sets[row["pref_a"]], sets[row["pref_b"]]
        assert row["pref_a"] < row["pref_b"]
        assert row["shared"] == len(a & b)
        assert row["jaccard"] == pytest.approx(len(a & b) / len(a | b))

    meta = Manifest(config.run_dir).stages["select"]["metadata"]["overlap"]
    distinct = set().union(*sets.values())
    assert meta["rows"] == 80 and meta["distinct_rows"] == len(distinct)
    assert meta["distinct_share"] == pytest.approx(len(distinct) / 80, abs=1e-4)
    ends = sets["pref-000-100"] & sets["pref-100-000"]
    assert meta["one_hot"]["pairs"] == [
        {
            "pref_a": "pref-000-100",
            "pref_b": "pref-100-000",
            "shared": len(ends),
            "jaccard": pytest.approx(
                len(ends) / len(sets["pref-000-100"] | sets["pref-100-000"]), abs=1e-4
            ),
        }
    ]
    # neighbours in weight space: (0,1)-(.1,.9) and (.9,.1)-(1,0); the middle gap is wider
    assert [(p["pref_a"], p["pref_b"]) for p in meta["adjacent"]["pairs"]] == [
        ("pref-000-100", "pref-010-090"),
        ("pref-090-010", "pref-100-000"),
    ]
    assert meta["jaccard"]["max"] == pytest.approx(pairs["jaccard"].max(), abs=1e-4)

    card = read_shard_meta(config.run_dir / "shards/round1/pref-010-090")
    assert card is not None
    others = set().union(*(v for k, v in sets.items() if k != "pref-010-090"))
    assert card["overlap"]["unique_rows"] == len(sets["pref-010-090"] - others)
    assert set(card["overlap"]["adjacent"]) == {"pref-000-100"}
    assert card["overlap"]["selection"]["distinct_rows"] == len(distinct)
    text = (config.run_dir / "shards/round1/pref-010-090/README.md").read_text()
    assert "are in no other shard" in text

    con = connect(config.run_dir, [SHARD_OVERLAP])
    assert con.execute("select count(*) from shard_overlap").fetchone() == (6,)


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
    Runner(config, select_graph(pool, 5)).run()
    plain = plot_selection(
        config.run_dir / "layers.parquet",
        config.run_dir / "selection.parquet",
        OBJECTIVES,
        tmp_path / "plain.png",
    )
    out = plot_selection(
        config.run_dir / "layers.parquet",
        config.run_dir / "selection.parquet",
        OBJECTIVES,
        tmp_path / "sel.png",
        max_layer=2,
        overlap=config.run_dir / "shard_overlap.parquet",
    )

    def size(path: Path) -> tuple[int, int]:
        header = path.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")

    assert size(plain)[0] > 300 and size(plain)[1] > 300
    assert size(out)[0] > 1.8 * size(plain)[0]  # the heatmap panel beside the scatter
    with pytest.raises(DataError, match="does not exist"):
        plot_selection(tmp_path / "nope.parquet", out, OBJECTIVES, tmp_path / "x.png")


def test_plot_reads_the_objectives_a_layers_table_was_built_over(tmp_path: Path) -> None:
    from paretohqd.stages.select.plot import objectives_of

    frame = pl.DataFrame({"sample_id": ["a"], "norm_b": [0.1], "layer": [1], "norm_a": [0.2]})
    frame.write_parquet(tmp_path / "layers.parquet")
    assert objectives_of(tmp_path / "layers.parquet") == ["b", "a"]
    assert objectives_of(tmp_path / "none.parquet") == []


def test_overlap_metadata_on_three_objectives_and_one_preference(tmp_path: Path) -> None:
    from paretohqd.stages.kit.preferences import adjacent_pairs

    rng = np.random.default_rng(11)
    raw = rng.random((600, 3))
    pool = pl.DataFrame(
        {
            "sample_id": [f"{i:016x}" for i in range(600)],
            "layer": pl.Series(rng.integers(1, 4, size=600), dtype=pl.Int32),
            "raw": raw.tolist(),
            "norm": raw.tolist(),
        }
    )

    def run(name: str, grid: Any) -> Any:
        config = config_from_dict(
            {
                "run": {"name": "r"},
                "ingest": {"sources": [{"kind": "table", "path": "x"}]},
                "objectives": [{"name": f"o{i}", "scorer": "heuristic"} for i in range(3)],
                "select": {"k": 10, "grid": grid},
            },
            base_dir=tmp_path / name,
            source="paretohqd.toml",
        )
        Runner(config, select_graph(pool, 10)).run()
        return Manifest(config.run_dir).stages["select"]["metadata"]["overlap"]

    ric = run("ric", "ric13")
    prefs = build_grid("ric13", 3)
    assert len(ric["one_hot"]["pairs"]) == 3  # the three vertices
    assert len(ric["adjacent"]["pairs"]) == len(adjacent_pairs(prefs))
    assert ric["rows"] == 130
    single = run("one", [[0.2, 0.3, 0.5]])
    assert single["rows"] == 10 and single["jaccard"] is None and single["one_hot"] is None


def test_fewer_layers_than_select_layers_uses_them_all() -> None:
    """A valid config on a pool with fewer Pareto layers than ``select.layers``: every layer
    is the pool, not an error."""
    from paretohqd.stages.select.stage import pool_max_layer

    assert pool_max_layer([(1, 20), (2, 20)], layers=5, target=100, k=5) == 2
    assert pool_max_layer([(1, 3)], layers=3, target=10, k=3) == 1
    with pytest.raises(DataError, match=r"whole scored pool has 2 rows but select\.k = 3"):
        pool_max_layer([(1, 2)], layers=1, target=10, k=3)
