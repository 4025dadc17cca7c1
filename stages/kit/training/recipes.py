"""Published learning rates, and the rescaling that carries them to this run's LoRA shape.

With LoRA the weight update is ``ΔW = (alpha / r) · B A``, and Adam moves B and A by about lr
per step whatever the gradient's scale, so the step a method takes in weight space grows with
``lr × alpha / r``: its *effective step*. Papers publish lr for their own LoRA shape (MODPO:
r 64, alpha 1; PAMA and RiC: r 64, alpha 128) or for full fine-tuning (RACO). A method's
default lr here is the published one rescaled so that the effective step is the same:

    lr = lr_published × (alpha/r)_published / (alpha/r)_here

RACO publishes full fine-tuning rates. For those we take Thinking Machines' finding ("LoRA
Without Regret", 2025) that the best LoRA rate is about 10× the full fine-tuning rate, read at
alpha/r = 1, and rescale from there like the others. The README shows the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: LoRA learning rate ≈ this × the full fine-tuning rate (LoRA Without Regret), at alpha/r = 1.
FULL_FT_TO_LORA = 10.0


@dataclass(frozen=True)
class Recipe:
    """A published learning rate and the LoRA shape it was published for (None: full FT)."""

    lr: float
    lora_r: int | None
    lora_alpha: int | None
    source: str

    @property
    def effective_step(self) -> float:
        """``lr × alpha / r`` of the recipe (full FT: 10 × lr, at alpha/r = 1)."""
        if self.lora_r is None or self.lora_alpha is None:
            return FULL_FT_TO_LORA * self.lr
        return self.lr * self.lora_alpha / self.lora_r


#: SFT's published recipe; each method's is the ``published`` of its config table.
SFT_RECIPE = Recipe(1.414e-4, 64, 128, "RiC offline SFT, Llama-2-7B, LoRA r 64 / alpha 128")


def default_lr(recipe: Recipe, *, lora_r: int, lora_alpha: int) -> float:
    """The published rate of ``recipe`` rescaled to the LoRA shape ``(lora_r, lora_alpha)``.

    Examples
    --------
    >>> modpo = Recipe(5e-4, 64, 1, "MODPO")
    >>> round(default_lr(modpo, lora_r=8, lora_alpha=16), 10)  # 5e-4 × (1/64) / 2
    3.90625e-06
    >>> default_lr(Recipe(2e-5, None, None, "RACO"), lora_r=8, lora_alpha=16)  # 10 × 2e-5 / 2
    0.0001
    """
    return recipe.effective_step / (lora_alpha / lora_r)


def method_shape(config: Any, method: str) -> dict[str, Any]:
    """The LoRA shape and learning rate a method trains with: its own table, else ``[sft]``'s
    shape and its published rate (``published`` of its table) rescaled."""
    cfg = getattr(config, method)
    r = cfg.lora_r or config.sft.lora_r
    alpha = cfg.lora_alpha or config.sft.lora_alpha
    if cfg.lr is not None:
        lr = cfg.lr
    else:
        lr = default_lr(type(cfg).published, lora_r=r, lora_alpha=alpha)
    return {"lora_r": r, "lora_alpha": alpha, "lr": lr}


def effective_step(lr: float, lora_r: int, lora_alpha: int) -> float:
    """``lr × alpha / r``: what the budgets table reports per method."""
    return lr * lora_alpha / lora_r
