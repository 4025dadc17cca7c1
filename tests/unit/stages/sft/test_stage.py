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
