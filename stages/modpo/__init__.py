"""The ``modpo`` stage: one MODPO LoRA adapter per preference of the select grid, on ``pairs``.

It exists when the config has a ``[modpo]`` table; it starts from the shared SFT model
(``sft_init``) unless the table says ``init = "base"``.
"""

from __future__ import annotations

from paretohqd.config import Config
from paretohqd.stage import Stage
from paretohqd.stages.kit.methods import pairwise_stage
from paretohqd.stages.modpo.config import ModpoConfig

#: The ``[modpo]`` table: the stage exists when the config has it.
CONFIG_TABLES = {"modpo": ModpoConfig}


def stages(config: Config) -> list[Stage]:
    """``modpo`` when ``[modpo]`` is configured."""
    from paretohqd.stages.modpo.objective import ModpoObjective, modpo_pairs

    return pairwise_stage("modpo", config, objective=ModpoObjective, keep=modpo_pairs, order=40)
