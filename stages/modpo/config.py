"""The ``[modpo]`` config table: MODPO's settings, declared by its package."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from paretohqd.stages.kit.methods import PairwiseMethodTable
from paretohqd.stages.kit.training.recipes import Recipe


class ModpoConfig(PairwiseMethodTable):
    """MODPO (docs/algorithms.md): DPO on one objective with the others as a fixed margin."""

    published: ClassVar[Recipe] = Recipe(5e-4, 64, 1, "MODPO scripts, LoRA r 64 / alpha 1")

    margin_scale: float = Field(
        1.0, gt=0, description="scale of the other objectives' normalised score margins vs β"
    )
    loss: Literal["sigmoid", "hinge"] = "sigmoid"
