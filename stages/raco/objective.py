"""RACO's objective (docs/algorithms.md §10): per-objective DPO losses, clipped CAGrad.

One signed DPO loss per objective on the shared pairs; one gradient per objective over the
adapter's parameters (accumulated over micro-batches); their Gram matrix gives the CAGrad dual
(:func:`~paretohqd.stages.kit.training.solvers.raco_direction`), whose combined gradient is
written back into the parameters' ``.grad`` before the loop's optimiser step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from paretohqd.stages.kit.training.loop import Step, StepLoss
from paretohqd.stages.kit.training.pairwise import PairRows, PairwiseObjective, StepInputs


def raco_pairs(signs: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The pairs RACO trains on: those not tied on every objective."""
    return np.flatnonzero(np.abs(signs).sum(1) > 0)


class RacoObjective(PairwiseObjective):
    """RACO for one preference: a signed DPO loss per objective, combined by clipped CAGrad."""

    name = "raco"

    def __init__(self, rows: PairRows, weights: Sequence[float], cfg: Any) -> None:
        super().__init__(rows, weights, {"beta": cfg.beta, "c": cfg.c, "clip": cfg.clip})

    def losses(self, inputs: StepInputs) -> list[Any]:
        """−mean log σ(β s_i Δ) for every objective i; a tie has no gradient."""
        from paretohqd.stages.kit.training.losses import signed_dpo_loss

        beta = self.options["beta"]
        return [
            signed_dpo_loss(inputs.delta, inputs.signs[:, i], beta)
            for i in range(len(self.weights))
        ]

    def gradients(self, step: Step) -> StepLoss:
        """Accumulate one gradient per objective, then write the CAGrad combination."""
        import torch

        grads: list[list[Any]] | None = None
        total = 0.0
        for losses in self.micro_losses(step):
            step_grads = [
                torch.autograd.grad(
                    loss / step.accum, step.params, retain_graph=True, allow_unused=True
                )
                for loss in losses
            ]
            if grads is None:
                grads = [
                    [
                        g if g is not None else torch.zeros_like(p)
                        for g, p in zip(gs, step.params, strict=True)
                    ]
                    for gs in step_grads
                ]
            else:
                for acc, gs in zip(grads, step_grads, strict=True):
                    for j, g in enumerate(gs):
                        if g is not None:
                            acc[j] = acc[j] + g
            total += self.logged_loss(losses, step.accum)
        assert grads is not None  # grad_accum >= 1
        combined, columns = self.combine(grads)
        for p, g in zip(step.params, combined, strict=True):
            p.grad = g.to(p.dtype)
        return self.step_loss(total, **columns)

    def logged_loss(self, losses: Sequence[Any], accum: int) -> float:
        """The preference-weighted loss Σ w_i L_i of one micro-batch, over the accumulation."""
        return float(sum(wi * x.item() for wi, x in zip(self.weights, losses, strict=True))) / accum

    def combine(self, grads: list[list[Any]]) -> tuple[list[Any], dict[str, Any]]:
        """Σ coeff_i g_i from the Gram matrix of the objectives' gradients, and the log's
        ``g0_norm`` and ``skipped``."""
        from paretohqd.stages.kit.training.solvers import raco_direction

        m = len(grads)
        gram = np.zeros((m, m))
        for i in range(m):
            for j in range(i, m):
                gram[i, j] = gram[j, i] = float(
                    sum(
                        (gi.double() * gj.double()).sum().item()
                        for gi, gj in zip(grads[i], grads[j], strict=True)
                    )
                )
        direction = raco_direction(
            gram, self.weights, c=self.options["c"], clip=self.options["clip"]
        )
        coeffs = direction.coeffs
        combined = [
            sum(float(coeffs[i]) * grads[i][j] for i in range(m)) for j in range(len(grads[0]))
        ]
        return combined, {"g0_norm": float(direction.g0_norm), "skipped": bool(direction.skipped)}
