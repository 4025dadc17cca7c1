"""Training settings from the config.

Every trainer (SFT, the shared start, the pairwise methods, PAMA) builds its
:class:`~paretohqd.stages.kit.training.sft.SFTSettings` here, so LoRA shape, seeds, devices and
threads agree.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def shared_fields(table: Any, settings_type: type) -> dict[str, Any]:
    """The values of config ``table`` whose names are fields of ``settings_type``: a settings
    dataclass takes what its config table holds by name instead of copying it field by field,
    so a key added to both is passed on without a third edit."""
    names = {f.name for f in fields(settings_type)}
    return {k: v for k, v in table.model_dump().items() if k in names}


def sft_settings(config: Any, **overrides: Any) -> Any:
    """``SFTSettings`` from ``[sft]`` (by field name) and ``[policy]``, the run's seed and
    training threads; methods override steps, batch and lr."""
    from paretohqd.stages.kit.training.sft import SFTSettings

    policy = config.policy
    assert policy is not None
    values = shared_fields(config.sft, SFTSettings)
    values |= {
        "target_modules": tuple(config.sft.target_modules),
        "seed": config.run.seed,
        "device": policy.device,
        "dtype": policy.dtype,
        "threads": config.run.train_threads,
    }
    return SFTSettings(**{**values, **overrides})
