"""The ``[raco]`` config table: RACO's settings, declared by its package."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from paretohqd.stages.kit.methods import PairwiseMethodTable
from paretohqd.stages.kit.training.recipes import Recipe


class RacoConfig(PairwiseMethodTable):
    """RACO (docs/algorithms.md): per-objective DPO losses combined by clipped CAGrad."""

    published: ClassVar[Recipe] = Recipe(
        2e-5, None, None, "RACO, Qwen3-4B-Instruct, full fine-tuning"
    )

    beta: float = Field(0.2, gt=0, description="DPO temperature (RACO's README: 0.2)")
    c: float = Field(0.4, ge=0, description="conflict-averse radius; 0 = weighted DPO")
    clip: bool = Field(True, description="p̃ = min(p*, w); off = plain CAGrad with weighted g0")
