"""The ``score`` and ``reward_heads`` stages.

``reward_heads`` fits a linear Bradley-Terry head on a frozen sentence encoder for every
``[[reward_heads]]`` entry, from the ingested human preference pairs, into
``reward_heads/<name>/`` (safetensors + config + model card). ``score`` runs every
``[[objectives]]`` scorer over every sample into ``scores.parquet``: sample_id plus one raw
float64 column per objective, written as resumable parts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paretohqd.config import Config
from paretohqd.hashing import FileHasher
from paretohqd.stage import Artifact, Stage, Tool
from paretohqd.stages.kit.identity import source_identity
from paretohqd.stages.kit.scoring.run import score_external, score_params

SCORES = Artifact("scores", "scores.parquet")
REWARD_HEADS = Artifact("reward_heads", "reward_heads", kind="dir")


def _heads_params(config: Config) -> Any:
    return {
        "reward_heads": [h.model_dump(mode="json") for h in config.reward_heads],
        "run": {"seed": config.run.seed},
    }


def _heads_external(config: Config, hasher: FileHasher) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    for head in config.reward_heads:
        if head.encoder:
            out[f"reward_heads.{head.name}.encoder"] = source_identity(config, head.encoder, hasher)
    return out


def check_objectives(config: Config) -> None:
    """Every objective's scorer kind and options, at load (``status`` and ``--dry-run``)."""
    from paretohqd.errors import ConfigError
    from paretohqd.stages.kit.scoring.scorers import ScorerError, check_scorer

    for i, obj in enumerate(config.objectives):
        try:
            check_scorer(obj.scorer, name=obj.name, model=obj.model, options=obj.options)
        except ScorerError as exc:
            raise ConfigError(f"{config.source}: objectives[{i}]: {exc}") from None


def check_heads(config: Config) -> None:
    """Every reward head's training options, at load."""
    from paretohqd.errors import ConfigError
    from paretohqd.stages.kit.scoring.embedding import BTTrainOptions
    from paretohqd.stages.kit.scoring.scorers import ScorerError, parse_options

    for i, head in enumerate(config.reward_heads):
        try:
            parse_options(BTTrainOptions, head.options, name=head.name)
        except ScorerError as exc:
            raise ConfigError(f"{config.source}: reward_heads[{i}]: {exc}") from None


def score_stage(name: str, *, samples: str, output: Artifact, config: Config) -> Stage:
    """Declare a score stage over ``samples`` (round one's samples or round two's generations)."""
    from functools import partial

    from paretohqd.stages.score.stage import run_score

    uses_heads = any((o.model or "").startswith("run:") for o in config.objectives)
    return Stage(
        name=name,
        fn=partial(run_score, samples=samples, output=output.name),
        inputs=(samples, "reward_heads") if uses_heads else (samples,),
        outputs=(output,),
        section="score",
        version="2",
        params=score_params,
        external=score_external,
        validate=check_objectives,
        description="every objective's scorer over every sample",
    )


def stages(config: Config) -> list[Stage]:
    """``reward_heads`` (when configured) and ``score`` (when objectives are configured)."""
    from paretohqd.stages.score.heads import run_reward_heads

    out: list[Stage] = []
    if config.reward_heads:
        out.append(
            Stage(
                name="reward_heads",
                fn=run_reward_heads,
                inputs=("samples", "preferences"),
                outputs=(REWARD_HEADS,),
                section="reward_heads",
                version="2",
                params=_heads_params,
                external=_heads_external,
                sql=("reward_head_pairs.sql",),
                validate=check_heads,
                description="Bradley-Terry heads on a frozen encoder, from preference pairs",
            )
        )
    if config.objectives:
        out.append(score_stage("score", samples="samples", output=SCORES, config=config))
    return out


def _train_reward(**options: Any) -> Any:
    from paretohqd.stages.score.train_reward import train_reward

    return train_reward(**options)


#: Tools that need no run: ``paretohqd train-reward``.
TOOLS = (Tool("train-reward", _train_reward, "fit a Bradley-Terry head on pairwise data"),)
