"""The regenerate stage function: representative round-one adapters answer fresh prompts.

Representatives (docs/algorithms.md §6): the adapter of each one-hot preference plus the
most balanced preference of the grid. Each (adapter, chunk of prompts) is one resumable part,
so a killed run continues where it stopped. Output rows follow the samples schema, with
``source = "regen:<pref_id>"``, so round two reuses the score/pareto/select stages unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.catalog import run_sql
from paretohqd.errors import DataError
from paretohqd.stage import StageContext


def representatives(pref_ids: Sequence[str], weights: Mapping[str, Sequence[float]]) -> list[str]:
    """One-hot preferences (one per objective) plus the one closest to uniform weights."""
    reps = [p for p in pref_ids if max(weights[p]) >= 1 - 1e-9]
    m = len(next(iter(weights.values())))
    uniform = np.full(m, 1 / m)
    balanced = min(
        pref_ids, key=lambda p: (float(np.abs(np.asarray(weights[p]) - uniform).sum()), p)
    )
    if balanced not in reps:
        reps.append(balanced)
    return reps


def run_regenerate(ctx: StageContext) -> Mapping[str, Any]:
    """Generate one response per (representative adapter, prompt) into generations.parquet."""
    import polars as pl

    from paretohqd.atomic import write_parquet
    from paretohqd.stages.kit.policy.generate import generation_settings, make_generator
    from paretohqd.stages.kit.policy.identity import policy_model
    from paretohqd.stages.kit.records import normalise, sample_id
    from paretohqd.stages.kit.selection import shard_index

    cfg, gen_cfg = ctx.config.regenerate, ctx.config.generation
    policy = ctx.config.policy
    assert cfg is not None and policy is not None
    adapters: Path = ctx.path("adapters")
    pref_ids = sorted(p.name for p in adapters.iterdir() if (p / "adapter_config.json").exists())
    if not pref_ids:
        raise DataError(f"regenerate: no adapters under {adapters}; run the sft stage first")
    index = shard_index(ctx, "selection")
    pref_ids = [p for p in pref_ids if p in index]  # sft keeps exactly the selection's
    if not pref_ids:
        raise DataError("regenerate: no adapter matches a preference of the selection")
    reps = representatives(pref_ids, {p: index[p]["weights"] for p in pref_ids})
    con = ctx.duckdb()
    try:
        prompts = run_sql(
            con,
            "sample_prompts.sql",
            {"split": "train", "n": cfg.prompts, "seed": ctx.config.run.seed},
        ).fetchall()
    finally:
        con.close()
    if not prompts:
        raise DataError("regenerate: samples has no train prompts")
    settings = generation_settings(ctx.config)
    base = policy_model(ctx.config)
    # The frozen prompt list: an artifact, so round two's inputs are inspectable in SQL.
    write_parquet(
        ctx.path("regen_prompts"),
        pl.DataFrame({"prompt_id": [pid for pid, _ in prompts], "prompt": [p for _, p in prompts]}),
    )
    generator = None
    parts = ctx.parts()
    parts.drop_stale()
    chunks = math.ceil(len(prompts) / cfg.part_size)
    counts = {"truncated": 0, "skipped": 0, "new_tokens": 0}
    for r, pref in enumerate(reps):
        for c in range(chunks):
            index = r * chunks + c
            if parts.done(index):
                continue
            chunk = prompts[c * cfg.part_size : (c + 1) * cfg.part_size]
            if generator is None:  # loaded once, only when some part is left to do
                generator = make_generator(base, settings, gen_cfg.backend)
            result = generator.generate(
                [p for _, p in chunk], adapter=adapters / pref, seed=settings.seed + index
            )
            rows = [
                (pid, prompt, normalise(text))
                for (pid, prompt), text in zip(chunk, result.texts, strict=True)
                if text is not None
            ]
            parts.write(
                index,
                pl.DataFrame(
                    {
                        "sample_id": [sample_id(p, t) for _, p, t in rows],
                        "prompt_id": [pid for pid, _, _ in rows],
                        "prompt": [p for _, p, _ in rows],
                        "response": [t for _, _, t in rows],
                        "source": f"regen:{pref}",
                        "split": "train",
                        "truncated_prompts": result.truncated,
                        "skipped_prompts": result.skipped,
                        "new_tokens": result.new_tokens,
                    },
                    schema_overrides={
                        "truncated_prompts": pl.Int32,
                        "skipped_prompts": pl.Int32,
                        "new_tokens": pl.Int64,
                    },
                ),
            )
    frames = [pl.read_parquet(p) for p in parts.paths()]
    table = pl.concat(frames) if frames else pl.DataFrame()
    for key, col in (
        ("truncated", "truncated_prompts"),
        ("skipped", "skipped_prompts"),
        ("new_tokens", "new_tokens"),
    ):
        # Per-part counters are repeated on every row of the part: take one per part.
        counts[key] = int(sum(f[col][0] for f in frames if f.height))
    generated = table.height
    table = table.drop("truncated_prompts", "skipped_prompts", "new_tokens").unique(
        "sample_id", keep="first", maintain_order=True
    )
    if table.height == 0:
        raise DataError("regenerate: every prompt was skipped; see generation.long_prompt")
    write_parquet(ctx.path("generations"), table)
    parts.clear()
    return {
        "representatives": reps,
        "prompts": len(prompts),
        "generated": generated,
        "duplicates_dropped": generated - table.height,
        **counts,
        "backend": gen_cfg.backend,
    }
