"""MODPO's objective (docs/algorithms.md §9): DPO on one objective, the others as a margin.

For preference w, MODPO trains on the preference data of the most weighted objective k (first on
ties) and turns the other objectives' normalised score margins, weighted by w₋ₖ, into a fixed
margin of the DPO logit, divided by w_k. It trains only on pairs not tied on objective k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from paretohqd.stages.kit.training.loop import Step, StepLoss
from paretohqd.stages.kit.training.pairwise import PairRows, PairwiseObjective, StepInputs


def trained_objective(weights: Sequence[float]) -> int:
    """The objective MODPO trains on: the most weighted (first on ties)."""
    return int(np.argmax(np.asarray(weights)))


def modpo_pairs(signs: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The pairs MODPO trains on for ``weights``: those not tied on the trained objective."""
    return np.flatnonzero(signs[:, trained_objective(weights)] != 0)


class ModpoObjective(PairwiseObjective):
    """MODPO for one preference: one margin-adjusted DPO loss, a plain backward pass."""

    name = "modpo"

    def __init__(self, rows: PairRows, weights: Sequence[float], cfg: Any) -> None:
        w = np.asarray(weights, dtype=np.float64)
        self.k = trained_objective(w.tolist())
        self.other = w.copy()
        self.other[self.k] = 0.0
        self.cfg = cfg
        options = {"objective": self.k, "beta": cfg.beta, "margin_scale": cfg.margin_scale}
        super().__init__(rows, weights, options | {"loss": cfg.loss})

    def losses(self, inputs: StepInputs) -> list[Any]:
        """MODPO's loss on objective k, with the other objectives' weighted margin."""
        import torch

        from paretohqd.stages.kit.training.losses import modpo_loss

        margins = inputs.margins
        w_other = torch.tensor(self.other, dtype=margins.dtype, device=margins.device)
        margin = self.cfg.margin_scale * (margins * w_other).sum(-1)
        # delta and margin are both "a minus b"; sign_k orients them to (y_w, y_l).
        loss = modpo_loss(
            inputs.delta,
            inputs.signs[:, self.k],
            margin,
            beta=self.cfg.beta,
            w_k=float(self.weights[self.k]),
            loss=self.cfg.loss,
        )
        return [loss]

    def gradients(self, step: Step) -> StepLoss:
        """Backward on each micro-batch's loss, divided by the accumulation."""
        total = 0.0
        for [loss] in self.micro_losses(step):
            scaled = loss / step.accum
            scaled.backward()
            total += scaled.item()
        return self.step_loss(total)
