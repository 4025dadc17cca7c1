"""Shard cards in the Hub's layout: a round's shards directory is a ``datasets`` repo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from selectgraph import select_graph

from paretohqd.config import config_from_dict
from paretohqd.errors import ConfigError
from paretohqd.runner import Runner
from paretohqd.stages.kit.cards import read_front_matter, read_shard_meta, shard_is_current
from paretohqd.stages.kit.hub import size_category

GRID = [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
SOURCES = [
    {"kind": "table", "path": "x", "license": "mit", "hub_id": "Anthropic/hh-rlhf"},
    {"kind": "oasst", "path": "y", "license": "apache-2.0"},
]


def _shards(tmp_path: Path) -> Path:
    """Round one's shards of three preferences, k = 10, over a random 300-row pool."""
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(300, 2))
    norm = (raw - raw.min(0)) / (raw.max(0) - raw.min(0))
    pool = pl.DataFrame(
        {
            "sample_id": [f"{i:016x}" for i in range(300)],
            "layer": pl.Series(rng.integers(1, 4, 300), dtype=pl.Int32),
            "raw": raw.tolist(),
            "norm": norm.tolist(),
        }
    )
    config = config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": SOURCES},
            "objectives": [{"name": n, "scorer": "heuristic"} for n in ("harmless", "helpful")],
            "select": {"k": 10, "grid": GRID},
        },
        base_dir=tmp_path,
        source="paretohqd.toml",
    )
    Runner(config, select_graph(pool, 10)).run()
    return config.run_dir / "shards/round1"


def test_load_dataset_gives_exactly_one_preference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    root = _shards(tmp_path)
    cache = str(tmp_path / "cache")
    for pid in ("pref-000-100", "pref-050-050"):
        got = datasets.load_dataset(str(root), pid, split="train", cache_dir=cache)
        want = pl.read_parquet(root / pid / "data.parquet")
        assert got.num_rows == want.height == 10
        assert set(got["pref_id"]) == {pid}
        assert got["sample_id"] == want["sample_id"].to_list()
    # No config: the loader asks for one instead of merging every preference into one split.
    with pytest.raises(ValueError, match="pref-100-000"):
        datasets.load_dataset(str(root), cache_dir=cache)


def test_cards_carry_the_hubs_keys_and_the_projects_under_one_key(tmp_path: Path) -> None:
    root = _shards(tmp_path)
    repo = read_front_matter(root / "README.md")
    assert repo is not None
    assert [c["config_name"] for c in repo["configs"]] == [
        "pref-000-100",
        "pref-050-050",
        "pref-100-000",
    ]
    assert repo["license"] == ["apache-2.0", "mit"]
    assert repo["task_categories"] == ["text-generation"]
    assert repo["size_categories"] == ["n<1K"]
    assert repo["source_datasets"] == ["Anthropic/hh-rlhf", "oasst"]
    assert repo["paretohqd"]["k"] == 10
    assert repo["paretohqd"]["preferences"]["pref-050-050"]["preference"] == {
        "harmless": 0.5,
        "helpful": 0.5,
    }

    card = read_front_matter(root / "pref-050-050/README.md")
    assert card is not None
    assert set(card) == {
        "license",
        "task_categories",
        "size_categories",
        "source_datasets",
        "tags",
        "paretohqd",
    }
    meta = read_shard_meta(root / "pref-050-050")
    assert meta is not None and meta["pref_id"] == "pref-050-050" and meta["rows"] == 10
    assert shard_is_current(root / "pref-050-050", meta["selection_hash"])


def test_a_card_of_the_old_flat_layout_is_not_current(tmp_path: Path) -> None:
    """Before the Hub's keys the record sat at the top level: such a shard is rewritten."""
    shard = tmp_path / "pref-000-100"
    shard.mkdir()
    (shard / "data.parquet").write_bytes(b"")
    (shard / "README.md").write_text("---\npref_id: pref-000-100\nselection_hash: h\n---\n")
    assert read_shard_meta(shard) is None
    assert not shard_is_current(shard, "h")


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_a_license_not_in_the_hubs_spelling_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ingest\.sources\.0\.license.*mit, apache-2\.0"):
        config_from_dict(
            {"ingest": {"sources": [{"kind": "table", "path": "x", "license": "MIT License"}]}},
            base_dir=tmp_path,
            source="paretohqd.toml",
        )
