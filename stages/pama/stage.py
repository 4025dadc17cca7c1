"""The pama stage function: one PAMA adapter per preference, trained online.

Prompts come from the round-one shards (``sql/shard_prompts.sql``); rewards from the run's
scorers; rollouts from the transformers policy or, with ``generation.backend = "vllm"``, one
vLLM engine shared by all preferences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from paretohqd.atomic import prune_dirs
from paretohqd.catalog import run_sql
from paretohqd.hashing import sha256_json
from paretohqd.stage import StageContext


def run_pama(ctx: StageContext, *, output: str) -> Mapping[str, Any]:
    """Train one PAMA adapter per preference, on prompts of the round-one shards."""

    from paretohqd.stages.kit.policy.identity import start_model
    from paretohqd.stages.kit.preferences import build_grid
    from paretohqd.stages.kit.scoring.run import build_scorers
    from paretohqd.stages.kit.training.pama import train_pama
    from paretohqd.stages.kit.training.recipes import method_shape
    from paretohqd.stages.kit.training.settings import adapter_is_current, sft_settings

    cfg, policy = ctx.config.pama, ctx.config.policy
    assert cfg is not None and policy is not None
    objectives = ctx.config.pareto_objectives
    scorers = [s for s in build_scorers(ctx.config, ctx.hasher) if s.name in objectives]
    scorers.sort(key=lambda s: objectives.index(s.name))
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
        **method_shape(ctx.config, "pama"),
    )
    start = start_model(ctx.config, cfg.init)
    prefs = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    out_root = ctx.path(output)
    trained, kept, metrics = [], [], {}
    generator = None
    if ctx.config.generation.backend == "vllm":  # rollouts from vLLM, one engine for all prefs
        from paretohqd.stages.kit.policy.generate import GenerationSettings, make_generator

        generator = make_generator(
            start,
            GenerationSettings(
                max_new_tokens=cfg.max_new_tokens,
                top_p=cfg.top_p,
                top_k=0,
                template=settings.template,
                seed=settings.seed,
                device=policy.device,
                dtype=policy.dtype,
            ),
            "vllm",
        )
    for pref in prefs:
        key = sha256_json(
            {
                "prompts": sha256_json(prompts),
                "settings": asdict(settings),
                "pama": cfg.model_dump(mode="json"),
                "weights": pref.weights,
                "scorers": [s.identity() for s in scorers],
                "version": ctx.stage.version,
                "start": cfg.init,
            }
        )
        target = out_root / pref.pref_id
        if adapter_is_current(target, key):
            kept.append(pref.pref_id)
            continue
        metrics[pref.pref_id] = train_pama(
            start,
            prompts,
            scorers,
            pref.weights,
            target,
            settings=settings,
            cfg=cfg,
            extra_state={
                "key": key,
                "pref_id": pref.pref_id,
                "objectives": objectives,
                "start": cfg.init,
            },
            generator=generator,
        )
        trained.append(pref.pref_id)
    prune_dirs(out_root, {p.pref_id for p in prefs})
    return {
        "trained": trained,
        "kept": kept,
        "metrics": metrics,
        "prompts": len(prompts),
        "start": cfg.init,
        "start_model": start,
        **{k: v for k, v in asdict(settings).items() if k in ("lr", "lora_r", "lora_alpha")},
    }
