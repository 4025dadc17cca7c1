"""The reward_heads stage: a real Bradley-Terry head from ingested pairs, and option errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.config import load_config
from paretohqd.errors import ConfigError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner

# 32 training pairs cannot make a head worth trusting: the gate is tested on its own below.
HEAD = """
[[reward_heads]]
name = "harmless"
sources = ["hh"]
min_accuracy = 0.0
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


def test_encode_threads_reach_the_encoder_and_change_no_byte(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run.encode_threads`` runs the encoder's batches side by side in reward_heads and score,
    and the head and the scores are the bytes of a run without it."""
    from paretohqd.stages.kit.scoring import embedding

    used: list[int | None] = []
    side_by_side = embedding._side_by_side
    monkeypatch.setattr(embedding, "_side_by_side", lambda n: used.append(n) or side_by_side(n))
    tiny_config.write_text(tiny_config.read_text() + HEAD.format(extra=""))
    out = {}
    for threads in (None, 2):
        embedding._EMBEDDINGS.clear()  # encode everything again, not from the first run
        # Each in its own run.root: a second run under one root copies the head from the cache.
        sets = [f"run.root=runs-{threads}"] + ([f"run.encode_threads={threads}"] * bool(threads))
        config = load_config(tiny_config, sets)
        Runner(config).run(until="score")
        out[threads] = (
            (config.run_dir / "reward_heads/harmless/head.safetensors").read_bytes(),
            (config.run_dir / "scores.parquet").read_bytes(),
        )
        assert set(used) == {threads}, used  # both stages (score encodes held-out rows)
        used.clear()
    assert out[None] == out[2]


def test_unknown_training_option_is_a_one_line_error(tiny_config: Path) -> None:
    tiny_config.write_text(tiny_config.read_text() + HEAD.format(extra=", epoch = 3"))
    with pytest.raises(ConfigError, match=r"unknown option 'epoch' \(accepted: .*epochs"):
        Runner(load_config(tiny_config)).run(until="reward_heads")


TWO_HEADS = """
[[reward_heads]]
name = "harmless"
sources = ["hh"]
min_accuracy = 0.0
options = {{ epochs = {epochs} }}
{helpful}"""
HELPFUL = """
[[reward_heads]]
name = "helpful"
min_accuracy = 0.0
options = { epochs = 5 }
"""


def test_only_the_head_whose_table_changed_trains_again(tiny_config: Path) -> None:
    base = tiny_config.read_text()
    tiny_config.write_text(base + TWO_HEADS.format(epochs=5, helpful=HELPFUL))
    config = load_config(tiny_config)
    Runner(config).run(until="reward_heads")
    root = config.run_dir / "reward_heads"
    kept = (root / "helpful/head.safetensors").stat().st_mtime_ns

    tiny_config.write_text(base + TWO_HEADS.format(epochs=6, helpful=HELPFUL))
    Runner(load_config(tiny_config)).run(until="reward_heads")
    meta = Manifest(config.run_dir).stages["reward_heads"]["metadata"]
    assert (meta["trained"], meta["kept"]) == (["harmless"], ["helpful"])
    assert (root / "helpful/head.safetensors").stat().st_mtime_ns == kept
    assert meta["heads"]["helpful"]["pairs"] >= 10  # a kept head still reports its metrics
    assert 0.0 <= meta["heads"]["helpful"]["val_accuracy"] <= 1.0

    tiny_config.write_text(base + TWO_HEADS.format(epochs=6, helpful=""))
    Runner(load_config(tiny_config)).run(until="reward_heads")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["harmless"]
    assert Manifest(config.run_dir).stages["reward_heads"]["metadata"]["kept"] == ["harmless"]


def test_a_head_below_min_accuracy_fails_the_stage_and_lowering_the_bar_keeps_it(
    tiny_config: Path,
) -> None:
    from paretohqd.errors import DataError

    base = tiny_config.read_text() + HEAD.format(extra="")
    tiny_config.write_text(base.replace("min_accuracy = 0.0", "min_accuracy = 0.99"))
    config = load_config(tiny_config)
    with pytest.raises(DataError) as err:
        Runner(config).run(until="reward_heads")
    acc = load_head_metrics(config.run_dir / "reward_heads/harmless")["val_accuracy"]
    message = str(err.value)
    assert message.startswith(f"reward_heads.harmless: held-out pairwise accuracy {acc:.3f} on ")
    assert "below min_accuracy 0.99" in message and "label_map" in message
    assert "reward_heads" not in Manifest(config.run_dir).stages  # the stage is not complete

    tiny_config.write_text(base)  # the bar lowered: the head is kept, not trained again
    rows = Runner(load_config(tiny_config)).run(until="reward_heads")
    meta = Manifest(config.run_dir).stages["reward_heads"]["metadata"]
    assert meta["kept"] == ["harmless"] and meta["trained"] == []
    assert f"harmless {acc:.3f}" in meta["note"] and meta["note"] in rows[-1][2]


def test_a_head_trained_by_another_run_comes_from_the_cache(tiny_config: Path) -> None:
    tiny_config.write_text(tiny_config.read_text() + HEAD.format(extra=""))
    first = load_config(tiny_config)
    Runner(first).run(until="reward_heads")
    second = load_config(tiny_config, ["run.name=other"])
    Runner(second).run(until="reward_heads")
    meta = Manifest(second.run_dir).stages["reward_heads"]["metadata"]
    assert meta["cached"] == ["harmless"] and meta["trained"] == []
    head = "reward_heads/harmless/head.safetensors"
    assert (second.run_dir / head).read_bytes() == (first.run_dir / head).read_bytes()
    # Another seed is another head: trained, not copied.
    third = load_config(tiny_config, ["run.name=seeded", "run.seed=7"])
    Runner(third).run(until="reward_heads")
    assert Manifest(third.run_dir).stages["reward_heads"]["metadata"]["trained"] == ["harmless"]


def load_head_metrics(directory: Path) -> dict:  # type: ignore[type-arg]
    from paretohqd.stages.kit.scoring.embedding import load_head

    return dict(load_head(directory).metrics)
