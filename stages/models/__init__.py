"""Policy stages: ``base_model`` (llama2.c conversion), ``sft``, ``regenerate``, ``sft_init``.

The policy is any causal LM transformers loads; the demo converts the bundled llama2.c
stories260K checkpoint into ``models/base/``. ``sft`` trains one LoRA adapter per preference
shard into ``adapters/round1/<pref_id>/``; ``regenerate`` lets the representative round-one
adapters (one per objective plus the most balanced one) answer fresh train prompts;
``sft_init`` trains the shared SFT start of the baselines into ``models/sft_init/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from paretohqd.config import Config
from paretohqd.hashing import FileHasher
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.policy.identity import (
    BASE_MODEL_DIR,
    INIT_MODEL_DIR,
    policy_external,
    policy_inputs,
    uses_init,
)

BASE_MODEL = Artifact("base_model", BASE_MODEL_DIR, kind="dir")
ADAPTERS = Artifact("adapters", "adapters/round1", kind="dir")
ADAPTERS_ROUND2 = Artifact("adapters_round2", "adapters/round2", kind="dir")
ADAPTERS_LINEAR = Artifact("adapters_linear", "adapters/linear", kind="dir")
INIT_MODEL = Artifact("init_model", INIT_MODEL_DIR, kind="dir")
GENERATIONS = Artifact("generations", "generations.parquet")
REGEN_PROMPTS = Artifact("regen_prompts", "regenerate/prompts.parquet")


def _convert_external(config: Config, hasher: FileHasher) -> Mapping[str, Any]:
    assert config.policy is not None
    if config.policy.llama2c is not None:
        src = config.policy.llama2c
        return {
            "policy.llama2c.checkpoint": hasher.file(config.resolve(src.checkpoint)),
            "policy.llama2c.tokenizer": hasher.file(config.resolve(src.tokenizer)),
        }
    from paretohqd.errors import ModelError
    from paretohqd.stages.models.policy import gguf_directory

    assert config.policy.gguf is not None
    path = gguf_directory(config) / config.policy.gguf.file
    if not path.is_file():
        raise ModelError(f"policy.gguf: {path} does not exist; check policy.gguf.path and .file")
    return {"policy.gguf": hasher.file(path)}


def sft_stage(
    name: str,
    *,
    shards: str,
    selection: str,
    output: Artifact,
    round_: int,
    config: Config,
    init: str | None = None,
) -> Stage:
    """Declare an SFT stage: one adapter per shard of ``selection``, optionally continuing from
    ``init``."""
    from paretohqd.stages.models.sft_run import run_sft

    steps = config.sft.steps if round_ == 1 else config.sft.round2_steps
    return Stage(
        name=name,
        fn=partial(
            run_sft, shards=shards, selection=selection, output=output.name, init=init, steps=steps
        ),
        inputs=(shards, selection, *policy_inputs(config), *((init,) if init else ())),
        outputs=(output,),
        section="sft",
        version="1",
        sql=("shard_index.sql",),
        params=lambda c: {
            "sft": c.sft.model_dump(mode="json"),
            "policy": c.policy.model_dump(mode="json") if c.policy else None,
            "run": {"seed": c.run.seed, "train_threads": c.run.train_threads},
        },
        external=policy_external,
        description=f"round-{round_} LoRA SFT, one adapter per preference shard",
    )


def stages(config: Config) -> list[Stage]:
    """The policy stages the config enables."""
    from paretohqd.stages.models.policy import run_base_model
    from paretohqd.stages.models.regenerate import run_regenerate

    if config.policy is None:
        return []
    out: list[Stage] = []
    if config.converts_policy:
        out.append(
            Stage(
                name="base_model",
                fn=run_base_model,
                outputs=(BASE_MODEL,),
                section="policy",
                version="1",
                params=lambda c: {
                    "policy": {"source": "llama2c" if c.policy and c.policy.llama2c else "gguf"}
                },
                external=_convert_external,
                description="convert the llama2.c / GGUF checkpoint to a Hugging Face model",
            )
        )
    if not config.objectives:
        return out
    out.append(
        sft_stage(
            "sft", shards="shards", selection="selection", output=ADAPTERS, round_=1, config=config
        )
    )
    if config.select.compare_linear:
        out.append(
            sft_stage(
                "sft_linear",
                shards="shards_linear",
                selection="selection_linear",
                output=ADAPTERS_LINEAR,
                round_=1,
                config=config,
            )
        )
    if uses_init(config):
        from paretohqd.stages.models.init import SQL, run_sft_init

        data = config.init.data
        out.append(
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
        )
    if config.regenerate is not None:
        out.append(
            Stage(
                name="regenerate",
                fn=run_regenerate,
                inputs=("adapters", "selection", "samples", *policy_inputs(config)),
                outputs=(GENERATIONS, REGEN_PROMPTS),
                section="regenerate",
                version="1",
                params=lambda c: {
                    "regenerate": c.regenerate.model_dump(mode="json") if c.regenerate else None,
                    "generation": c.generation.model_dump(mode="json"),
                    "run": {"seed": c.run.seed},
                },
                sql=("sample_prompts.sql", "shard_index.sql"),
                description="representative round-1 adapters answer fresh train prompts",
            )
        )
    return out
