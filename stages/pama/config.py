"""The ``[pama]`` config table: PAMA's settings, declared by its package."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from paretohqd.stages.kit.methods import MethodTable
from paretohqd.stages.kit.training.recipes import Recipe


class PamaConfig(MethodTable):
    """PAMA (docs/algorithms.md): online PPO with Noon clipping and Theorem 1's combination."""

    published: ClassVar[Recipe] = Recipe(1e-5, 64, 128, "PAMA, Llama-2-7B, LoRA r 64 / alpha 128")

    steps: int = Field(20, ge=1, description="PPO iterations (rollout + update) per preference")
    batch_size: int = Field(8, ge=1, description="prompts per rollout")
    ppo_epochs: int = Field(1, ge=1, description="updates per rollout")
    value_lr: float = Field(1e-3, gt=0, description="value heads learning rate")
    kl_coef: float = Field(0.2, ge=0, description="per-token KL penalty to the reference")
    cliprange: float = Field(0.2, gt=0, lt=1, description="PPO ratio clip ε")
    lam: float = Field(0.95, gt=0, le=1, description="GAE λ (γ = 1)")
    granularity: Literal["token", "batch"] = Field("token", description="Theorem 1 per token")
    whiten: bool = Field(
        True,
        description="divide each objective's rewards by their running std before weighting, "
        "so w compares objectives in units of their spread",
    )
    max_new_tokens: int = Field(32, ge=1)
    top_p: float = Field(0.9, gt=0, le=1)
