"""The sft stage function: one LoRA adapter per preference shard, incrementally.

Each preference is an item of the engine's :meth:`~paretohqd.stage.StageContext.map_items`,
defined by its shard's ``selection_hash``, the training settings and (round two) the key of
the round-one adapter it continues; a preference whose definition is unchanged keeps its
adapter, so changing k for one grid or adding a preference retrains only what changed.
:func:`train_shard` is the worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import DataError
from paretohqd.executor import Item, read_item_keys
from paretohqd.stage import StageContext
from paretohqd.stages.kit.selection import shard_index
from paretohqd.stages.kit.tracking import AdapterRun, adapter_run
from paretohqd.stages.kit.training.settings import sft_settings
from paretohqd.stages.kit.training.sft import SFTSettings

if TYPE_CHECKING:
    from paretohqd.stages.kit.training.fused import Done, FusedJob


@dataclass(frozen=True)
class ShardSpec:
    """What every preference's worker needs (picklable): the base model, the settings, the
    shards' directory, the objectives' names (for the shard card) and the stage's adapter run
    (plot titles, tracker)."""

    base_model: str
    settings: SFTSettings
    shards: Path
    objectives: list[str]
    run: AdapterRun | None = None


@dataclass(frozen=True)
class Shard:
    """One preference's item payload: its weights and the adapter it continues (round two)."""

    weights: list[float]
    init_adapter: Path | None


def _job(spec: ShardSpec, item: Item, key: str, target: Path) -> FusedJob:
    """Preference ``item``'s training: SFT on its shard, into ``target``."""
    import polars as pl

    from paretohqd.stages.kit.cards import DATA
    from paretohqd.stages.kit.training.fused import FusedJob
    from paretohqd.stages.kit.training.sft import SftObjective

    shard: Shard = item.payload
    frame = pl.read_parquet(spec.shards / item.id / DATA, columns=["prompt", "completion"])
    rows = list(zip(frame["prompt"].to_list(), frame["completion"].to_list(), strict=True))
    state = {
        "key": key,
        "pref_id": item.id,
        "shard_card": dict(zip(spec.objectives, shard.weights, strict=False)),
    }
    run = spec.run.of(item.id, shard.weights) if spec.run else None
    return FusedJob(SftObjective(rows), target, item.id, state, shard.init_adapter, run)


def train_shard(spec: ShardSpec, item: Item, key: str, target: Path) -> Mapping[str, Any]:
    """The item worker: SFT on preference ``item``'s shard into ``target``."""
    from paretohqd.stages.kit.training.loop import train_adapter

    job = _job(spec, item, key, target)
    return train_adapter(
        spec.base_model,
        job.objective,
        spec.settings,
        target,
        init_adapter=job.init_adapter,
        extra_state=job.extra_state,
        run=job.run,
    )


def train_shards(spec: ShardSpec, units: Sequence[tuple[Item, str, Path]], done: Done) -> None:
    """The group worker: every stale preference's adapter in one fused pass."""
    from paretohqd.stages.kit.training.fused import train_fused

    train_fused(spec.base_model, [_job(spec, *unit) for unit in units], spec.settings, done)


def run_sft(
    ctx: StageContext,
    *,
    shards: str,
    selection: str,
    output: str,
    init: str | None,
    steps: int,
) -> Mapping[str, Any]:
    """Train (or keep) the adapter of every preference of the ``selection`` artifact."""
    from paretohqd.stages.kit.policy.identity import policy_model

    settings = sft_settings(ctx.config, steps=steps)
    base = policy_model(ctx.config)
    index = shard_index(ctx, selection)
    prefs = sorted(index)
    if not prefs:
        raise DataError(f"sft: the selection `{selection}` is empty; run the select stage first")
    init_keys = read_item_keys(ctx.path(init)) if init else {}
    items = []
    for pref in prefs:
        init_dir = ctx.path(init) / pref if init else None
        if init_dir is not None and not (
            pref in init_keys and (init_dir / "adapter_config.json").exists()
        ):
            raise DataError(f"sft: no round-one adapter for {pref} at {init_dir}")
        definition = {
            "shard": index[pref]["selection_hash"],
            "settings": asdict(settings),
            "init": init_keys.get(pref),
        }
        items.append(Item(pref, definition, Shard(list(index[pref]["weights"]), init_dir)))
    spec = ShardSpec(
        base, settings, ctx.path(shards), ctx.config.pareto_objectives, adapter_run(ctx, output)
    )
    group = train_shards if settings.fused else None
    run = ctx.map_items(train_shard, spec, items, ctx.path(output), unit="adapter", group=group)
    return {
        "trained": run.made,
        "kept": run.kept,
        "fused": sum(1 for m in run.metrics.values() if m.get("fused")),
        "metrics": run.metrics,
        "base_model": base,
    }


def export_trl(
    ctx: StageContext, *, shards: str, selection: str, variant: str, out: Path | None = None
) -> Mapping[str, Any]:
    """The ``export-trl`` tool: every shard of ``selection`` as a TRL SFT dataset with exactly
    the tokens this stage trains on (:mod:`~paretohqd.stages.kit.export.trl`), one directory per
    preference under ``out`` (default ``RUN/export/trl``) ``/sft-<variant>/``."""
    import polars as pl

    from paretohqd.stages.kit.cards import DATA
    from paretohqd.stages.kit.export.trl import sft_rows, sft_table, write_train
    from paretohqd.stages.kit.policy.identity import policy_model
    from paretohqd.stages.kit.policy.loading import load_tokenizer

    settings = sft_settings(ctx.config)
    if not ctx.path(selection).exists():
        raise DataError(
            f"export trl: no {selection} table at {ctx.path(selection)}; run the stages first "
            f"(`paretohqd run --until {ctx.stage.name}`)"
        )
    index = shard_index(ctx, selection)
    base = policy_model(ctx.config)
    tok = load_tokenizer(base, padding_side="right")
    root = Path(out) if out is not None else ctx.run_dir / "export" / "trl"
    target = root / f"sft-{variant}"
    written: dict[str, dict[str, int]] = {}
    for pref in sorted(index):
        frame = pl.read_parquet(
            ctx.path(shards) / pref / DATA, columns=["sample_id", "rank", "prompt", "completion"]
        )
        pairs = list(zip(frame["prompt"].to_list(), frame["completion"].to_list(), strict=True))
        rows = sft_rows(tok, pairs, max_length=settings.max_length, template=settings.template)
        extra = {"sample_id": frame["sample_id"].to_list(), "rank": frame["rank"].to_list()}
        write_train(sft_table(rows, extra), target / pref)
        written[pref] = {
            "rows": len(rows),
            "truncated": sum(r.truncated for r in rows),
            "text_exact": sum(r.text_exact for r in rows),
        }
    return {
        "out": target,
        "base_model": base,
        "max_length": settings.max_length,
        "template": settings.template,
        "preferences": written,
    }
