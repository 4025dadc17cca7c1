"""The pairs stage and the pairwise method stages (modpo, raco): functions.

``run_pairs`` writes ``pairs.parquet`` from ``sql/pairs.sql``. ``run_method`` trains one adapter
per preference of the select grid into ``adapters/<method>/<pref_id>/``, keeping adapters
whose pairs and settings did not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from paretohqd.atomic import prune_dirs
from paretohqd.catalog import query_arrow, run_sql
from paretohqd.errors import DataError
from paretohqd.hashing import sha256_json
from paretohqd.stage import StageContext


def run_pairs(ctx: StageContext) -> Mapping[str, Any]:
    """Write the pairs table with per-objective margins and signs."""
    import polars as pl

    from paretohqd.atomic import write_parquet

    objectives = ctx.config.pareto_objectives
    cfg = ctx.config.pairs
    con = ctx.duckdb()
    try:
        table = query_arrow(con, "pairs.sql", {"scope": cfg.scope})
    finally:
        con.close()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    if frame.height == 0:
        raise DataError(
            f"pairs: no prompt has two scored train responses (scope {cfg.scope!r}); "
            "use pairs.scope = 'all' or ingest paired data"
        )
    cols = []
    for i, name in enumerate(objectives):
        margin = pl.col("norm_margin").list.get(i)
        cols += [
            pl.col("margin").list.get(i).alias(f"margin_{name}"),
            margin.alias(f"norm_margin_{name}"),
            pl.when(margin > cfg.tie_epsilon)
            .then(1)
            .when(margin < -cfg.tie_epsilon)
            .then(-1)
            .otherwise(0)
            .cast(pl.Int8)
            .alias(f"sign_{name}"),
        ]
    frame = frame.with_columns(cols)
    write_parquet(ctx.path("pairs"), frame)
    signs = {n: frame[f"sign_{n}"].value_counts().sort(f"sign_{n}").rows() for n in objectives}
    agree = None
    human = frame.filter(pl.col("human") != 0)
    if human.height and objectives:
        agree = {
            n: float(np.mean(human[f"sign_{n}"].to_numpy() == human["human"].to_numpy()))
            for n in objectives
        }
    return {
        "pairs": frame.height,
        "prompts": frame["prompt_id"].n_unique(),
        "human_labelled": human.height,
        "signs": {n: {int(k): int(v) for k, v in rows} for n, rows in signs.items()},
        "agreement_with_human": agree,
        "scope": cfg.scope,
    }


def _pair_rows(ctx: StageContext, objectives: list[str]) -> Any:
    import polars as pl

    from paretohqd.stages.kit.training.loop import PairRows

    pairs = pl.read_parquet(ctx.path("pairs"))
    samples = pl.read_parquet(ctx.path("samples"), columns=["sample_id", "prompt", "response"])
    text = samples.rename({"sample_id": "a_id", "response": "a"})
    frame = (
        pairs.join(text, on="a_id")
        .join(
            samples.select(pl.col("sample_id").alias("b_id"), pl.col("response").alias("b")),
            on="b_id",
        )
        .sort("prompt_id", "a_id", "b_id")
    )
    return frame, PairRows(
        prompts=frame["prompt"].to_list(),
        a=frame["a"].to_list(),
        b=frame["b"].to_list(),
        signs=frame.select([f"sign_{n}" for n in objectives]).to_numpy().astype(np.float32),
        margins=frame.select([f"norm_margin_{n}" for n in objectives]).to_numpy(),
    )


def run_method(ctx: StageContext, *, method: str, output: str) -> Mapping[str, Any]:
    """Train one ``method`` adapter per preference of the select grid."""
    from paretohqd.stages.kit.policy.identity import start_model
    from paretohqd.stages.kit.preferences import build_grid
    from paretohqd.stages.kit.training.loop import PairRows, train_pairwise
    from paretohqd.stages.kit.training.methods import modpo_method, modpo_objective, raco_method
    from paretohqd.stages.kit.training.recipes import method_shape
    from paretohqd.stages.kit.training.settings import adapter_is_current, sft_settings

    cfg = getattr(ctx.config, method)
    policy = ctx.config.policy
    assert cfg is not None and policy is not None
    objectives = ctx.config.pareto_objectives
    prefs = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    frame, rows = _pair_rows(ctx, objectives)
    pairs_hash = ctx.hasher.path(ctx.path("pairs"))
    start = start_model(ctx.config, cfg.init)
    settings = sft_settings(
        ctx.config,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        **method_shape(ctx.config, method),
    )
    out_root = ctx.path(output)
    trained, kept, metrics = [], [], {}
    rng = np.random.default_rng(ctx.config.run.seed)
    for pref in prefs:
        if method == "modpo":
            k = modpo_objective(pref.weights)
            keep = np.flatnonzero(rows.signs[:, k] != 0)
            spec = modpo_method(pref.weights, cfg)
        else:
            keep = np.flatnonzero(np.abs(rows.signs).sum(1) > 0)
            spec = raco_method(pref.weights, cfg)
        if cfg.max_pairs is not None and len(keep) > cfg.max_pairs:
            keep = np.sort(rng.choice(keep, cfg.max_pairs, replace=False))
        if len(keep) == 0:
            raise DataError(f"{method}: no non-tied pairs for {pref.pref_id}")
        key = sha256_json(
            {
                "pairs": pairs_hash,
                "settings": asdict(settings),
                "method": cfg.model_dump(mode="json"),
                "weights": pref.weights,
                "version": ctx.stage.version,
                "keep": keep.tolist(),
                "start": cfg.init,
            }
        )
        target = out_root / pref.pref_id
        if adapter_is_current(target, key):
            kept.append(pref.pref_id)
            continue
        subset = PairRows(
            prompts=[rows.prompts[i] for i in keep],
            a=[rows.a[i] for i in keep],
            b=[rows.b[i] for i in keep],
            signs=rows.signs[keep],
            margins=rows.margins[keep],
        )
        metrics[pref.pref_id] = train_pairwise(
            start,
            subset,
            spec,
            target,
            settings=settings,
            extra_state={
                "key": key,
                "pref_id": pref.pref_id,
                "objectives": objectives,
                "start": cfg.init,
            },
        )
        trained.append(pref.pref_id)
    prune_dirs(out_root, {p.pref_id for p in prefs})
    return {
        "trained": trained,
        "kept": kept,
        "metrics": metrics,
        "pairs": frame.height,
        "start": cfg.init,
        "start_model": start,
        **{k: v for k, v in asdict(settings).items() if k in ("lr", "lora_r", "lora_alpha")},
    }


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
