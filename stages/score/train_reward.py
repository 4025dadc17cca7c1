"""The ``train-reward`` tool: fit a reward head from a pairwise data file, outside any run.

The same Bradley-Terry head the ``reward_heads`` stage trains, for data a user has at hand:
the file is read by the ingest readers (any ``kind`` the config accepts; a directory or glob of
files too), chosen/rejected pairs with equal responses and labelled ties are dropped (a pair
with a label is oriented by ``label_map`` exactly as ingest orients it), and the head lands in
``out`` with its card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_pairs(
    data: Path,
    *,
    kind: str = "hh-rlhf",
    columns: dict[str, str] | None = None,
    label_map: dict[str, str] | None = None,
    limit: int | None = None,
) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) from a data file, directory or glob, read by the ingest
    readers as a one-source config (so options are checked as ingest checks them): pairs with
    equal responses and ties are left out, a labelled pair is oriented by ``label_map``."""
    from paretohqd.config import config_from_dict
    from paretohqd.errors import DataError
    from paretohqd.stages.kit.readers import GLOB_CHARS, read_source

    glob = bool(GLOB_CHARS.search(str(data)))
    if not data.exists() and not glob:
        raise DataError(f"{data} does not exist; give a pairwise data file, directory or glob")
    src = {
        "kind": kind,
        "path": str(data if glob else data.resolve()),
        "columns": columns or {},
        "label_map": label_map or {},
        "limit": limit,
    }
    cfg = config_from_dict(
        {"ingest": {"sources": [src]}},
        base_dir=Path.cwd(),
        source="train-reward (--kind, --column, --label-map, --limit as a source)",
    )
    return [
        (p.chosen.prompt, p.chosen.response, p.rejected.response)
        for p in read_source(cfg, 0, cfg.ingest.sources[0]).preferences
        if p.chosen.response != p.rejected.response and not p.tie
    ]


def train_reward(
    *,
    data: Path,
    out: Path,
    kind: str = "hh-rlhf",
    columns: dict[str, str] | None = None,
    label_map: dict[str, str] | None = None,
    limit: int | None = None,
    encoder: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """Train and save the head; return the pair count, output path and accuracies."""
    from paretohqd.errors import DataError
    from paretohqd.stages.kit.scoring.embedding import load_encoder, save_head, train_bt_head

    pairs = read_pairs(data, kind=kind, columns=columns, label_map=label_map, limit=limit)
    if len(pairs) < 10:
        raise DataError(f"{data}: only {len(pairs)} chosen/rejected pairs; need at least 10")
    enc = load_encoder(encoder)
    head, metrics = train_bt_head(pairs, encoder=enc, val_fraction=val_fraction, seed=seed)
    save_head(
        out,
        head,
        encoder_identity=enc.identity(),
        metrics=metrics,
        training_data_description=f"{len(pairs)} pairs from {data.name} ({kind} reader)",
    )
    return {"out": str(out), "pairs": len(pairs), **metrics}
