"""MODPO/RACO losses and the shared pairwise loop on the real tiny policy."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file

from paretohqd.stages.kit.training.loop import PairRows, StepInputs, train_pairwise
from paretohqd.stages.kit.training.losses import dpo_delta, modpo_loss, signed_dpo_loss
from paretohqd.stages.kit.training.methods import modpo_method, raco_method
from paretohqd.stages.kit.training.sft import SFTSettings

MODPO = SimpleNamespace(beta=0.1, margin_scale=1.0, loss="sigmoid")
RACO = SimpleNamespace(beta=0.2, c=0.4, clip=True)


def _inputs(n: int = 6, m: int = 2, seed: int = 0) -> StepInputs:
    g = torch.Generator().manual_seed(seed)
    return StepInputs(
        delta=torch.randn(n, generator=g),
        signs=torch.randint(-1, 2, (n, m), generator=g).float(),
        margins=torch.randn(n, m, generator=g),
    )


def test_modpo_with_zero_margin_weights_is_dpo() -> None:
    inp = _inputs()
    [loss] = modpo_method([1.0, 0.0], MODPO).losses(inp)
    keep = inp.signs[:, 0] != 0
    dpo = -torch.nn.functional.logsigmoid(0.1 * inp.signs[:, 0] * inp.delta)
    # Ties contribute log σ(0) (constant, zero gradient); compare on all rows, as the loss does.
    assert torch.allclose(loss, dpo.mean())
    assert keep.any()


def test_modpo_margin_follows_the_formula() -> None:
    inp = _inputs(seed=1)
    w = [0.3, 0.7]  # trains objective 1, objective 0 is the margin
    [loss] = modpo_method(w, MODPO).losses(inp)
    s = inp.signs[:, 1]
    logits = s * (0.1 * inp.delta - 0.3 * inp.margins[:, 0]) / 0.7
    assert torch.allclose(loss, -torch.nn.functional.logsigmoid(logits).mean())
    hinge = modpo_loss(inp.delta, s, 0.3 * inp.margins[:, 0], beta=0.1, w_k=0.7, loss="hinge")
    assert torch.allclose(hinge, torch.relu(1 - logits).mean())


def test_raco_losses_are_signed_dpo_per_objective() -> None:
    inp = _inputs(seed=2)
    losses = raco_method([0.5, 0.5], RACO).losses(inp)
    for i, loss in enumerate(losses):
        assert torch.allclose(loss, signed_dpo_loss(inp.delta, inp.signs[:, i], 0.2))
    tie = torch.zeros(6, requires_grad=True)
    signed_dpo_loss(tie, torch.zeros(6), 0.2).backward()
    assert tie.grad is not None and torch.all(tie.grad == 0)  # a tie has no gradient
    d = dpo_delta(torch.tensor(2.0), torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.25))
    assert d.item() == pytest.approx(0.75)


ROWS = PairRows(
    prompts=["\n\nHuman: How do I bake bread?\n\nAssistant:"] * 4
    + ["\n\nHuman: Tell me a story.\n\nAssistant:"] * 4,
    a=[" Mix flour, water and yeast, then bake it.", " Once upon a time a cat was happy."] * 4,
    b=[" No.", " Go away."] * 4,
    signs=np.array([[1.0, 1.0], [1.0, -1.0]] * 4),
    margins=np.array([[0.5, 0.2], [0.3, -0.4]] * 4),
)
FAST = SFTSettings(steps=6, batch_size=4, lr=1e-2, warmup_steps=0, max_length=64, seed=0)


@pytest.mark.parametrize("name", ["modpo", "raco"])
def test_loop_trains_only_the_adapter(tiny_policy: Path, tmp_path: Path, name: str) -> None:
    method = modpo_method([0.7, 0.3], MODPO) if name == "modpo" else raco_method([0.7, 0.3], RACO)
    out = tmp_path / name
    metrics = train_pairwise(str(tiny_policy), ROWS, method, out, settings=FAST)
    assert metrics["last_loss"] < metrics["first_loss"]
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert any(np.abs(v).sum() > 0 for k, v in weights.items() if "lora_B" in k)  # B moved off 0
    log = pl.read_parquet(out / "training_log.parquet")
    assert log.height == FAST.steps and (out / "loss.png").exists()
    assert name.upper() in (out / "README.md").read_text()
