"""The ``raco`` stage: one RACO LoRA adapter per preference of the select grid, on ``pairs``.

It exists when the config has a ``[raco]`` table; it starts from the shared SFT model
(``sft_init``) unless the table says ``init = "base"``.
"""

from __future__ import annotations

from paretohqd.config import Config
from paretohqd.stage import Stage
from paretohqd.stages.kit.methods import pairwise_stage
from paretohqd.stages.raco.config import RacoConfig

#: The ``[raco]`` table: the stage exists when the config has it.
CONFIG_TABLES = {"raco": RacoConfig}


def stages(config: Config) -> list[Stage]:
    """``raco`` when ``[raco]`` is configured."""
    from paretohqd.stages.raco.objective import RacoObjective, raco_pairs

    return pairwise_stage("raco", config, objective=RacoObjective, keep=raco_pairs, order=50)
