"""Pairwise preference losses (torch): DPO per objective, MODPO's margin-adjusted DPO.

Inputs are the summed response log-probs of policy and reference for both responses of each
pair. ``delta = [log π(a) − log π(b)] − [log π_ref(a) − log π_ref(b)]``.
"""

from __future__ import annotations

from typing import Any


def dpo_delta(pol_a: Any, pol_b: Any, ref_a: Any, ref_b: Any) -> Any:
    """The implicit reward difference of a over b (before β)."""
    return (pol_a - pol_b) - (ref_a - ref_b)


def signed_dpo_loss(delta: Any, sign: Any, beta: float) -> Any:
    """RACO's per-objective loss −mean log σ(β s Δ); a tie (s = 0) has zero gradient."""
    import torch.nn.functional as F

    return -F.logsigmoid(beta * sign * delta).mean()


def modpo_loss(
    delta: Any, sign_k: Any, margin_other: Any, *, beta: float, w_k: float, loss: str = "sigmoid"
) -> Any:
    """MODPO's loss for objective k (docs/algorithms.md §9).

    ``logits = (1/w_k) [β Δ_w − w_{−k}ᵀ (r_{−k}(y_w) − r_{−k}(y_l))]`` with (y_w, y_l) oriented
    by ``sign_k`` (+1: a is preferred on objective k) and ``margin_other`` = w_{−k}ᵀ(r_{−k}(a) −
    r_{−k}(b)) precomputed (no gradient). With zero weight on the other objectives this is DPO.
    """
    import torch.nn.functional as F

    logits = sign_k * (beta * delta - margin_other) / w_k
    if loss == "hinge":
        return F.relu(1 - logits).mean()
    return -F.logsigmoid(logits).mean()
