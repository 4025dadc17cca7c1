"""SFT shards: one directory per preference with ``data.parquet`` and a ``README.md`` card.

The card is a Hugging Face data card: YAML front matter with the Hub's standard keys (license,
task_categories, size_categories, source_datasets, tags: ``stages/kit/hub.py``) and, under one
``paretohqd:`` key, the project's record (preference, objectives, normalisation, pool layers,
k, distance range, score statistics, source fingerprints, the command that reproduces it, its
overlap with the other shards), then a short human summary, for people.

The directory holding a round's shards is itself a ``datasets`` repo: its own ``README.md``
(:func:`write_repo_card`) declares one config per preference, so
``load_dataset(dir, "pref-000-100")`` loads exactly that shard, and ``load_dataset(dir)``
asks for a config name instead of silently merging every preference into one split.

``selection_hash`` (a hash of the selected rows and of what they were selected from) makes
reruns incremental: a shard whose card carries the same hash is left alone. Programs read it
from the ``selection_hash`` column of the selection table, never from the card: SFT keys its
adapters on it, so a kept shard keeps its adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.atomic import prune_dirs, write_parquet, write_text
from paretohqd.stages.kit.hub import PROJECT_KEY, front_matter
from paretohqd.stages.kit.preferences import Preference

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
    target_rows: int = 0


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


def read_shard_meta(directory: Path) -> dict[str, Any] | None:
    """The project's record in a shard's card (its ``paretohqd:`` key), or ``None``.

    A card of the layout before the Hub's keys (everything at the top level) gives ``None``:
    its shard is then written again, with the same rows, in today's layout.
    """
    meta = read_front_matter(directory / CARD)
    project = (meta or {}).get(PROJECT_KEY)
    return project if isinstance(project, dict) else None


def shard_is_current(directory: Path, selection_hash: str) -> bool:
    """Whether a complete shard made from exactly these inputs already exists.

    The card is written after the data, so a card with the right hash implies the data is
    complete.
    """
    meta = read_shard_meta(directory)
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


def shard_meta(frame: Any, info: ShardInfo) -> dict[str, Any]:
    """The card's front matter for a freshly selected shard (overlap is added later)."""
    dist = frame["distance"].to_numpy()
    layers_used = {
        int(k): int(v)
        for k, v in zip(*np.unique(frame["layer"].to_numpy(), return_counts=True), strict=True)
    }
    quant = np.quantile(dist, [0.0, 0.5, 0.9, 1.0])
    distance = {
        q: round(float(v), 6) for q, v in zip(("min", "p50", "p90", "max"), quant, strict=True)
    }
    return {
        "pref_id": info.pref.pref_id,
        "preference": {n: round(w, 6) for n, w in info.pref.as_dict(info.objectives).items()},
        "objectives": list(info.objectives),
        "round": info.round_,
        "mode": info.mode,
        "k": info.k,
        "rows": frame.height,
        "pool": {
            "layers": info.layers,
            "max_layer": info.max_layer,
            "rows": info.pool_size,
            "target_rows": info.target_rows,
        },
        "layers_used": layers_used,
        "distance": distance,
        "normalisation": {n: dict(b) for n, b in info.bounds.items()},
        "scores": {n: _stats(frame[n].to_numpy()) for n in info.objectives},
        "source_fingerprints": dict(info.sources),
        "selection_hash": info.selection_hash,
        "reproduce": info.command,
        "format": (
            "prompt/completion as the project encodes them (apart, the prompt cut on the "
            "left); response = completion; TRL datasets: paretohqd export trl"
        ),
    }


