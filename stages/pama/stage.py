"""The pama stage function: one PAMA adapter per preference, trained online.

Prompts come from the round-one shards (``sql/shard_prompts.sql``); rewards from the run's
scorers; rollouts from the transformers policy or, with ``generation.backend = "vllm"``, one
vLLM engine per process shared by all preferences. Each preference is an item of the engine's
:meth:`~paretohqd.stage.StageContext.map_items`, so a preference whose prompts, settings and
scorers did not change keeps its adapter; :func:`train_pama_item` is the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from paretohqd.catalog import run_sql
from paretohqd.config import Config
from paretohqd.executor import Item, release_worker_state, worker_state
from paretohqd.hashing import FileHasher, sha256_json
from paretohqd.stage import StageContext
from paretohqd.stages.kit.methods import MethodSpec
from paretohqd.stages.kit.tracking import adapter_run
from paretohqd.stages.pama.config import PamaConfig


@dataclass(frozen=True)
class PamaSpec(MethodSpec):
    """What every preference's worker needs (picklable): the method's start and settings, the
    prompts, the ``[pama]`` table; ``config`` builds the scorers and ``generation`` (vLLM
    rollouts, or None) the generator in the worker's process."""

    prompts: list[str]
    pama: PamaConfig
    config: Config
    generation: Any | None


def pama_scorers(config: Config, hasher: FileHasher) -> list[Any]:
    """The run's scorers of the Pareto objectives, in their order; built once per process."""
    from paretohqd.stages.kit.scoring.run import build_scorers

    objectives = config.pareto_objectives

    def build() -> list[Any]:
        scorers = [s for s in build_scorers(config, hasher) if s.name in objectives]
        return sorted(scorers, key=lambda s: objectives.index(s.name))

    key = [o.model_dump(mode="json") for o in config.objectives], str(config.run_dir)
    return worker_state("pama.scorers", key, build)


def train_pama_item(spec: PamaSpec, item: Item, key: str, target: Path) -> Mapping[str, Any]:
    """The item worker: train preference ``item`` (its weights are the payload) into ``target``."""
    from paretohqd.stages.pama.objective import PamaObjective

    generator = None
    if spec.generation is not None:  # rollouts from vLLM: one engine per process
        from paretohqd.stages.kit.policy.generate import make_generator

        generator = worker_state(
            "pama.generator",
            (spec.start_model, asdict(spec.generation)),
            lambda: make_generator(spec.start_model, spec.generation, "vllm"),
        )
    objective = PamaObjective(
        spec.prompts,
        pama_scorers(spec.config, FileHasher()),
        item.payload,
        spec.pama,
        snapshots=target.parent / f".rollout-{target.name}",
        generator=generator,
    )
    return spec.train(objective, item, key, target, item.payload)


def run_pama(ctx: StageContext, *, output: str) -> Mapping[str, Any]:
    """Train one PAMA adapter per preference, on prompts of the round-one shards."""
    from paretohqd.stages.kit.policy.generate import GenerationSettings
    from paretohqd.stages.kit.policy.identity import start_model
    from paretohqd.stages.kit.preferences import build_grid
    from paretohqd.stages.kit.training.recipes import method_shape
    from paretohqd.stages.kit.training.settings import sft_settings

    cfg, policy = ctx.config.pama, ctx.config.policy
    assert cfg is not None and policy is not None
    objectives = ctx.config.pareto_objectives
    scorers = pama_scorers(ctx.config, ctx.hasher)
    con = ctx.duckdb()
    try:
        prompts = [p for (p,) in run_sql(con, "shard_prompts.sql").fetchall()]
    finally:
        con.close()
    settings = sft_settings(  # no train_threads: PAMA generates inside its loop
        ctx.config,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        threads=None,
        fused=False,  # each adapter's rollouts generate with it alone
        **method_shape(ctx.config, "pama"),
    )
    start = start_model(ctx.config, cfg.init)
    prefs = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    generation = None
    if ctx.config.generation.backend == "vllm":
        generation = GenerationSettings(
            max_new_tokens=cfg.max_new_tokens,
            top_p=cfg.top_p,
            top_k=0,
            template=settings.template,
            seed=settings.seed,
            device=policy.device,
            dtype=policy.dtype,
        )
    definition = {
        "prompts": sha256_json(prompts),
        "settings": asdict(settings),
        "pama": cfg.model_dump(mode="json"),
        "scorers": [s.identity() for s in scorers],
        "start": cfg.init,
    }
    items = [Item(p.pref_id, definition | {"weights": p.weights}, p.weights) for p in prefs]
    spec = PamaSpec(
        start,
        settings,
        objectives,
        cfg.init,
        prompts,
        cfg,
        ctx.config,
        generation,
        run=adapter_run(ctx, output),
    )
    try:
        run = ctx.map_items(train_pama_item, spec, items, ctx.path(output), unit="adapter")
    finally:
        release_worker_state("pama.scorers")
        release_worker_state("pama.generator")
    return {
        "trained": run.made,
        "kept": run.kept,
        "metrics": run.metrics,
        "prompts": len(prompts),
        "start": cfg.init,
        "start_model": start,
        **{k: v for k, v in asdict(settings).items() if k in ("lr", "lora_r", "lora_alpha")},
    }
