"""The ``regenerate`` stage: representative round-one adapters answer fresh train prompts.

Its ``generations.parquet`` follows the samples schema, so round two (``stages/round2``) scores,
layers and selects it with the round-one stages.
"""

from __future__ import annotations

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.policy.identity import policy_inputs

GENERATIONS = Artifact("generations", "generations.parquet")
REGEN_PROMPTS = Artifact("regen_prompts", "regenerate/prompts.parquet", role="training_prompts")


def stages(config: Config) -> list[Stage]:
    """``regenerate`` when ``[regenerate]`` is configured."""
    if config.policy is None or not config.objectives or config.regenerate is None:
        return []
    from paretohqd.stages.regenerate.stage import run_regenerate

    return [
        Stage(
            name="regenerate",
            fn=run_regenerate,
            inputs=("adapters", "selection", "samples", *policy_inputs(config)),
            outputs=(GENERATIONS, REGEN_PROMPTS),
            section="regenerate",
            # 2: seeded after the adapter loads (resume = uninterrupted); 3: seeded by what a
            # part is (representative, chunk), parts keyed and reused across runs; 4: every row
            # sampled from its own generator, representatives' parts in mixed-adapter groups
            version="4",
            params=lambda c: {
                "regenerate": c.regenerate.model_dump(mode="json") if c.regenerate else None,
                "generation": c.generation.model_dump(mode="json"),
                "run": {"seed": c.run.seed},
            },
            sql=("sample_prompts.sql", "shard_index.sql"),
            description="representative round-1 adapters answer fresh train prompts",
        )
    ]
