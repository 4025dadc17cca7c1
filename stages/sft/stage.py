"""The sft stage function: one LoRA adapter per preference shard, incrementally.

An adapter records the shard's ``selection_hash`` and a hash of the training settings in its
``train_state.json``; a preference whose shard and settings are unchanged keeps its adapter,
so changing k for one grid or adding a preference retrains only what changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from paretohqd.atomic import prune_dirs
from paretohqd.errors import DataError
from paretohqd.hashing import sha256_json
from paretohqd.stage import StageContext
from paretohqd.stages.kit.selection import shard_index
from paretohqd.stages.kit.training.settings import adapter_is_current, sft_settings


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
    import polars as pl

    from paretohqd.stages.kit.cards import DATA
    from paretohqd.stages.kit.policy.identity import policy_model
    from paretohqd.stages.kit.training.sft import train_lora

    settings = sft_settings(ctx.config, steps=steps)
    base = policy_model(ctx.config)
    shard_root, out_root = ctx.path(shards), ctx.path(output)
    index = shard_index(ctx, selection)
    prefs = sorted(index)
    if not prefs:
        raise DataError(f"sft: the selection `{selection}` is empty; run the select stage first")
    objectives = ctx.config.pareto_objectives
    trained, kept, metrics = [], [], {}
    for pref in prefs:
        entry = index[pref]
        init_dir = ctx.path(init) / pref if init else None
        if init_dir is not None and not (init_dir / "adapter_config.json").exists():
            raise DataError(f"sft: no round-one adapter for {pref} at {init_dir}")
        init_key = (
            json.loads((init_dir / "train_state.json").read_text()).get("key") if init_dir else None
        )
        key = sha256_json(
            {
                "shard": entry["selection_hash"],
                "settings": asdict(settings),
                "base": ctx.stage.name,
                "init": init_key,
                "version": ctx.stage.version,
            }
        )
        target = out_root / pref
        if adapter_is_current(target, key):
            kept.append(pref)
            continue
        frame = pl.read_parquet(shard_root / pref / DATA, columns=["prompt", "completion"])
        rows = list(zip(frame["prompt"].to_list(), frame["completion"].to_list(), strict=True))
        metrics[pref] = train_lora(
            base,
            rows,
            target,
            settings=settings,
            init_adapter=init_dir,
            extra_state={
                "key": key,
                "pref_id": pref,
                "shard_card": dict(zip(objectives, entry["weights"], strict=False)),
            },
        )
        trained.append(pref)
    prune_dirs(out_root, set(prefs))
    return {"trained": trained, "kept": kept, "metrics": metrics, "base_model": base}
