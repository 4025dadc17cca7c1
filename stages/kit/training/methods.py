"""The pairwise methods as data: what each optimises, for one preference w.

A method is a config plus loss functions over
:class:`~paretohqd.stages.kit.training.loop.StepInputs`; the loop in ``loop.py`` is shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from paretohqd.stages.kit.training.loop import Method


def modpo_objective(weights: Sequence[float]) -> int:
    """MODPO trains on the preference data of one objective: the most weighted (first on ties)."""
    return int(np.argmax(np.asarray(weights)))


def modpo_method(weights: Sequence[float], cfg: Any) -> Method:
    """MODPO for preference ``weights``: DPO on objective k, the others as a fixed margin."""
    from paretohqd.stages.kit.training.losses import modpo_loss

    w = np.asarray(weights, dtype=np.float64)
    k = modpo_objective(w.tolist())
    other = w.copy()
    other[k] = 0.0

    def loss(inputs: Any) -> Any:
        import torch

        w_other = torch.tensor(other, dtype=inputs.margins.dtype, device=inputs.margins.device)
        margin = cfg.margin_scale * (inputs.margins * w_other).sum(-1)
        # delta and margin are both "a minus b"; sign_k orients them to (y_w, y_l).
        return modpo_loss(
            inputs.delta, inputs.signs[:, k], margin, beta=cfg.beta, w_k=float(w[k]), loss=cfg.loss
        )

    return Method(
        name="modpo",
        losses=lambda inputs: [loss(inputs)],
        scalar=loss,
        weights=(1.0,),
        options={
            "objective": k,
            "beta": cfg.beta,
            "margin_scale": cfg.margin_scale,
            "loss": cfg.loss,
        },
    )


def raco_method(weights: Sequence[float], cfg: Any) -> Method:
    """RACO for preference ``weights``: one signed DPO loss per objective, clipped CAGrad."""
    from paretohqd.stages.kit.training.losses import signed_dpo_loss

    m = len(weights)

    def losses(inputs: Any) -> list[Any]:
        return [signed_dpo_loss(inputs.delta, inputs.signs[:, i], cfg.beta) for i in range(m)]

    return Method(
        name="raco",
        losses=losses,
        combine="raco",
        weights=tuple(float(x) for x in weights),
        options={"beta": cfg.beta, "c": cfg.c, "clip": cfg.clip},
    )
