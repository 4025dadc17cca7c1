"""The ``pama`` stage: one PAMA adapter per preference, trained online (Noon + Theorem 1).

It exists when the config has a ``[pama]`` table; prompts come from the round-one shards and
rewards from the run's scorers, so PAMA sees the same prompts as ParetoHqD.
"""

from __future__ import annotations

from functools import partial

from paretohqd.config import Config
from paretohqd.stage import Stage
from paretohqd.stages.kit.methods import adapters_artifact, method_params
from paretohqd.stages.kit.policy.identity import policy_external, start_inputs
from paretohqd.stages.kit.scoring.run import score_external, score_params
from paretohqd.stages.pama.config import PamaConfig

#: The ``[pama]`` table: the stage exists when the config has it.
CONFIG_TABLES = {"pama": PamaConfig}


def stages(config: Config) -> list[Stage]:
    """``pama`` when ``[pama]`` is configured."""
    cfg = config.pama
    if config.policy is None or not config.objectives or cfg is None:
        return []
    from paretohqd.stages.pama.stage import run_pama

    output = adapters_artifact(
        "adapters_pama", "adapters/pama", method="pama", order=60, start=cfg.init
    )
    uses_heads = any((o.model or "").startswith("run:") for o in config.objectives)
    return [
        Stage(
            name="pama",
            fn=partial(run_pama, output=output.name),
            inputs=(
                "shards",
                *start_inputs(config, cfg.init),
                *(("reward_heads",) if uses_heads else ()),
            ),
            outputs=(output,),
            section="pama",
            version="2",
            params=lambda c: {
                **method_params("pama", threads=False)(c),
                **score_params(c),
                "objectives_used": c.pareto_objectives,
            },
            external=lambda c, h: {**policy_external(c, h), **score_external(c, h)},
            sql=("shard_prompts.sql",),
            description="PAMA online PPO adapter per preference (Noon + Theorem 1)",
        )
    ]
