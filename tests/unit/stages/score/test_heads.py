"""The reward_heads stage: a real Bradley-Terry head from ingested pairs, and option errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.config import load_config
from paretohqd.errors import ConfigError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner

HEAD = """
[[reward_heads]]
name = "harmless"
sources = ["hh"]
options = {{ epochs = 20{extra} }}

[[objectives]]
name = "harmless"
scorer = "embedding-head"
model = "run:reward_heads/harmless"
"""


def test_head_trains_on_train_pairs_and_scores(tiny_config: Path) -> None:
    tiny_config.write_text(tiny_config.read_text() + HEAD.format(extra=""))
    config = load_config(tiny_config)
    Runner(config).run(until="score")
    head = config.run_dir / "reward_heads/harmless"
    assert (head / "head.safetensors").exists() and (head / "README.md").exists()
    meta = Manifest(config.run_dir).stages["reward_heads"]["metadata"]["heads"]["harmless"]
    assert meta["sources"] == ["hh"] and meta["pairs"] >= 10
    assert 0.0 <= meta["val_accuracy"] <= 1.0
    assert Manifest(config.run_dir).stages["score"]["outputs"]["scores"]["rows"] > 0


def test_unknown_training_option_is_a_one_line_error(tiny_config: Path) -> None:
    tiny_config.write_text(tiny_config.read_text() + HEAD.format(extra=", epoch = 3"))
    with pytest.raises(ConfigError, match=r"unknown option 'epoch' \(accepted: .*epochs"):
        Runner(load_config(tiny_config)).run(until="reward_heads")
