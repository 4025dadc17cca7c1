"""The ``pareto`` stage: min-max normalisation over the pool and exact non-dominated layers.

Writes ``layers.parquet``: sample_id, layer (1 = non-dominated), ``raw`` and ``norm`` (score
lists in objective order, for SQL) and one ``norm_<objective>`` column per objective. The
per-objective min/max go to the manifest. The same code runs for round two over the
generations.
"""

from __future__ import annotations

from typing import Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage

LAYERS = Artifact("layers", "layers.parquet")
LAYERS_ROUND2 = Artifact("layers_round2", "round2/layers.parquet")


def _params(config: Config) -> Any:
    return {
        "pareto": config.pareto.model_dump(mode="json", exclude={"engine"}),  # speed only
        "objectives": config.pareto_objectives,
    }


def pareto_stage(name: str, samples: str, scores: str, output: Artifact) -> Stage:
    """Declare a pareto stage over ``samples``/``scores`` (round one or two)."""
    from functools import partial

    from paretohqd.stages.pareto.stage import run_pareto

    return Stage(
        name=name,
        fn=partial(run_pareto, roles={"samples": samples, "scores": scores}, output=output.name),
        inputs=(samples, scores),
        outputs=(output,),
        section="pareto",
        version="1",
        params=_params,
        sql=("pareto_normalise.sql",),
        checks=(),
        description="exact non-dominated layers over min-max normalised scores",
    )


def stages(config: Config) -> list[Stage]:
    """Round one's pareto stage (when objectives are configured)."""
    if not config.objectives:
        return []
    return [pareto_stage("pareto", "samples", "scores", LAYERS)]
