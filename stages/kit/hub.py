"""The Hugging Face Hub's standard card keys, so the Hub and ``datasets`` read our cards.

A card's YAML front matter is shared by two readers: the Hub (license, task categories, size
category, source datasets, tags, ``configs``) and people and programs of this project. The
Hub's keys sit at the top level, spelled as the Hub spells them; everything the project records
goes under one ``paretohqd:`` key (:data:`PROJECT_KEY`), so neither reader trips over the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paretohqd.config import Config

#: The one top-level key holding the project's own record in every card it writes.
PROJECT_KEY = "paretohqd"
#: A source without a ``license`` is listed as this (a license id the Hub accepts).
UNKNOWN_LICENSE = "unknown"

#: The Hub's ``size_categories`` labels: (upper bound exclusive, label).
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` label for a dataset of ``rows`` rows."""
    for bound, label in _SIZES:
        if rows < bound:
            return label
    return "n>1B"


def licenses(config: Config) -> str | list[str]:
    """The licenses of the ingested sources: one id when they agree, else the sorted list.

    Shards mix rows of every source (and round two's prompts come from them), so a shard is
    under all of them; a source without ``license`` counts as ``unknown``.
    """
    found = sorted({s.license or UNKNOWN_LICENSE for s in config.ingest.sources})
    return found[0] if len(found) == 1 else found


def source_datasets(config: Config) -> list[str]:
    """Each source's Hub id when the config gives one, else its name, in config order."""
    out: list[str] = []
    for s in config.ingest.sources:
        label = s.hub_id or s.name or s.kind
        if label not in out:
            out.append(label)
    return out


def source_card_params(config: Config) -> list[dict[str, Any]]:
    """What of the sources a card records (for the fingerprint of a stage writing cards)."""
    return [{"license": s.license, "hub_id": s.hub_id} for s in config.ingest.sources]


def dataset_keys(
    config: Config, rows: int, *, tags: Sequence[str] = (), pretty_name: str | None = None
) -> dict[str, Any]:
    """The standard keys of a dataset card for data derived from ``config``'s sources."""
    keys: dict[str, Any] = {}
    if pretty_name:
        keys["pretty_name"] = pretty_name
    keys |= {
        "license": licenses(config),
        "task_categories": ["text-generation"],
        "size_categories": [size_category(rows)],
        "source_datasets": source_datasets(config),
        "tags": ["paretohqd", "sft", "preference-alignment", *tags],
    }
    return keys


def front_matter(standard: Mapping[str, Any], project: Mapping[str, Any]) -> str:
    """A card's YAML front matter: the Hub's keys, then the project's under :data:`PROJECT_KEY`."""
    import yaml

    doc = {**standard, PROJECT_KEY: dict(project)}
    return "---\n" + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True) + "---\n"
