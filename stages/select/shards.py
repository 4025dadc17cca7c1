"""SFT shards: one directory per preference with ``data.parquet`` and a ``README.md`` card.

The card is a Hugging Face style data card: YAML front matter a program can read (preference,
objectives, normalisation, pool layers, k, distance range, score statistics, source
fingerprints, the command that reproduces it) and a short human summary. ``selection_hash`` in
the front matter is what makes reruns incremental: a shard whose hash matches is left alone, so
downstream SFT of that preference stays fresh too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.atomic import prune_dirs, write_parquet, write_text
from paretohqd.stages.select.grid import Preference

DATA = "data.parquet"
CARD = "README.md"


@dataclass(frozen=True)
class ShardInfo:
    """Everything the card records about how a shard was selected."""

    pref: Preference
    objectives: Sequence[str]
    round_: int
    mode: str
    k: int
    layers: int
    max_layer: int
    pool_size: int
    bounds: Mapping[str, Mapping[str, float]]
    sources: Mapping[str, str]
    selection_hash: str
    command: str


def read_front_matter(card: Path) -> dict[str, Any] | None:
    """The YAML front matter of a card, or ``None`` when absent or unreadable."""
    import yaml

    try:
        text = card.read_text()
    except OSError:
        return None
    if not text.startswith("---\n"):
        return None
    end = text.find("\n---\n", 4)
    if end < 0:
        return None
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError:
        return None
    return meta if isinstance(meta, dict) else None


def shard_is_current(directory: Path, selection_hash: str) -> bool:
    """Whether a complete shard made from exactly these inputs already exists.

    The card is written after the data, so a card with the right hash implies the data is
    complete.
    """
    meta = read_front_matter(directory / CARD)
    if not meta:
        return False
    return meta.get("selection_hash") == selection_hash and (directory / DATA).exists()


def _stats(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": round(float(values.mean()), 6),
        "std": round(float(values.std()), 6),
        "min": round(float(values.min()), 6),
        "max": round(float(values.max()), 6),
    }


def write_shard(directory: Path, frame: Any, info: ShardInfo) -> dict[str, Any]:
    """Write ``data.parquet`` then the card; return the diagnostics recorded in the manifest."""
    import yaml

    dist = frame["distance"].to_numpy()
    layers_used = {
        int(k): int(v)
        for k, v in zip(*np.unique(frame["layer"].to_numpy(), return_counts=True), strict=True)
    }
    quant = np.quantile(dist, [0.0, 0.5, 0.9, 1.0])
    distance = {
        q: round(float(v), 6) for q, v in zip(("min", "p50", "p90", "max"), quant, strict=True)
    }
    diagnostics = {
        "rows": frame.height,
        "candidates": info.pool_size,
        "distance": distance,
        "layers_used": layers_used,
    }
    meta = {
        "pref_id": info.pref.pref_id,
        "preference": {n: round(w, 6) for n, w in info.pref.as_dict(info.objectives).items()},
        "objectives": list(info.objectives),
        "round": info.round_,
        "mode": info.mode,
        "k": info.k,
        "rows": frame.height,
        "pool": {"layers": info.layers, "max_layer": info.max_layer, "rows": info.pool_size},
        "layers_used": layers_used,
        "distance": distance,
        "normalisation": {n: dict(b) for n, b in info.bounds.items()},
        "scores": {n: _stats(frame[n].to_numpy()) for n in info.objectives},
        "source_fingerprints": dict(info.sources),
        "selection_hash": info.selection_hash,
        "reproduce": info.command,
        "format": "prompt/completion columns for TRL SFTTrainer; response = completion",
    }
    write_parquet(directory / DATA, frame)
    weights = ", ".join(f"{n} {w:.2f}" for n, w in info.pref.as_dict(info.objectives).items())
    distance_word = (
        "perpendicular distance to the preference ray"
        if info.mode == "ray"
        else ("1 − w·r̃ (linear scalarisation)")
    )
    body = f"""
# {info.pref.pref_id}: round-{info.round_} SFT shard

The {frame.height} samples nearest the preference ({weights}) in min-max normalised objective
space, chosen from Pareto layers 1–{info.max_layer} ({info.pool_size} candidate rows) by
{distance_word}, ties broken by sample_id. Distances range from {distance["min"]:.4g} to
{distance["max"]:.4g}.

Columns: `prompt`, `completion` (what TRL's SFTTrainer trains on), `response` (the same text
under the sample table's name), `rank`, `distance`, `layer`, `weights`, the raw score per
objective ({", ".join(f"`{n}`" for n in info.objectives)}), their normalised values
(`norm_<objective>`) and the `raw`/`norm` lists.

Reproduce with `{info.command}`. The front matter above is the machine-readable record.
"""
    card = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" + body
    write_text(directory / CARD, card)
    return diagnostics


def remove_stale_shards(root: Path, keep: set[str]) -> list[str]:
    """Delete shard directories of preferences no longer in the grid (so SQL stops seeing them)."""
    return prune_dirs(root, keep)
