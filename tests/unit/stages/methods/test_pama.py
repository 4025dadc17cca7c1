"""PAMA's online loop on the real tiny policy with real (heuristic) reward scorers."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from paretohqd.config import PamaConfig
from paretohqd.stages.methods.pama import _gae, train_pama
from paretohqd.stages.models.sft import SFTSettings
from paretohqd.stages.score.scorers import build_scorer


def test_gae_matches_hand_computation() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.1]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    adv, ret = _gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.1
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])


@pytest.mark.parametrize("granularity", ["token", "batch"])
def test_pama_trains_adapter_and_value_heads(
    tiny_policy: Path, tmp_path: Path, granularity: str
) -> None:
    scorers = [
        build_scorer("heuristic", name="long", options={"metric": "verbosity"}),
        build_scorer("heuristic", name="varied", options={"metric": "repetition", "n": 2}),
    ]
    cfg = PamaConfig(steps=3, batch_size=4, max_new_tokens=12, lr=1e-3, granularity=granularity)
    settings = SFTSettings(max_length=96, seed=0)
    prompts = ["Once upon a time", "The dog", "Lily went to the park", "Tom had a ball"]
    out = tmp_path / "pama"
    metrics = train_pama(
        str(tiny_policy), prompts, scorers, [0.5, 0.5], out, settings=settings, cfg=cfg
    )
    assert metrics["steps"] == 3 and metrics["objectives_used"] == [0, 1]
    assert (out / "adapter_model.safetensors").exists()
    assert (out / "value_heads.safetensors").exists()
    log = pl.read_parquet(out / "pama_log.parquet")
    assert log.height == 3 and {"kl", "value_loss", "update_share"} <= set(log.columns)
    assert "PAMA" in (out / "README.md").read_text()
