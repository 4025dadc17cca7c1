"""The ``sft_init`` stage: the shared SFT start of MODPO, RACO and PAMA, in ``models/sft_init/``.

It exists when a method starts from it (``init = "sft"``, the default of every method table).
"""

from __future__ import annotations

from functools import partial

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.policy.identity import (
    INIT_MODEL_DIR,
    policy_external,
    policy_inputs,
    uses_init,
)

INIT_MODEL = Artifact(
    "init_model", INIT_MODEL_DIR, kind="dir", role="model", tags={"method": "sft_init"}
)


def stages(config: Config) -> list[Stage]:
    """``sft_init`` when a method starts from the shared SFT model."""
    if config.policy is None or not config.objectives or not uses_init(config):
        return []
    from paretohqd.stages.sft_init.stage import SQL, run_sft_init

    data = config.init.data
    return [
        Stage(
            name="sft_init",
            fn=partial(run_sft_init, output=INIT_MODEL.name),
            inputs=(
                "samples",
                "preferences" if data == "chosen" else "layers",
                *policy_inputs(config),
            ),
            outputs=(INIT_MODEL,),
            section="init",
            version="1",
            params=lambda c: {
                "init": c.init.model_dump(mode="json"),
                "sft": c.sft.model_dump(mode="json"),
                "policy": c.policy.model_dump(mode="json") if c.policy else None,
                "pareto": {"splits": c.pareto.splits},
                "run": {"seed": c.run.seed, "train_threads": c.run.train_threads},
            },
            external=policy_external,
            sql=(SQL[data],),
            description="the shared SFT start of MODPO, RACO and PAMA (merged LoRA SFT)",
        )
    ]
