"""The one training loop with every method's objective, on the real tiny policy (float32, CPU).

The golden numbers were recorded from the three loops this one replaced (``train_lora``,
``train_pairwise``, ``train_pama``) and reproduced bit for bit by it: a change to the loop's
seeding, sampling, accumulation, optimiser or any objective's float operations moves them.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from trainkit import PAIRS

from paretohqd.errors import DataError
from paretohqd.stages.kit.scoring.scorers import build_scorer
from paretohqd.stages.kit.training.loop import Objective, Sampler, train_adapter
from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings
from paretohqd.stages.modpo.objective import ModpoObjective
from paretohqd.stages.pama.config import PamaConfig
from paretohqd.stages.pama.objective import PamaObjective
from paretohqd.stages.raco.objective import RacoObjective

SFT_ROWS = [
    ("\n\nHuman: What colour is the sky?\n\nAssistant:", " The sky is blue."),
    ("\n\nHuman: What do cats say?\n\nAssistant:", " Cats say meow."),
    ("\n\nHuman: Who is Lily?\n\nAssistant:", " Lily is a little girl."),
    ("\n\nHuman: Where is the ball?\n\nAssistant:", " The ball is in the park."),
    ("\n\nHuman: Where is Tom?\n\nAssistant:", " Tom is at home."),
]
PROMPTS = ["Once upon a time", "The dog", "Lily went to the park", "Tom had a ball"]
#: Warm-up over 2 steps, 2 micro-batches accumulated, weight decay on (SFT); one thread.
SFT = SFTSettings(
    steps=4,
    batch_size=2,
    grad_accum=2,
    lr=1e-2,
    warmup_steps=2,
    weight_decay=0.01,
    max_length=64,
    seed=3,
    threads=1,
)
PAIRWISE = SFTSettings(
    steps=4, batch_size=2, grad_accum=2, lr=1e-2, warmup_steps=2, max_length=64, seed=1, threads=1
)
PAMA = SFTSettings(steps=2, batch_size=3, max_length=96, seed=0, threads=1)
#: Per method: the logged loss of each step, and Σ|w| over the adapter's tensors (float64).
GOLDEN = {
    "sft": ([4.304515, 4.054608, 3.310621, 2.325637], 812.526590244539),
    "sft_continued": ([1.657426, 1.70131, 1.849209, 1.144645], 861.0345085606677),
    "modpo": ([0.70581, 0.195087, 0.021756, 0.014782], 840.563456461241),
    # the logged loss is a mean over the accumulated micro-batches (it was their sum before
    # fused training shared the logging with the other methods; the weights did not move)
    "raco": ([0.693147, 0.484622, 0.317367, 0.40103], 790.1530147836456),
    "pama": ([-1.220047, -1.140035], 638.8268224050171),
}


def _heuristics() -> list[Any]:
    return [
        build_scorer("heuristic", name="long", options={"metric": "verbosity"}),
        build_scorer("heuristic", name="varied", options={"metric": "repetition", "n": 2}),
    ]


def _objective(name: str, out: Path) -> tuple[Objective, SFTSettings]:
    if name in ("sft", "sft_continued"):
        return SftObjective(SFT_ROWS), SFT
    if name == "modpo":
        cfg = SimpleNamespace(beta=0.1, margin_scale=1.0, loss="sigmoid")
        return ModpoObjective(PAIRS, [0.3, 0.7], cfg), PAIRWISE
    if name == "raco":
        return RacoObjective(
            PAIRS, [0.7, 0.3], SimpleNamespace(beta=0.2, c=0.4, clip=True)
        ), PAIRWISE
    cfg = PamaConfig(steps=2, batch_size=3, ppo_epochs=2, max_new_tokens=10, lr=1e-3)
    objective = PamaObjective(PROMPTS, _heuristics(), [0.6, 0.4], cfg, snapshots=out / ".rollout")
    return objective, PAMA


@pytest.fixture(scope="module")
def sft_adapter(tiny_policy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loop") / "sft"
    train_adapter(str(tiny_policy), SftObjective(SFT_ROWS), SFT, out)
    return out


@pytest.mark.parametrize("name", list(GOLDEN))
def test_every_objective_reproduces_its_golden_numbers(
    tiny_policy: Path, tmp_path: Path, sft_adapter: Path, name: str
) -> None:
    objective, settings = _objective(name, tmp_path)
    if name == "sft":
        out = sft_adapter
    else:
        out = tmp_path / name
        init = sft_adapter if name == "sft_continued" else None
        train_adapter(str(tiny_policy), objective, settings, out, init_adapter=init)
    losses, absum = GOLDEN[name]
    log = pl.read_parquet(out / "training_log.parquet")
    # The log rounds to 6 decimals: allow one unit of that rounding either way.
    assert log["loss"].to_list() == pytest.approx(losses, abs=2e-6)
    weights = load_file(str(out / "adapter_model.safetensors"))
    total = float(sum(w.double().abs().sum() for w in weights.values()))
    assert total == pytest.approx(absum, rel=1e-6)
    assert any(w.abs().sum() > 0 for k, w in weights.items() if "lora_B" in k)  # B moved off 0
    assert (out / "loss.png").exists() and (out / "README.md").exists()


@pytest.mark.parametrize("name", ["modpo", "raco"])
def test_pairwise_adapters_record_their_method(
    tiny_policy: Path, tmp_path: Path, name: str
) -> None:
    objective, settings = _objective(name, tmp_path)
    out = tmp_path / name
    metrics = train_adapter(str(tiny_policy), objective, settings, out, extra_state={"key": "k"})
    log = pl.read_parquet(out / "training_log.parquet")
    assert log.height == settings.steps and metrics["steps"] == settings.steps
    assert metrics["pairs"] == len(PAIRS) and metrics["examples"] == 4 * 2 * 2
    assert name.upper() in (out / "README.md").read_text()
    state = json.loads((out / "train_state.json").read_text())
    assert state["method"] == name and state["key"] == "k"
    assert state["weights"] == ([0.3, 0.7] if name == "modpo" else [0.7, 0.3])


def test_a_diverging_loss_names_the_method_step_and_setting(
    tiny_policy: Path, tmp_path: Path
) -> None:
    class Diverging(SftObjective):
        def gradients(self, step: Any) -> Any:
            result = super().gradients(step)
            result.loss = float("nan") if step.index == 1 else result.loss
            return result

    settings = SFTSettings(steps=3, batch_size=2, max_length=64, threads=1)
    with pytest.raises(DataError, match=r"sft: loss became nan at step 1; lower init\.lr"):
        train_adapter(
            str(tiny_policy), Diverging(SFT_ROWS, lr_option="init.lr"), settings, tmp_path / "x"
        )
    assert not (tmp_path / "x").exists()  # nothing half-written


def test_sampler_refills_with_a_fresh_permutation_when_a_batch_does_not_fit() -> None:
    sampler = Sampler(5, 2, seed=0)
    gen = torch.Generator().manual_seed(0)
    first, second = torch.randperm(5, generator=gen).tolist(), torch.randperm(5, generator=gen)
    draws = [sampler.take() for _ in range(3)]
    assert draws == [first[:2], first[2:4], [first[4], second.tolist()[0]]]
    assert sampler.draws == 3
