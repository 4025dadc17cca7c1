"""The ``sft`` stages: one LoRA adapter per preference shard.

``sft`` trains round one into ``adapters/round1/<pref_id>/``; ``sft_linear`` does the same on the
linear-scalarisation arm's shards; round two declares ``sft_round2`` with :func:`sft_stage`,
continuing each preference's round-one adapter.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage, StageContext, Tool
from paretohqd.stages.kit.methods import adapters_artifact
from paretohqd.stages.kit.policy.identity import policy_external, policy_inputs

ADAPTERS = adapters_artifact(
    "adapters", "adapters/round1", method="paretohqd_round1", order=10, data="shards"
)
ADAPTERS_LINEAR = adapters_artifact(
    "adapters_linear", "adapters/linear", method="linear_round1", order=30, data="shards_linear"
)


def _export_trl(ctx: StageContext, **options: Any) -> Any:
    from paretohqd.stages.sft.stage import export_trl

    return export_trl(ctx, **options)


def sft_stage(
    name: str,
    *,
    shards: str,
    selection: str,
    output: Artifact,
    round_: int,
    config: Config,
    init: str | None = None,
    variant: str | None = None,
) -> Stage:
    """Declare an SFT stage: one adapter per shard of ``selection``, optionally continuing from
    ``init``. Its ``export-trl`` tool is told apart by ``variant`` (default ``round<N>``)."""
    from paretohqd.stages.sft.stage import run_sft

    steps = config.sft.steps if round_ == 1 else config.sft.round2_steps
    return Stage(
        name=name,
        fn=partial(
            run_sft, shards=shards, selection=selection, output=output.name, init=init, steps=steps
        ),
        inputs=(shards, selection, *policy_inputs(config), *((init,) if init else ())),
        outputs=(output,),
        section="sft",
        # 2: adapter keys live in the engine's <root>/.items.json, which round two reads.
        version="2",
        sql=("shard_index.sql",),
        params=lambda c: {
            "sft": c.sft.model_dump(mode="json"),
            "policy": c.policy.model_dump(mode="json") if c.policy else None,
            "run": {"seed": c.run.seed, "train_threads": c.run.train_threads},
        },
        external=policy_external,
        description=f"round-{round_} LoRA SFT, one adapter per preference shard",
        tools=(
            Tool(
                "export-trl",
                partial(
                    _export_trl,
                    shards=shards,
                    selection=selection,
                    variant=variant or f"round{round_}",
                ),
                "the shards as TRL SFT datasets with this stage's tokens",
                variant=variant or f"round{round_}",
            ),
        ),
    )


def stages(config: Config) -> list[Stage]:
    """``sft``, and ``sft_linear`` when the linear arm is compared."""
    if config.policy is None or not config.objectives:
        return []
    out = [
        sft_stage(
            "sft", shards="shards", selection="selection", output=ADAPTERS, round_=1, config=config
        )
    ]
    if config.select.compare_linear:
        out.append(
            sft_stage(
                "sft_linear",
                shards="shards_linear",
                selection="selection_linear",
                output=ADAPTERS_LINEAR,
                round_=1,
                config=config,
                variant="linear",
            )
        )
    return out
