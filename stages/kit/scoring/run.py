"""Running the objectives: build the scorers of a config, score one part, the score cache, and
the identities (parameters, model hashes) that every scoring stage fingerprints.

:func:`score_part` is a pure function of (part, scorers, cache) -> table: the unit an executor
distributes. The score stage, PAMA's online rewards and the evaluation all score through it.
A part worker rebuilds the scorers from a :class:`ScoringSpec` with :func:`worker_scorers`,
once per process.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paretohqd.config import Config, ObjectiveConfig
from paretohqd.errors import DataError, ModelError
from paretohqd.hashing import FileHasher
from paretohqd.stages.kit.identity import source_identity

if TYPE_CHECKING:
    from paretohqd.stage import StageContext


def resolve_model(config: Config, obj: ObjectiveConfig) -> str | None:
    """The model an objective loads: a run artifact, a local path, or a hub id (as given)."""
    if obj.model is None:
        return None
    if obj.model.startswith("run:"):
        return str(config.run_dir / obj.model.removeprefix("run:"))
    path = config.resolve(obj.model)
    return str(path) if path.exists() else obj.model


def _plugin_identity(kind: str, hasher: FileHasher) -> str | None:
    """Content hash of a ``module:callable`` plug-in's source file, so editing it rescores."""
    if ":" not in kind:
        return None
    spec = importlib.util.find_spec(kind.split(":", 1)[0])
    if spec is None or spec.origin is None or not Path(spec.origin).exists():
        return f"plugin:{kind}"
    return hasher.file(Path(spec.origin))


def score_external(config: Config, hasher: FileHasher) -> Mapping[str, Any]:
    """Identities of the models and plug-ins the objectives load (content hash or hub id)."""
    out: dict[str, Any] = {}
    for obj in config.objectives:
        if obj.model and not obj.model.startswith("run:"):
            revision = (obj.options or {}).get("revision")
            out[f"objectives.{obj.name}.model"] = source_identity(
                config, obj.model, hasher, revision=revision
            )
        plugin = _plugin_identity(obj.scorer, hasher)
        if plugin:
            out[f"objectives.{obj.name}.scorer"] = plugin
    return out


def score_params(config: Config) -> Any:
    """The scoring parameters every stage that scores enters into its fingerprint."""
    return {
        "objectives": [o.model_dump(mode="json") for o in config.objectives],
        "score": config.score.model_dump(mode="json", exclude={"cache"}),
    }


STATS_KEY = b"paretohqd.score.stats"


def _extras(frame: Any) -> dict[str, np.ndarray]:
    """Numeric columns the ingest readers carried through (for ``column`` scorers)."""
    import polars as pl

    return {
        name: frame[name].cast(pl.Float64).to_numpy()
        for name, dtype in frame.schema.items()
        if dtype.is_numeric()
    }


def _row_keys(keys: list[str], extras: Mapping[str, Any]) -> list[str]:
    """Cache keys for scorers that may read the extra columns: the text key plus the row's
    extra values, so a changed column value is never served from the cache."""
    from paretohqd.hashing import sha256_json

    if not extras:
        return keys
    names = sorted(extras)
    return [sha256_json([key, [float(extras[n][i]) for n in names]]) for i, key in enumerate(keys)]


def _empty_at_part_floor(scorer: Any, responses: Sequence[str]) -> np.ndarray | None:
    """The empty responses of a scorer under ``score.empty_response = "min"`` with no known
    minimum, whose score is the lowest score of the part's other rows (cache hits included,
    so the value does not depend on what the cache held, or on which worker scored the part);
    None for every other scorer."""
    if getattr(scorer, "empty_response", "score") != "min":
        return None
    if getattr(getattr(scorer, "inner", None), "floor", None) is not None:
        return None
    return np.fromiter(
        (not (r.strip() if isinstance(r, str) else True) for r in responses),
        dtype=bool,
        count=len(responses),
    )


