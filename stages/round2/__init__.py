"""Round two of ParetoHqD: the round-one stages declared again over the generations.

``score_round2`` → ``pareto_round2`` → ``select_round2`` (k/2 per preference) → ``sft_round2``
(continuing each preference's round-one adapter). No stage code is copied: each is the
round-one stage's factory with other inputs, outputs and k.
"""

from __future__ import annotations

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.methods import adapters_artifact
from paretohqd.stages.pareto import LAYERS_ROUND2, pareto_stage
from paretohqd.stages.score import score_stage
from paretohqd.stages.select import select_stage, selection_artifact, shards_artifact
from paretohqd.stages.sft import sft_stage

SCORES_ROUND2 = Artifact("scores_round2", "round2/scores.parquet")
SELECTION_ROUND2 = selection_artifact(
    "selection_round2",
    "round2/selection.parquet",
    round=2,
    layers="layers_round2",
    overlap="shard_overlap_round2",
)
SHARDS_ROUND2 = shards_artifact("shards_round2", "shards/round2", round=2)
SHARD_OVERLAP_ROUND2 = Artifact("shard_overlap_round2", "round2/shard_overlap.parquet")
#: ParetoHqD's final models: they continue round one's adapters, and regeneration and round
#: two's scoring, layering and selection count toward their budget.
ADAPTERS_ROUND2 = adapters_artifact(
    "adapters_round2",
    "adapters/round2",
    method="paretohqd",
    order=20,
    data="shards_round2",
    continues=("paretohqd_round1",),
    extra_stages=("regenerate", "score_round2", "pareto_round2", "select_round2"),
    scoring_stages=("score_round2",),
)


def round2_k(config: Config) -> int:
    """Round two's k: ``regenerate.k``, else half of round one's (ParetoHqD: 50 of 100)."""
    assert config.regenerate is not None
    return config.regenerate.k or max(config.select.k // 2, 1)


def stages(config: Config) -> list[Stage]:
    """Round two's stages, when ``[regenerate]`` is configured."""
    if config.regenerate is None or config.policy is None or not config.objectives:
        return []

    return [
        score_stage("score_round2", samples="generations", output=SCORES_ROUND2, config=config),
        pareto_stage("pareto_round2", "generations", "scores_round2", LAYERS_ROUND2),
        select_stage(
            "select_round2",
            layers="layers_round2",
            samples="generations",
            round_=2,
            k=round2_k(config),
            selection=SELECTION_ROUND2,
            shards=SHARDS_ROUND2,
            overlap=SHARD_OVERLAP_ROUND2,
        ),
        sft_stage(
            "sft_round2",
            shards="shards_round2",
            selection="selection_round2",
            output=ADAPTERS_ROUND2,
            round_=2,
            config=config,
            init="adapters",
        ),
    ]
