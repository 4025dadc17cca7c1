"""The pairs stage function: preference pairs with per-objective margins and signs.

``run_pairs`` writes ``pairs.parquet`` from ``sql/pairs.sql``: for every prompt with two
scored train responses, the margin of each objective (a minus b), normalised, and its sign
(0 within ``pairs.tie_epsilon``). MODPO and RACO train on this one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.catalog import query_arrow
from paretohqd.errors import DataError
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


def export_dpo(ctx: StageContext, *, out: Path | None = None) -> Mapping[str, Any]:
    """The ``export-dpo`` tool: the pairs as TRL preference datasets (``prompt``, ``chosen``,
    ``rejected``), one directory per preference of the select grid under ``out`` (default
    ``RUN/export/trl``) ``/dpo/``, each pair oriented by the preference's weighted normalised
    margin (:func:`~paretohqd.stages.kit.export.trl.orient_pairs`), zero-margin pairs dropped."""
    from paretohqd.stages.kit.export.trl import (
        dpo_table,
        leading_space,
        orient_pairs,
        pair_prompts,
        write_train,
    )
    from paretohqd.stages.kit.policy.identity import policy_model
    from paretohqd.stages.kit.policy.loading import load_tokenizer, render_prompt
    from paretohqd.stages.kit.preferences import build_grid
    from paretohqd.stages.kit.training.pairwise import pair_rows
    from paretohqd.stages.kit.training.settings import sft_settings

    if not ctx.path("pairs").exists():
        raise DataError(
            f"export trl --pairs: no pairs table at {ctx.path('pairs')}; run the stages first "
            "(`paretohqd run --until pairs`)"
        )
    objectives = ctx.config.pareto_objectives
    frame, rows = pair_rows(ctx, objectives)
    tok = load_tokenizer(policy_model(ctx.config), padding_side="right")
    settings = sft_settings(ctx.config)
    rendered = [render_prompt(tok, p, settings.template) for p in rows.prompts]
    prompts, cut = pair_prompts(tok, rendered, rows.a, rows.b, max_length=settings.max_length)
    lead = leading_space(tok)
    extra = {
        "prompt_cut": cut,
        "prompt_id": frame["prompt_id"].to_list(),
        "a_id": frame["a_id"].to_list(),
        "b_id": frame["b_id"].to_list(),
    }
    root = Path(out) if out is not None else ctx.run_dir / "export" / "trl"
    target = root / "dpo"
    written: dict[str, dict[str, int]] = {}
    grid = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    for pref in grid:
        oriented = orient_pairs(rows.margins, pref.weights)
        table = dpo_table(prompts, rows.a, rows.b, oriented, lead=lead, extra=extra)
        write_train(table, target / pref.pref_id)
        written[pref.pref_id] = {
            "pairs": len(oriented.keep),
            "dropped_zero_margin": oriented.dropped,
        }
    return {
        "out": target,
        "pairs": len(rows),
        "prompt_cut": sum(cut),
        "max_length": settings.max_length,
        "preferences": written,
    }