def score_part(frame: Any, scorers: Sequence[Any], cache: Any | None = None) -> Any:
    """Score one part: a table of sample_id + one float64 column per objective.

    ``frame`` has sample_id, prompt, response and any extra numeric columns. Scores found in
    ``cache`` (keyed by text hash and scorer identity) are not recomputed. Returns an Arrow
    table whose schema metadata carries the part's counters.
    """
    import pyarrow as pa

    from paretohqd.stages.kit.scoring.cache import text_keys
    from paretohqd.stages.kit.scoring.scorers import ScorerError, ScoreValueError

    prompts = frame["prompt"].to_list()
    responses = frame["response"].to_list()
    ids = frame["sample_id"].to_list()
    extras = _extras(frame)
    keys = text_keys(prompts, responses) if cache is not None else None
    row_keys = _row_keys(keys, extras) if keys is not None else None
    columns: dict[str, Any] = {"sample_id": pa.array(ids, pa.string())}
    stats: dict[str, dict[str, int]] = {}
    for scorer in scorers:
        counts: Counter[str] = Counter()
        values = np.full(len(ids), np.nan)
        todo = np.ones(len(ids), dtype=bool)
        mine = keys if getattr(scorer, "text_only", False) else row_keys
        if cache is not None and mine is not None:
            hit, missing = cache.lookup(scorer, mine)
            values[~missing] = hit[~missing]
            todo = missing
            counts["cache_hits"] += int((~missing).sum())
        empty = _empty_at_part_floor(scorer, responses)
        if empty is not None:  # set below, from the whole part: never scored, never cached
            values[empty] = np.nan
            todo &= ~empty
        idx = np.flatnonzero(todo)
        if idx.size:
            try:
                out = scorer.score(
                    [prompts[i] for i in idx],
                    [responses[i] for i in idx],
                    {k: v[idx] for k, v in extras.items()},
                )
            except ScoreValueError as exc:
                sid = ids[int(idx[exc.row])]
                raise DataError(
                    f"score: objective {scorer.name!r} gave {exc.value} for sample {sid} "
                    f"(`paretohqd sql \"select * from samples where sample_id = '{sid}'\"`); "
                    "fix the scorer or drop that sample"
                ) from None
            except ScorerError as exc:  # a column that is not there, rows it cannot take
                raise DataError(f"score: {exc}") from None
            values[idx] = out
            counts.update(scorer.last_stats)
            if cache is not None and mine is not None:
                cache.store(scorer, [mine[i] for i in idx], values[idx])
        if empty is not None and empty.any():
            if empty.all():
                raise DataError(
                    f"score: objective {scorer.name!r}: every response of a part is empty and "
                    "the scorer has no known minimum; set score.empty_response = 'score'"
                )
            values[empty] = values[~empty].min()
            counts["empty_responses"] += int(empty.sum())
        columns[scorer.name] = pa.array(values, pa.float64())
        stats[scorer.name] = dict(counts)
    table = pa.table(columns)
    return table.replace_schema_metadata({STATS_KEY: json.dumps(stats).encode()})


def score_cache(config: Any) -> Any:
    """The score cache shared by every run under ``run.root`` (None when ``score.cache`` is off)."""
    from paretohqd.stages.kit.scoring.cache import ScoreCache

    if not config.score.cache:
        return None
    return ScoreCache(config.resolve(config.run.root) / ".cache" / "scores")


def build_scorers(config: Any, hasher: Any) -> list[Any]:
    """Instantiate every objective's scorer (one-line errors for bad kinds, options, models)."""
    from paretohqd.stages.kit.scoring.scorers import ScorerError, build_scorer

    scorers = []
    for obj in config.objectives:
        try:
            scorers.append(
                build_scorer(
                    obj.scorer,
                    name=obj.name,
                    model=resolve_model(config, obj),
                    options=obj.options,
                    base_dir=config.base_dir,
                    empty_response=config.score.empty_response,
                    hasher=hasher,
                )
            )
        except ScorerError as exc:
            raise ModelError(f"{config.source}: {exc}") from None
    return scorers


@dataclass(frozen=True)
class ScoringSpec:
    """What a part worker needs to rebuild a stage's scorers and score cache in any process.

    The config travels whole: it is a pydantic model that pickles with its base directory, and
    :func:`build_scorers` and :func:`score_cache` read objectives, paths and ``[score]`` from it.
    ``hashes`` is the run's file-hash cache, so a worker does not re-read model weights to hash
    them; ``key`` (the stage's fingerprint) is what the loaded scorers are kept under, so a
    process never reuses scorers whose models may have changed since.
    """

    config: Config
    hashes: Path | None
    key: str


def scoring_spec(ctx: StageContext) -> ScoringSpec:
    """The :class:`ScoringSpec` of a stage that scores (score, score_round2, evaluate)."""
    return ScoringSpec(config=ctx.config, hashes=ctx.hasher.cache_file, key=ctx.fingerprint)


def worker_scorers(spec: ScoringSpec, hasher: FileHasher | None = None) -> tuple[list[Any], Any]:
    """This process's scorers and score cache for ``spec``: built on first use, then kept for
    every later part of the map (:func:`paretohqd.executor.worker_state`).

    ``hasher`` lets the stage's own process share the runner's in-memory hashes; a worker
    elsewhere reads ``spec.hashes``.
    """
    from paretohqd.executor import worker_state

    def build() -> tuple[list[Any], Any]:
        files = hasher if hasher is not None else FileHasher(spec.hashes)
        return build_scorers(spec.config, files), score_cache(spec.config)

    return worker_state("scorers", spec.key, build)
