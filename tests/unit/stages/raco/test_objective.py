"""RACO's per-objective losses and the pairs it trains on (its training run, with the CAGrad
combination written into the gradients, is in the loop's golden test)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from paretohqd.stages.kit.training.losses import dpo_delta, signed_dpo_loss
from paretohqd.stages.kit.training.pairwise import PairRows, StepInputs
from paretohqd.stages.raco.objective import RacoObjective, raco_pairs

RACO = SimpleNamespace(beta=0.2, c=0.4, clip=True)
ONE_PAIR = PairRows(["q"], ["a"], ["b"], np.ones((1, 2)), np.zeros((1, 2)))


def test_raco_losses_are_signed_dpo_per_objective() -> None:
    g = torch.Generator().manual_seed(2)
    inp = StepInputs(
        delta=torch.randn(6, generator=g),
        signs=torch.randint(-1, 2, (6, 2), generator=g).float(),
        margins=torch.randn(6, 2, generator=g),
    )
    losses = RacoObjective(ONE_PAIR, [0.5, 0.5], RACO).losses(inp)
    assert len(losses) == 2
    for i, loss in enumerate(losses):
        assert torch.allclose(loss, signed_dpo_loss(inp.delta, inp.signs[:, i], 0.2))
    tie = torch.zeros(6, requires_grad=True)
    signed_dpo_loss(tie, torch.zeros(6), 0.2).backward()
    assert tie.grad is not None and torch.all(tie.grad == 0)  # a tie has no gradient
    d = dpo_delta(torch.tensor(2.0), torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.25))
    assert d.item() == pytest.approx(0.75)


def test_raco_trains_on_pairs_not_tied_on_every_objective() -> None:
    signs = np.array([[1, 0], [0, 0], [0, -1]], dtype=np.float32)
    assert raco_pairs(signs, [0.9, 0.1]).tolist() == [0, 2]


def test_no_pairs_is_a_data_error() -> None:
    from paretohqd.errors import DataError

    empty = PairRows([], [], [], np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(DataError, match="raco: no training pairs"):
        RacoObjective(empty, [0.5, 0.5], RACO)
