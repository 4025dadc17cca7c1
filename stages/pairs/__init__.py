"""The ``pairs`` stage: preference pairs for the pairwise methods, in ``pairs.parquet``.

It exists when a pairwise method (MODPO, RACO) is configured: the pairs come from the prompts
behind the round-one shards, so the methods train on the same data as ParetoHqD.
"""

from __future__ import annotations

from typing import Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage, StageContext, Tool
from paretohqd.stages.kit.methods import PairwiseMethodTable, method_tables

PAIRS = Artifact("pairs", "pairs.parquet", role="training_prompts")


def _export_dpo(ctx: StageContext, **options: Any) -> Any:
    from paretohqd.stages.pairs.stage import export_dpo

    return export_dpo(ctx, **options)


def stages(config: Config) -> list[Stage]:
    """``pairs`` when a pairwise method is configured."""
    if config.policy is None or not config.objectives:
        return []
    if not method_tables(config, PairwiseMethodTable):
        return []
    from paretohqd.stages.pairs.stage import run_pairs

    return [
        Stage(
            name="pairs",
            fn=run_pairs,
            inputs=("samples", "layers", "preferences", "selection"),
            outputs=(PAIRS,),
            section="pairs",
            version="1",
            params=lambda c: {
                "pairs": c.pairs.model_dump(mode="json"),
                "objectives": c.pareto_objectives,
            },
            sql=("pairs.sql",),
            description="preference pairs with per-objective margins and signs",
            tools=(
                Tool("export-dpo", _export_dpo, "the pairs as TRL DPO datasets per preference"),
            ),
        )
    ]
