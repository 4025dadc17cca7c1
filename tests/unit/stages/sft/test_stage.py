"""The sft stage's worker spec: plain values another process can receive."""

from __future__ import annotations

import pickle
from pathlib import Path

from paretohqd.executor import Item
from paretohqd.stages.kit.training.sft import SFTSettings
from paretohqd.stages.sft.stage import Shard, ShardSpec, train_shard


def test_the_worker_and_its_spec_pickle(tmp_path: Path) -> None:
    spec = ShardSpec("m", SFTSettings(steps=3), tmp_path / "shards", ["a", "b"])
    item = Item("pref-000-100", {"shard": "h"}, Shard([0.0, 1.0], tmp_path / "round1"))
    worker, spec2, item2 = pickle.loads(pickle.dumps((train_shard, spec, item)))
    assert worker is train_shard and spec2 == spec and item2 == item


def test_the_spec_carries_its_run_and_each_preference_streams_to_its_own(
    tiny_policy: Path, tmp_path: Path
) -> None:
    """The worker names its adapter's run after the stage's method and its preference: the
    tracker's directory and the run travel in the spec (pickled like the rest of it)."""
    import polars as pl
    import pytest

    pytest.importorskip("tensorboard")
    from paretohqd.stages.kit.cards import DATA
    from paretohqd.stages.kit.tracking import AdapterRun, TrackingSpec

    tracking = TrackingSpec("tensorboard", "p", "demo", str(tmp_path / "tb"))
    spec = ShardSpec(
        str(tiny_policy),
        SFTSettings(steps=2, batch_size=2, max_length=64, threads=1),
        tmp_path / "shards",
        ["a", "b"],
        AdapterRun("paretohqd_round1", tracking=tracking),
    )
    assert pickle.loads(pickle.dumps(spec)) == spec
    (tmp_path / "shards" / "pref-030-070").mkdir(parents=True)
    pl.DataFrame(
        {"prompt": ["Once upon a time", "The dog"], "completion": [" Lily", " ran"]}
    ).write_parquet(tmp_path / "shards" / "pref-030-070" / DATA)
    item = Item("pref-030-070", {"shard": "h"}, Shard([0.3, 0.7], None))
    train_shard(spec, item, "key", tmp_path / "adapters" / "pref-030-070")
    events = tmp_path / "tb" / "demo" / "paretohqd_round1" / "pref-030-070"
    assert [p.name.startswith("events.out.tfevents") for p in events.iterdir()] == [True]
    assert (tmp_path / "adapters" / "pref-030-070" / "loss.png").exists()
