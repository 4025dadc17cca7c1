"""The ``sft_init`` stage function: the shared SFT start of MODPO, RACO and PAMA.

MODPO, RACO and PAMA all start from an SFT model and use it as their frozen reference (MODPO:
"π_ref = the SFT model"; PAMA: "the SFT stage is shared across methods"). This stage trains
that model once: a LoRA SFT on the preferred responses of the training preferences (MODPO's
recipe; ``init.data = "top_layer"`` takes the first Pareto layer instead, for data without
human preferences), merged into the base weights and saved as a full model directory. A method
then puts a fresh LoRA adapter on it, and "adapter disabled" is exactly the SFT reference.
ParetoHqD starts from the base model, as in its paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from paretohqd.catalog import run_sql
from paretohqd.errors import DataError
from paretohqd.stage import StageContext

SQL = {"chosen": "init_chosen.sql", "top_layer": "init_top_layer.sql"}


def init_rows(ctx: StageContext) -> list[tuple[str, str]]:
    """The (prompt, response) rows the shared start trains on."""
    cfg = ctx.config.init
    con = ctx.duckdb()
    try:
        rows = run_sql(
            con,
            SQL[cfg.data],
            {
                "splits": list(ctx.config.pareto.splits),
                "n": cfg.max_rows or 1 << 62,
                "seed": ctx.config.run.seed,
            },
        ).fetchall()
    finally:
        con.close()
    if not rows:
        hint = (
            "the ingested sources hold no chosen/rejected pairs in the training splits; set "
            'init.data = "top_layer" or ingest pairwise data'
            if cfg.data == "chosen"
            else "the first Pareto layer has no training rows"
        )
        raise DataError(f"sft_init: no training rows ({hint})")
    return [(prompt, response) for _, prompt, response in rows]


def run_sft_init(ctx: StageContext, *, output: str) -> Mapping[str, Any]:
    """Train the shared SFT adapter, merge it into the base weights, save the model."""
    from paretohqd.atomic import atomic_path, write_text
    from paretohqd.stages.kit.policy.identity import policy_model
    from paretohqd.stages.kit.policy.loading import load_policy, load_tokenizer
    from paretohqd.stages.kit.tracking import adapter_run
    from paretohqd.stages.kit.training.loop import train_adapter
    from paretohqd.stages.kit.training.settings import sft_settings
    from paretohqd.stages.kit.training.sft import SftObjective

    cfg = ctx.config.init
    rows = init_rows(ctx)
    batch = cfg.batch_size or ctx.config.sft.batch_size
    steps = cfg.steps or math.ceil(len(rows) / (batch * ctx.config.sft.grad_accum))
    settings = sft_settings(
        ctx.config, steps=steps, batch_size=batch, lr=cfg.lr or ctx.config.sft.lr, fused=False
    )  # one adapter: nothing to fuse
    base = policy_model(ctx.config)
    with atomic_path(ctx.path(output)) as tmp:
        metrics = train_adapter(
            base,
            SftObjective(rows, lr_option="init.lr"),
            settings,
            tmp / "adapter",
            extra_state={"pref_id": "sft_init", "data": cfg.data},
            run=adapter_run(ctx, output),
        )
        model = load_policy(base, adapter=tmp / "adapter", device="cpu", dtype=settings.dtype)
        merged = model.merge_and_unload()
        merged.save_pretrained(str(tmp), safe_serialization=True)
        load_tokenizer(base).save_pretrained(str(tmp))
        write_text(tmp / "README.md", init_card(base, cfg.data, metrics, settings))
    return {
        "rows": len(rows),
        "data": cfg.data,
        "steps": steps,
        "metrics": metrics,
        "base_model": base,
    }


def init_card(base: str, data: str, metrics: Mapping[str, Any], settings: Any) -> str:
    """The card of the shared SFT start."""
    what = (
        "the preferred (chosen) responses of the training preference pairs (MODPO's recipe)"
        if data == "chosen"
        else "the first Pareto layer of the training pool"
    )
    return f"""---
base_model: {base}
tags: [paretohqd, sft, merged-lora]
---
# sft_init: the shared SFT start of MODPO, RACO and PAMA

A LoRA SFT of the base policy on {what}: {metrics["rows"]} rows, {metrics["steps"]} steps of
batch {settings.batch_size}, AdamW lr {settings.lr}, LoRA r {settings.lora_r} / alpha
{settings.lora_alpha}, merged into the base weights (the adapter is kept in `adapter/`). Loss
{metrics["first_loss"]:.4f} → {metrics["last_loss"]:.4f}. The methods put a fresh LoRA adapter
on this model and use it, adapter disabled, as their frozen reference.
"""