def diagnostics(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the manifest records per shard."""
    return {
        "rows": meta["rows"],
        "candidates": meta["pool"]["rows"],
        "distance": meta["distance"],
        "layers_used": meta["layers_used"],
    }


def write_shard_data(directory: Path, frame: Any) -> None:
    """Write the shard's rows. Its card follows once the overlap with the others is known."""
    write_parquet(directory / DATA, frame)


def _overlap_sentence(meta: Mapping[str, Any]) -> str:
    ov = meta.get("overlap")
    if not ov:
        return ""
    parts = [f"{ov['unique_rows']} of its {meta['rows']} rows are in no other shard"]
    if ov.get("max"):
        top = ov["max"]
        parts.append(
            f"the most similar shard is {top['pref_id']} ({top['shared']} shared rows, "
            f"Jaccard {top['jaccard']:.2f})"
        )
    if ov.get("adjacent"):
        near = ", ".join(f"{p} {v['jaccard']:.2f}" for p, v in ov["adjacent"].items())
        parts.append(f"Jaccard with the neighbouring preferences: {near}")
    run = ov.get("selection")
    if run:
        parts.append(
            f"across all shards {run['distinct_rows']} of {run['rows']} rows are distinct "
            f"({run['distinct_share']:.0%})"
        )
    return "Overlap: " + "; ".join(parts) + ".\n"


def render_card(meta: Mapping[str, Any], standard: Mapping[str, Any]) -> str:
    """The whole card: YAML front matter (the Hub's ``standard`` keys and the project's record
    ``meta`` under ``paretohqd:``) and a short summary."""
    weights = ", ".join(f"{n} {w:.2f}" for n, w in meta["preference"].items())
    distance_word = (
        "perpendicular distance to the preference ray"
        if meta["mode"] == "ray"
        else "1 − w·r̃ (linear scalarisation)"
    )
    pool, distance = meta["pool"], meta["distance"]
    body = f"""
# {meta["pref_id"]}: round-{meta["round"]} SFT shard

The {meta["rows"]} samples nearest the preference ({weights}) in min-max normalised objective
space, chosen from Pareto layers 1–{pool["max_layer"]} ({pool["rows"]} candidate rows) by
{distance_word}, ties broken by sample_id. Distances range from {distance["min"]:.4g} to
{distance["max"]:.4g}.

{_overlap_sentence(meta)}
Columns: `prompt`, `completion` (what the project's SFT trains on: it encodes them apart and
cuts a long prompt's oldest tokens; `paretohqd export trl` writes the same rows and tokens as
TRL datasets), `response` (the same text under the sample table's name), `rank`, `distance`,
`layer`, `weights`, the raw score per objective
({", ".join(f"`{n}`" for n in meta["objectives"])}), their normalised values (`norm_<objective>`)
and the `raw`/`norm` lists.

Reproduce with `{meta["reproduce"]}`.
The front matter's `paretohqd` key is the machine-readable record.
"""
    return front_matter(standard, meta) + body


def write_card(directory: Path, meta: Mapping[str, Any], standard: Mapping[str, Any]) -> None:
    """Write the card (after the data, so a card with the right hash means a complete shard)."""
    write_text(directory / CARD, render_card(meta, standard))


def repo_configs(pref_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The ``configs:`` of a shards directory: one per preference, named by its pref_id, its
    one ``train`` split the preference's ``data.parquet``."""
    return [
        {"config_name": pid, "data_files": [{"split": "train", "path": f"{pid}/{DATA}"}]}
        for pid in pref_ids
    ]


def render_repo_card(
    metas: Mapping[str, Mapping[str, Any]],
    standard: Mapping[str, Any],
    project: Mapping[str, Any],
) -> str:
    """The card of a whole shards directory (a ``datasets`` repo): ``configs:`` per preference
    (``metas`` by pref_id, in grid order), the Hub's keys, the project's record, a table."""
    first = next(iter(metas.values()))
    objectives = list(first["objectives"])
    record = dict(project) | {
        "preferences": {
            pid: {"preference": dict(m["preference"]), "rows": m["rows"]}
            for pid, m in metas.items()
        },
    }
    header = {**standard, "configs": repo_configs(list(metas))}
    rows = "\n".join(
        f"| `{pid}` | "
        + " | ".join(f"{m['preference'][n]:.2f}" for n in objectives)
        + f" | {m['rows']} | {m['distance']['min']:.4g}–{m['distance']['max']:.4g} |"
        for pid, m in metas.items()
    )
    example = next(iter(metas))
    body = f"""
# Round-{first["round"]} SFT shards: one config per preference

{len(metas)} preferences over {", ".join(f"`{n}`" for n in objectives)}, k = {first["k"]} rows
each, selected by paretohqd ({first["mode"]} mode). Each preference is a config of this
dataset with one `train` split; its directory holds the rows (`data.parquet`) and a card
(`README.md`) saying how they were chosen.

```python
from datasets import load_dataset
shard = load_dataset("path/or/hub-id/of/this/dataset", "{example}", split="train")
```

| config | {" | ".join(objectives)} | rows | distance |
|---|{"---|" * len(objectives)}---|---|
{rows}

Reproduce with `{first["reproduce"]}`.
The front matter's `paretohqd` key is the machine-readable record.
"""
    return front_matter(header, record) + body


def write_repo_card(
    root: Path,
    metas: Mapping[str, Mapping[str, Any]],
    standard: Mapping[str, Any],
    project: Mapping[str, Any],
) -> None:
    """Write the shards directory's own card (:func:`render_repo_card`)."""
    write_text(root / CARD, render_repo_card(metas, standard, project))


def remove_stale_shards(root: Path, keep: set[str]) -> list[str]:
    """Delete shard directories of preferences no longer in the grid (so SQL stops seeing them)."""
    return prune_dirs(root, keep)
