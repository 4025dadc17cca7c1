"""The shared SFT start: which rows it trains on, and what a method starts from."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import polars as pl
import pytest

from paretohqd.config import config_from_dict
from paretohqd.errors import DataError
from paretohqd.stages.kit.policy.identity import start_model, uses_init
from paretohqd.stages.sft_init.stage import init_rows


def _config(tmp_path: Path, **extra: Any) -> Any:
    return config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "objectives": [{"name": "a", "scorer": "heuristic"}],
            "policy": {"model": "some/model"},
            **extra,
        },
        base_dir=tmp_path,
        source="paretohqd.toml",
    )


def _ctx(config: Any, **tables: pl.DataFrame) -> Any:
    def connect() -> Any:
        con = duckdb.connect()
        for name, frame in tables.items():
            con.register(name, frame.to_arrow())
        return con

    return SimpleNamespace(config=config, duckdb=connect)


SAMPLES = pl.DataFrame(
    {
        "sample_id": ["s1", "s2", "s3", "s4", "s5"],
        "prompt_id": ["p1", "p1", "p2", "p2", "p3"],
        "prompt": ["q1", "q1", "q2", "q2", "q3"],
        "response": ["good", "bad", "fine", "worse", "held out"],
        "source": "t",
        "split": ["train", "train", "train", "train", "eval"],
    }
)
PREFS = pl.DataFrame(
    {
        "prompt_id": ["p1", "p2", "p2", "p3", "p2"],
        "chosen_id": ["s1", "s3", "s3", "s5", "s4"],
        "rejected_id": ["s2", "s4", "s2", "s4", "s3"],
        "source": "t",
        "split": ["train", "train", "train", "eval", "train"],
        "tie": [False, False, False, False, True],  # a tie has no chosen side: s4 stays out
    }
)


def test_chosen_rows_once_each_and_never_held_out(tmp_path: Path) -> None:
    rows = init_rows(_ctx(_config(tmp_path), samples=SAMPLES, preferences=PREFS))
    assert sorted(rows) == [("q1", "good"), ("q2", "fine")]


def test_max_rows_is_a_seeded_sample(tmp_path: Path) -> None:
    config = _config(tmp_path, init={"max_rows": 1})
    first = init_rows(_ctx(config, samples=SAMPLES, preferences=PREFS))
    again = init_rows(_ctx(config, samples=SAMPLES, preferences=PREFS))
    assert len(first) == 1 and first == again


def test_top_layer_rows(tmp_path: Path) -> None:
    layers = pl.DataFrame({"sample_id": ["s1", "s2", "s3", "s5"], "layer": [1, 2, 1, 1]})
    config = _config(tmp_path, init={"data": "top_layer"})
    rows = init_rows(_ctx(config, samples=SAMPLES, layers=layers))
    assert sorted(rows) == [("q1", "good"), ("q2", "fine")]


def test_no_pairs_says_what_to_do(tmp_path: Path) -> None:
    empty = PREFS.filter(pl.col("split") == "none")
    with pytest.raises(DataError, match=r'init\.data = "top_layer"'):
        init_rows(_ctx(_config(tmp_path), samples=SAMPLES, preferences=empty))


def test_which_methods_start_from_the_shared_model(tmp_path: Path) -> None:
    config = _config(tmp_path, modpo={}, raco={"init": "base"}, pama={})
    assert uses_init(config) == ["modpo", "pama"]
    assert start_model(config, "sft").endswith(str(Path("r") / "models" / "sft_init"))
    assert start_model(config, "base") == "some/model"
    assert uses_init(_config(tmp_path)) == []
