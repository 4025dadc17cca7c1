"""MODPO's loss and the pairs it trains on (its training run is in the loop's golden test)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from paretohqd.stages.kit.training.losses import modpo_loss
from paretohqd.stages.kit.training.pairwise import PairRows, StepInputs
from paretohqd.stages.modpo.objective import ModpoObjective, modpo_pairs, trained_objective

MODPO = SimpleNamespace(beta=0.1, margin_scale=1.0, loss="sigmoid")
ONE_PAIR = PairRows(["q"], ["a"], ["b"], np.ones((1, 2)), np.zeros((1, 2)))


def _inputs(n: int = 6, m: int = 2, seed: int = 0) -> StepInputs:
    g = torch.Generator().manual_seed(seed)
    return StepInputs(
        delta=torch.randn(n, generator=g),
        signs=torch.randint(-1, 2, (n, m), generator=g).float(),
        margins=torch.randn(n, m, generator=g),
    )


def test_modpo_with_zero_margin_weights_is_dpo() -> None:
    inp = _inputs()
    [loss] = ModpoObjective(ONE_PAIR, [1.0, 0.0], MODPO).losses(inp)
    dpo = -torch.nn.functional.logsigmoid(0.1 * inp.signs[:, 0] * inp.delta)
    # Ties contribute log σ(0) (constant, zero gradient); compare on all rows, as the loss does.
    assert torch.allclose(loss, dpo.mean())
    assert (inp.signs[:, 0] != 0).any()


def test_modpo_margin_follows_the_formula() -> None:
    inp = _inputs(seed=1)
    w = [0.3, 0.7]  # trains objective 1, objective 0 is the margin
    objective = ModpoObjective(ONE_PAIR, w, MODPO)
    [loss] = objective.losses(inp)
    s = inp.signs[:, 1]
    logits = s * (0.1 * inp.delta - 0.3 * inp.margins[:, 0]) / 0.7
    assert torch.allclose(loss, -torch.nn.functional.logsigmoid(logits).mean())
    hinge = modpo_loss(inp.delta, s, 0.3 * inp.margins[:, 0], beta=0.1, w_k=0.7, loss="hinge")
    assert torch.allclose(hinge, torch.relu(1 - logits).mean())
    assert objective.state() == {
        "options": {"objective": 1, "beta": 0.1, "margin_scale": 1.0, "loss": "sigmoid"},
        "weights": [0.3, 0.7],
    }


def test_modpo_trains_on_pairs_not_tied_on_the_most_weighted_objective() -> None:
    signs = np.array([[1, 0], [0, 1], [-1, -1], [0, 0]], dtype=np.float32)
    assert trained_objective([0.5, 0.5]) == 0  # first on ties
    assert modpo_pairs(signs, [0.5, 0.5]).tolist() == [0, 2]
    assert modpo_pairs(signs, [0.2, 0.8]).tolist() == [1, 2]
