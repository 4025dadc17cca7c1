"""Training settings from the config.

Every trainer (SFT, the shared start, the pairwise methods, PAMA) builds its
:class:`~paretohqd.stages.kit.training.sft.SFTSettings` here, so LoRA shape, seeds, devices and
threads agree.
"""

from __future__ import annotations

from typing import Any


def sft_settings(config: Any, **overrides: Any) -> Any:
    """``SFTSettings`` from ``[sft]`` and ``[policy]``; methods override steps, batch and lr."""
    from paretohqd.stages.kit.training.sft import SFTSettings

    cfg, policy = config.sft, config.policy
    assert policy is not None
    values = {
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "warmup_steps": cfg.warmup_steps,
        "lora_r": cfg.lora_r,
        "lora_alpha": cfg.lora_alpha,
        "lora_dropout": cfg.lora_dropout,
        "target_modules": tuple(cfg.target_modules),
        "max_length": cfg.max_length,
        "grad_accum": cfg.grad_accum,
        "template": cfg.template,
        "seed": config.run.seed,
        "device": policy.device,
        "dtype": policy.dtype,
        "threads": config.run.train_threads,
    }
    return SFTSettings(**{**values, **overrides})
