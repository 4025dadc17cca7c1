"""The reward_heads stage function: fit one Bradley-Terry head per ``[[reward_heads]]`` entry.

Pairs come from the human preference relation (train split only), so held-out prompts never
leak into a reward that later scores them. Each head is one item of the engine's executor
(:meth:`~paretohqd.stage.StageContext.map_items`): :func:`train_head` fits it into
``reward_heads/<name>/`` with its model card and held-out pairwise accuracy. A head's key is
what defines it (its table, the run seed, the exact training pairs; the engine adds the
encoders' identities), so when one head's table changes only that head is trained again,
and a head whose key some earlier run under the same ``run.root`` trained is copied from the
cache (``run.root/.cache/reward_heads/<key>``) instead of trained again.

A head no better than chance would quietly select, train and evaluate on noise, so the stage
fails when a head's held-out pairwise accuracy is below its ``min_accuracy`` (the heads stay on
disk and in the cache: lowering the bar, or fixing the data, reruns in seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paretohqd.catalog import run_sql
from paretohqd.config import RewardHeadConfig
from paretohqd.errors import DataError
from paretohqd.executor import Item
from paretohqd.hashing import FileHasher, sha256_json
from paretohqd.stage import StageContext


@dataclass(frozen=True)
class HeadsSpec:
    """What every head worker shares, picklable: the run seed and name, where the run's file
    hashes are cached (so the encoder's hash is not recomputed), and ``run.encode_threads``."""

    seed: int
    run_name: str
    hashes: Path | None
    encode_threads: int | None = None
    cache: Path | None = None


@dataclass(frozen=True)
class HeadData:
    """One head's training input (the item's payload): its pairs and their sources, the
    encoder to load (None: the default), and the validated training options."""

    pairs: tuple[tuple[str, str, str], ...]
    sources: tuple[str, ...]
    encoder: str | None
    options: Mapping[str, Any]


def train_head(spec: HeadsSpec, item: Item, key: str, target: Path) -> dict[str, Any]:
    """Item worker: fit head ``item.id`` on its pairs and save it into ``target`` atomically
    (the encoder is loaded once per process and shared by the heads on it), or copy it from
    the cache when a run under the same root trained this key; cache what it trains."""
    from paretohqd.stages.kit.scoring.embedding import load_head

    cached = spec.cache / key if spec.cache is not None else None
    if cached is not None and (cached / "head.safetensors").is_file():
        _copy_dir(cached, target)
        return dict(load_head(target).metrics) | {"cached": True}
    result = _fit_head(spec, item, target)
    if cached is not None:
        _copy_dir(target, cached)
    return result


def _copy_dir(source: Path, target: Path) -> None:
    """Copy a head directory into place atomically (a reader never sees half of one)."""
    import shutil

    from paretohqd.atomic import atomic_path

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copytree(source, tmp)


def _fit_head(spec: HeadsSpec, item: Item, target: Path) -> dict[str, Any]:
    from paretohqd.stages.kit.scoring.embedding import (
        encode_threads,
        load_encoder,
        save_head,
        train_bt_head,
    )

    data: HeadData = item.payload
    encoder = load_encoder(data.encoder)
    with encode_threads(spec.encode_threads):
        head, result = train_bt_head(
            list(data.pairs), encoder=encoder, seed=spec.seed, **dict(data.options)
        )
    save_head(
        target,
        head,
        encoder_identity=encoder.identity(FileHasher(spec.hashes)),
        metrics=result,
        training_data_description=(
            f"{len(data.pairs)} human preference pairs (train split) from "
            f"{', '.join(data.sources)}, ingested by paretohqd"
        ),
    )
    return result


def _head_item(ctx: StageContext, con: Any, head_cfg: RewardHeadConfig) -> Item:
    """A head as an item: its pairs (at least 10), encoder and options validated here, at the
    edge, before any head trains."""
    from paretohqd.errors import ConfigError
    from paretohqd.stages.kit.scoring.embedding import BTTrainOptions
    from paretohqd.stages.kit.scoring.scorers import ScorerError, parse_options

    rows = run_sql(con, "reward_head_pairs.sql", {"sources": head_cfg.sources}).fetchall()
    if len(rows) < 10:
        raise DataError(
            f"reward_heads.{head_cfg.name}: only {len(rows)} training pairs from sources "
            f"{head_cfg.sources or 'all'}; the preferences table has the sources "
            '(`paretohqd sql "select source, count(*) from preferences group by 1"`)'
        )
    encoder_path = str(ctx.config.resolve(head_cfg.encoder)) if head_cfg.encoder else None
    if encoder_path and not ctx.config.resolve(head_cfg.encoder or "").exists():
        encoder_path = head_cfg.encoder
    try:
        opts = parse_options(BTTrainOptions, head_cfg.options, name=head_cfg.name)
    except ScorerError as exc:
        raise ConfigError(f"{ctx.config.source}: reward_heads: {exc}") from None
    data = HeadData(
        pairs=tuple((p, c, r) for _, p, c, r, _ in rows),
        sources=tuple(sorted({row[4] for row in rows})),
        encoder=encoder_path,
        options=opts.model_dump(),
    )
    key = {  # min_accuracy judges the head; it does not change it
        "head": head_cfg.model_dump(mode="json", exclude={"min_accuracy"}),
        "seed": ctx.config.run.seed,
        "pairs": sha256_json([list(row) for row in rows]),
    }
    return Item(head_cfg.name, key, payload=data)


def run_reward_heads(ctx: StageContext) -> Mapping[str, Any]:
    """Train every configured head whose key changed (keep the others, remove the heads no
    longer configured); return every head's metrics for the manifest."""
    from paretohqd.stages.kit.scoring.embedding import load_head

    con = ctx.duckdb()
    try:
        items = [_head_item(ctx, con, head_cfg) for head_cfg in ctx.config.reward_heads]
    finally:
        con.close()
    root = ctx.path("reward_heads")
    spec = HeadsSpec(
        seed=ctx.config.run.seed,
        run_name=ctx.config.run.name,
        hashes=ctx.hasher.cache_file,
        encode_threads=ctx.config.run.encode_threads,
        cache=ctx.config.resolve(ctx.config.run.root) / ".cache" / "reward_heads",
    )
    run = ctx.map_items(train_head, spec, items, root, unit="head")
    metrics: dict[str, Any] = {}
    for item in items:
        # A kept head's metrics are the ones saved with it when it was trained.
        result = dict(run.metrics.get(item.id) or load_head(root / item.id).metrics)
        data: HeadData = item.payload
        metrics[item.id] = {"pairs": len(data.pairs), "sources": list(data.sources), **result}
    cached = [i for i in run.made if metrics[i].pop("cached", False)]
    gate(ctx.config.reward_heads, metrics)
    note = "held-out accuracy " + ", ".join(f"{name} {_accuracy(m)}" for name, m in metrics.items())
    return {
        "heads": metrics,
        "trained": [i for i in run.made if i not in cached],
        "cached": cached,
        "kept": run.kept,
        "note": note,
    }


def _accuracy(m: Mapping[str, Any]) -> str:
    acc = m.get("val_accuracy")
    if not isinstance(acc, float) or acc != acc:  # none held out (NaN)
        return "n/a (no held-out pairs)"
    return f"{acc:.3f} ({m.get('val_pairs')} pairs)"


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson 95% interval of a proportion ``p`` over ``n`` trials (for the gate's line:
    whether a head is clearly above chance or only just)."""
    import math

    if n <= 0:
        return (0.0, 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def gate(heads: list[RewardHeadConfig], metrics: Mapping[str, Mapping[str, Any]]) -> None:
    """Fail on the first head whose held-out pairwise accuracy is below its ``min_accuracy``.

    A head with no held-out pairs (``val_fraction = 0``) cannot be judged and passes; its card
    and ``status`` say n/a.
    """
    for head in heads:
        m = metrics[head.name]
        acc, n = m.get("val_accuracy"), int(m.get("val_pairs") or 0)
        if not isinstance(acc, float) or acc != acc or acc >= head.min_accuracy:
            continue
        lo, hi = wilson(acc, n)
        raise DataError(
            f"reward_heads.{head.name}: held-out pairwise accuracy {acc:.3f} on {n} pairs "
            f"(95% interval {lo:.2f}-{hi:.2f}; {m.get('pairs')} pairs in all from "
            f"{', '.join(m.get('sources') or [])}) is below min_accuracy {head.min_accuracy} "
            "(0.5 is chance). Check that the pairs are oriented (chosen is "
            "the preferred response; for labelled pairs, the source's label_map), give it more "
            "pairs or another encoder, or set reward_heads min_accuracy lower to accept it"
        )
