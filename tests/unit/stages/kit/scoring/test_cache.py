"""The persistent score cache: keys, round trips, atomic files, and skipped model calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from paretohqd.stages.kit.scoring import cache as cache_mod
from paretohqd.stages.kit.scoring.cache import ScoreCache, text_key, text_keys
from paretohqd.stages.kit.scoring.scorers import build_scorer


class CountingLength:
    """A real plug-in scorer that counts how often (and on how many rows) it runs."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.calls = 0
        self.rows = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "counting-length", "offset": self.offset}

    def score(self, prompts: list[str], responses: list[str], extras: Any) -> np.ndarray:
        self.calls += 1
        self.rows += len(responses)
        return np.array(
            [len(p) * 0.1 + len(r) + self.offset for p, r in zip(prompts, responses, strict=True)]
        )


def make(name: str, model: str | None, options: dict[str, Any]) -> CountingLength:
    return CountingLength(**options)


PLUGIN = f"{__name__}:make"


def test_text_keys_distinguish_split_point() -> None:
    assert text_key("ab", "c") != text_key("a", "bc")
    assert text_key("a", "b") == text_key("a", "b")
    assert len(text_key("", "")) == 64
    assert text_keys(["a", "b"], ["x", "y"]) == [text_key("a", "x"), text_key("b", "y")]


def test_cache_hit_skips_the_model(tmp_path: Path) -> None:
    scorer = build_scorer(PLUGIN, name="len")
    prompts = ["p1", "p2", "p1", "p3"]
    responses = ["aa", "bbbb", "aa", "c"]
    keys = text_keys(prompts, responses)

    cache = ScoreCache(tmp_path / "cache")
    values, missing = cache.lookup(scorer, keys)
    assert missing.all() and np.isnan(values).all()
    scored = scorer.score(prompts, responses)
    cache.store(scorer, keys, scored)
    assert scorer.inner.calls == 1

    fresh = ScoreCache(tmp_path / "cache")  # a new process: read back from Parquet
    values, missing = fresh.lookup(scorer, keys)
    assert not missing.any()
    assert values.tobytes() == scored.tobytes()

    # The stage's pattern: score only the missing rows.
    more_keys = [*keys, text_key("p4", "dddddd")]
    values, missing = fresh.lookup(scorer, more_keys)
    assert missing.tolist() == [False] * 4 + [True]
    out = scorer.score(["p4"], ["dddddd"])
    assert scorer.inner.rows == 5  # four cached rows never reached the scorer
    fresh.store(scorer, [more_keys[-1]], out)
    assert not fresh.lookup(scorer, more_keys)[1].any()

    # A different scorer identity does not see these values.
    other = build_scorer(PLUGIN, name="len", options={"offset": 1.0})
    assert fresh.lookup(other, keys)[1].all()


def test_files_are_parquet_and_compacted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_mod, "_COMPACT_AT", 3)
    cache = ScoreCache(tmp_path)
    ident = "f" * 64
    for i in range(5):
        cache.store(ident, [f"k{i}"], np.array([float(i)]))
    files = sorted((tmp_path / ident).iterdir())
    assert all(f.suffix == ".parquet" and not f.name.startswith(".") for f in files)
    assert len(files) < 5
    table = pq.read_table(files[0])
    assert table.column_names == ["key", "value"]
    values, missing = ScoreCache(tmp_path).lookup(ident, [f"k{i}" for i in range(5)])
    assert not missing.any()
    np.testing.assert_array_equal(values, np.arange(5.0))


def test_a_scorer_reading_columns_is_cached_on_their_values(tmp_path: Path) -> None:
    """Same text, new column values: a column objective must not keep the old numbers."""
    import polars as pl

    from paretohqd.stages.kit.scoring.run import STATS_KEY, score_part

    column = build_scorer("column", name="q", options={"column": "quality"})
    words = build_scorer("heuristic", name="w", options={"metric": "verbosity"})
    assert not column.text_only and words.text_only
    frame = pl.DataFrame({"sample_id": ["a", "b"], "prompt": ["p", "p"], "response": ["x y", "z"]})
    cache = ScoreCache(tmp_path / "cache")
    first = score_part(frame.with_columns(quality=pl.Series([1.0, 2.0])), [column, words], cache)
    again = score_part(frame.with_columns(quality=pl.Series([5.0, 6.0])), [column, words], cache)
    assert first.column("q").to_pylist() == [1.0, 2.0]
    assert again.column("q").to_pylist() == [5.0, 6.0]
    assert again.column("w").to_pylist() == first.column("w").to_pylist()
    stats = json.loads(again.schema.metadata[STATS_KEY])  # text-only scores came from the cache
    assert stats["w"].get("cache_hits") == 2 and not stats["q"].get("cache_hits")


def test_empty_responses_at_the_minimum_do_not_depend_on_the_cache(tmp_path: Path) -> None:
    """``empty_response = "min"`` with no known floor: an empty row gets the lowest score of its
    part, cache hits included, so a warm cache (another part, another worker) changes nothing,
    and the empty row's value is never cached."""
    import polars as pl

    from paretohqd.stages.kit.scoring.run import STATS_KEY, score_part

    frame = pl.DataFrame(
        {"sample_id": ["a", "b", "c"], "prompt": ["p"] * 3, "response": ["xx", "", "yyyyy"]}
    )
    cold = score_part(frame, [build_scorer(PLUGIN, name="l", empty_response="min")])
    cache = ScoreCache(tmp_path / "cache")
    # only the short row is cached: scored alone, the floor of that call would be the long one
    warm_scorer = build_scorer(PLUGIN, name="l", empty_response="min")
    score_part(frame.slice(0, 1), [warm_scorer], cache)
    warm = score_part(frame.slice(1), [build_scorer(PLUGIN, name="l", empty_response="min")], cache)
    both = score_part(frame, [build_scorer(PLUGIN, name="l", empty_response="min")], cache)
    assert cold.column("l").to_pylist() == both.column("l").to_pylist() == [2.1, 2.1, 5.1]
    assert warm.column("l").to_pylist() == [5.1, 5.1]  # its own part's minimum
    assert json.loads(both.schema.metadata[STATS_KEY])["l"]["empty_responses"] == 1
    with pytest.raises(Exception, match="every response of a part is empty"):
        score_part(frame.slice(1, 1), [build_scorer(PLUGIN, name="l", empty_response="min")])
