"""The ``ingest`` stage: datasets in, one normalised sample table out.

Writes ``samples.parquet`` (sample_id, prompt_id, prompt, response, source, split,
source_file, plus any extra numeric columns), ``preferences.parquet`` (the human chosen/rejected
relation, with ties marked, kept for pairwise methods and reward-head training) and
``quarantine.parquet`` (every rejected row with its file, row number, a reason code, the full
detail and whether it is an expected drop rather than an error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paretohqd.config import SOURCE_CARD_KEYS, Config
from paretohqd.hashing import FileHasher
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.identity import source_identity

SAMPLES = Artifact("samples", "samples.parquet")
PREFERENCES = Artifact("preferences", "preferences.parquet")
QUARANTINE = Artifact("quarantine", "quarantine.parquet")


def _glob_identity(config: Config, index: int, hasher: FileHasher) -> str:
    """A glob source is the files it matches now: their names (so a file added or removed
    counts) and their contents."""
    from paretohqd.hashing import sha256_json
    from paretohqd.stages.kit.readers import source_files

    base = config.base_dir
    files = source_files(config, index, config.ingest.sources[index])
    return sha256_json(
        {str(p.relative_to(base) if p.is_relative_to(base) else p): hasher.file(p) for p in files}
    )


def _external(config: Config, hasher: FileHasher) -> Mapping[str, Any]:
    from paretohqd.stages.kit.readers import GLOB_CHARS

    out: dict[str, Any] = {}
    for i, src in enumerate(config.ingest.sources):
        glob = GLOB_CHARS.search(src.path) and not config.resolve(src.path).exists()
        if glob and src.kind != "hf-datasets":
            out[f"sources[{i}]"] = _glob_identity(config, i, hasher)
        else:
            out[f"sources[{i}]"] = source_identity(config, src.path, hasher, kind="dataset")
    if config.ingest.tokenizer:
        out["tokenizer"] = source_identity(config, config.ingest.tokenizer, hasher)
    return out


def _params(config: Config) -> Any:
    # A source's license and hub id describe it on the shards' cards; they change no sample.
    ingest = config.ingest.model_dump(
        mode="json", exclude={"sources": {"__all__": set(SOURCE_CARD_KEYS)}}
    )
    return {"ingest": ingest, "run": {"seed": config.run.seed}}


def stages(config: Config) -> list[Stage]:
    """The ingest stage declaration."""
    from paretohqd.stages.ingest.stage import run_ingest

    return [
        Stage(
            name="ingest",
            fn=run_ingest,
            outputs=(SAMPLES, PREFERENCES, QUARANTINE),
            section="ingest",
            version="2",  # 2: quarantine reason codes + detail; source_file; ties
            params=_params,
            external=_external,
            checks=("ingest_unique_sample_ids.sql", "ingest_preferences_resolve.sql"),
            description="read datasets into one sample schema",
        )
    ]
