"""Training a pairwise method (MODPO, RACO): one adapter per preference of the select grid.

``run_pairwise_method`` reads ``pairs.parquet`` joined with the samples' text, and trains one
adapter per preference into ``adapters/<method>/<pref_id>/``, keeping adapters whose pairs and
settings did not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from paretohqd.atomic import prune_dirs
from paretohqd.errors import DataError
from paretohqd.hashing import sha256_json
from paretohqd.stage import StageContext


def pair_rows(ctx: StageContext, objectives: list[str]) -> Any:
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


def run_pairwise_method(ctx: StageContext, *, method: str, output: str) -> Mapping[str, Any]:
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
    frame, rows = pair_rows(ctx, objectives)
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
