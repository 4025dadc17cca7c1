"""The reward_heads stage function: fit one Bradley-Terry head per ``[[reward_heads]]`` entry.

Pairs come from the human preference relation (train split only), so held-out prompts never
leak into a reward that later scores them. Each head lands in ``reward_heads/<name>/`` with its
model card and held-out pairwise accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paretohqd.atomic import prune_dirs
from paretohqd.catalog import run_sql
from paretohqd.errors import DataError
from paretohqd.stage import StageContext


def run_reward_heads(ctx: StageContext) -> Mapping[str, Any]:
    """Train and save every configured head; return their metrics for the manifest."""
    from paretohqd.errors import ConfigError
    from paretohqd.stages.kit.scoring.embedding import (
        BTTrainOptions,
        load_encoder,
        save_head,
        train_bt_head,
    )
    from paretohqd.stages.kit.scoring.scorers import ScorerError, parse_options

    root = ctx.path("reward_heads")
    prune_dirs(root, {h.name for h in ctx.config.reward_heads})
    metrics: dict[str, Any] = {}
    for head_cfg in ctx.config.reward_heads:
        con = ctx.duckdb()
        try:
            rows = run_sql(con, "reward_head_pairs.sql", {"sources": head_cfg.sources}).fetchall()
        finally:
            con.close()
        if len(rows) < 10:
            raise DataError(
                f"reward_heads.{head_cfg.name}: only {len(rows)} training pairs from sources "
                f"{head_cfg.sources or 'all'}; the preferences table has the sources "
                '(`paretohqd sql "select source, count(*) from preferences group by 1"`)'
            )
        encoder_path = str(ctx.config.resolve(head_cfg.encoder)) if head_cfg.encoder else None
        if encoder_path and not ctx.config.resolve(head_cfg.encoder or "").exists():
            encoder_path = head_cfg.encoder
        encoder = load_encoder(encoder_path)
        pairs = [(p, c, r) for _, p, c, r, _ in rows]
        try:
            opts = parse_options(BTTrainOptions, head_cfg.options, name=head_cfg.name)
        except ScorerError as exc:
            raise ConfigError(f"{ctx.config.source}: reward_heads: {exc}") from None
        head, result = train_bt_head(
            pairs, encoder=encoder, seed=ctx.config.run.seed, **opts.model_dump()
        )
        sources = sorted({row[4] for row in rows})
        save_head(
            root / head_cfg.name,
            head,
            encoder_identity=encoder.identity(ctx.hasher),
            metrics=result,
            training_data_description=(
                f"{len(pairs)} human preference pairs (train split) from "
                f"{', '.join(sources)}, ingested by paretohqd run {ctx.config.run.name!r}"
            ),
        )
        metrics[head_cfg.name] = {"pairs": len(pairs), "sources": sources, **result}
    return {"heads": metrics}
