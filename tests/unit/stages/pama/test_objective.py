"""PAMA: its objective in the one loop on the real tiny policy with real (heuristic) reward
scorers, and the preference mapping on a bandit (a larger w_i must favour objective i)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch

from paretohqd.stages.kit.preferences import simplex_lattice
from paretohqd.stages.kit.scoring.scorers import build_scorer
from paretohqd.stages.kit.training.loop import train_adapter
from paretohqd.stages.kit.training.sft import SFTSettings
from paretohqd.stages.kit.training.solvers import (
    SolverInputError,
    pama_combined_advantage,
    pama_stream_scales,
)
from paretohqd.stages.pama.config import PamaConfig
from paretohqd.stages.pama.objective import PamaObjective, RewardMoments, gae


def test_gae_matches_hand_computation() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.1]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2 = 1.0 - 0.1
    d1 = 0.0 + 0.1 - 0.2
    d0 = 0.0 + 0.2 - 0.5
    a2, a1 = d2, d1 + 0.5 * d2
    a0 = d0 + 0.5 * a1
    assert adv.tolist()[0] == pytest.approx([a0, a1, a2])
    assert ret.tolist()[0] == pytest.approx([a0 + 0.5, a1 + 0.2, a2 + 0.1])


def test_pama_trains_adapter_and_value_heads(tiny_policy: Path, tmp_path: Path) -> None:
    """Per-batch Theorem 1 here; the loop's golden test runs the per-token default."""
    scorers = [
        build_scorer("heuristic", name="long", options={"metric": "verbosity"}),
        build_scorer("heuristic", name="varied", options={"metric": "repetition", "n": 2}),
    ]
    cfg = PamaConfig(steps=3, batch_size=4, max_new_tokens=12, lr=1e-3, granularity="batch")
    settings = SFTSettings(max_length=96, seed=0)
    prompts = ["Once upon a time", "The dog", "Lily went to the park", "Tom had a ball"]
    out = tmp_path / "pama"
    objective = PamaObjective(prompts, scorers, [0.5, 0.5], cfg, snapshots=tmp_path / ".rollout")
    metrics = train_adapter(str(tiny_policy), objective, settings, out)
    assert metrics["steps"] == 3 and metrics["objectives_used"] == [0, 1]
    assert (out / "adapter_model.safetensors").exists()
    assert (out / "value_heads.safetensors").exists()
    log = pl.read_parquet(out / "pama_log.parquet")
    assert log.height == 3 and {"kl", "value_loss", "update_share"} <= set(log.columns)
    assert "PAMA" in (out / "README.md").read_text()


def _arms(m: int) -> np.ndarray:
    """Reward vectors on a concave front: the quarter circle (M=2), the sphere's octant (M=3)."""
    if m == 2:
        theta = np.linspace(0, np.pi / 2, 21)
        return np.stack([np.cos(theta), np.sin(theta)], 1)
    x = np.array(simplex_lattice(m, 0.1))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _bandit(weights: tuple[float, ...], scales: Any, *, seed: int) -> np.ndarray:
    """PAMA on a multi-armed bandit: the expected reward vector of the final policy.

    A softmax policy over arms; per-objective value baselines (running means of each scaled
    stream, the value heads' job); advantages A_i = scaled reward − baseline; the project's
    Theorem 1 combination s*; a policy-gradient step with s* as the advantage.
    """
    arms = _arms(len(weights))
    rng = np.random.default_rng(seed)
    logits = np.zeros(len(arms))
    baseline = None
    for _ in range(400):
        p = np.exp(logits - logits.max())
        p /= p.sum()
        pick = rng.choice(len(arms), size=64, p=p)
        raw = arms[pick] + rng.normal(0, 0.05, size=(64, arms.shape[1]))
        active, scale = scales(weights)
        streams = raw[:, active] * scale
        baseline = streams.mean(0) if baseline is None else baseline
        s_star = pama_combined_advantage((streams - baseline).T)
        baseline = 0.9 * baseline + 0.1 * streams.mean(0)
        grad = np.zeros(len(arms))
        np.add.at(grad, pick, s_star)
        logits += 2.0 * (grad - s_star.sum() * p) / 64
    p = np.exp(logits - logits.max())
    return (p / p.sum()) @ arms


PREFERENCES = [(0.9, 0.1), (0.1, 0.9), (0.8, 0.1, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)]


@pytest.mark.parametrize("weights", PREFERENCES)
def test_pama_follows_the_preference_in_a_bandit(weights: tuple[float, ...]) -> None:
    favoured = int(np.argmax(weights))
    optima = np.eye(len(weights))  # objective i's optimum: the arm with r_i = 1
    finals = [_bandit(weights, pama_stream_scales, seed=seed) for seed in range(3)]
    for final in finals:
        dist = np.linalg.norm(final - optima, axis=1)
        assert int(np.argmin(dist)) == favoured, final
        assert final[favoured] > np.delete(final, favoured).max(), final
    mean = np.mean(finals, axis=0)
    assert mean[favoured] > np.delete(mean, favoured).max() + 0.03, mean


@pytest.mark.parametrize("weights", [(0.9, 0.1), (0.1, 0.9)])
def test_weighting_streams_by_w_inverts_the_preference(weights: tuple[float, ...]) -> None:
    """The old mapping (stream i × w_i) under Theorem 1's min follows the *least* weighted."""

    def by_w(w: tuple[float, ...]) -> tuple[list[int], np.ndarray]:
        arr = np.asarray(w)
        return [0, 1], arr / arr.min()

    final = _bandit(weights, by_w, seed=0)
    assert int(np.argmax(final)) != int(np.argmax(weights))


def test_stream_scales() -> None:
    active, scale = pama_stream_scales([0.5, 0.25, 0.25, 0.0], [1.0, 2.0, 0.5, 3.0])
    assert active == [0, 1, 2]
    assert scale.tolist() == pytest.approx([1.0, 1.0, 4.0])
    with pytest.raises(SolverInputError, match="no weight"):
        pama_stream_scales([0.0, 0.0])
    with pytest.raises(SolverInputError, match="reward_std"):
        pama_stream_scales([0.5, 0.5], [1.0, 0.0])


def test_reward_moments_match_numpy() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(50, 3)) * [1.0, 5.0, 0.1]
    moments = RewardMoments(3)
    for chunk in np.array_split(data, 7):
        moments.update(chunk)
    assert moments.std() == pytest.approx(data.std(0, ddof=1))
    assert RewardMoments(2).std().tolist() == [1.0, 1.0]
