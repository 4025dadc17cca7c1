"""The registry and its validating wrapper: kinds, plug-ins, NaN rows, empty responses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from paretohqd.stages.kit.scoring.scorers import (
    KINDS,
    CheckedScorer,
    ScorerError,
    ScoreValueError,
    build_scorer,
)


class LengthScorer:
    """A real plug-in: reward = characters of the response (+ an optional NaN row)."""

    def __init__(self, nan_at: int | None = None) -> None:
        self.nan_at = nan_at
        self.calls = 0
        self.rows = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "test-length", "nan_at": self.nan_at}

    def score(self, prompts: list[str], responses: list[str], extras: Any) -> np.ndarray:
        self.calls += 1
        self.rows += len(responses)
        out = np.array([float(len(r)) for r in responses])
        if self.nan_at is not None and self.nan_at < len(out):
            out[self.nan_at] = np.nan
        return out


def make_length(name: str, model: str | None, options: dict[str, Any]) -> LengthScorer:
    return LengthScorer(**options)


def make_wrong_shape(name: str, model: str | None, options: dict[str, Any]) -> Any:
    class Wrong:
        def score(self, prompts: list[str], responses: list[str], extras: Any) -> np.ndarray:
            return np.zeros(len(prompts) + 1)

    return Wrong()


def make_not_a_scorer(name: str, model: str | None, options: dict[str, Any]) -> Any:
    return object()


PLUGIN = f"{__name__}:make_length"


def test_builtin_kinds() -> None:
    assert set(KINDS) == {"hf-classifier", "embedding-head", "heuristic", "column"}


def test_plugin_scores_and_identity() -> None:
    scorer = build_scorer(PLUGIN, name="len")
    assert isinstance(scorer, CheckedScorer)
    np.testing.assert_array_equal(scorer.score(["p", "q"], ["ab", "abcd"]), [2.0, 4.0])
    assert scorer.identity()["kind"] == "test-length"
    assert scorer.identity()["empty_response"] == "score"
    assert scorer.last_stats == {"rows": 2, "empty_responses": 0}
    other = build_scorer(PLUGIN, name="other_name")
    assert other.identity_hash() == scorer.identity_hash()  # the name is not identity
    assert build_scorer(PLUGIN, name="x", options={"nan_at": 0}).identity_hash() != (
        scorer.identity_hash()
    )


def test_plugin_nan_fails_with_row() -> None:
    scorer = build_scorer(PLUGIN, name="helpful", options={"nan_at": 3})
    with pytest.raises(ScoreValueError) as err:
        scorer.score(["p"] * 5, ["a", "b", "c", "d", "e"])
    assert err.value.row == 3
    assert np.isnan(err.value.value)
    assert str(err.value).startswith("objective 'helpful': row 3: score is nan")


def test_nan_row_maps_back_through_empty_rows() -> None:
    """With empty_response='min' empty rows are not sent; the row index is still the input's."""
    scorer = build_scorer(PLUGIN, name="h", options={"nan_at": 1}, empty_response="min")
    with pytest.raises(ScoreValueError) as err:
        scorer.score(["p"] * 4, ["", "x", "yy", "zzz"])
    assert err.value.row == 2


def test_wrong_shape_and_non_scorer() -> None:
    scorer = build_scorer(f"{__name__}:make_wrong_shape", name="w")
    with pytest.raises(ScorerError, match=r"returned shape \(3,\) for 2 rows"):
        scorer.score(["p", "q"], ["a", "b"])
    with pytest.raises(ScorerError, match="has no score"):
        build_scorer(f"{__name__}:make_not_a_scorer", name="w")


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("reward-model", "neither a built-in kind"),
        ("no_such_module_xyz:make", "cannot import plug-in module 'no_such_module_xyz'"),
        (f"{__name__}:missing", "has no attribute 'missing'"),
    ],
)
def test_bad_kind(kind: str, match: str) -> None:
    with pytest.raises(ScorerError, match=match):
        build_scorer(kind, name="o")


def test_empty_response_policies() -> None:
    responses = ["abc", "", "abcdef", "  "]
    scored = build_scorer(PLUGIN, name="l").score(["p"] * 4, responses)
    np.testing.assert_array_equal(scored, [3.0, 0.0, 6.0, 2.0])

    floor = build_scorer(PLUGIN, name="l", empty_response="min")
    np.testing.assert_array_equal(floor.score(["p"] * 4, responses), [3.0, 3.0, 6.0, 3.0])
    assert floor.last_stats["empty_responses"] == 2
    assert floor.inner.rows == 2  # empty rows never reach the scorer

    strict = build_scorer(PLUGIN, name="l", empty_response="error")
    with pytest.raises(ScorerError, match="objective 'l': row 1: empty response"):
        strict.score(["p"] * 4, responses)
    with pytest.raises(ScorerError, match="empty_response 'skip'"):
        build_scorer(PLUGIN, name="l", empty_response="skip")


def test_min_uses_known_floor() -> None:
    scorer = build_scorer(
        "heuristic", name="v", options={"metric": "verbosity"}, empty_response="min"
    )
    np.testing.assert_array_equal(scorer.score(["p"] * 2, ["a b c", ""]), [3.0, 0.0])


def test_input_checks() -> None:
    scorer = build_scorer(PLUGIN, name="l")
    with pytest.raises(ScorerError, match="2 prompts but 1 responses"):
        scorer.score(["a", "b"], ["x"])
    with pytest.raises(ScorerError, match="row 1: response is NoneType"):
        scorer.score(["a", "b"], ["x", None])  # type: ignore[list-item]
    with pytest.raises(ScorerError, match="extra column 'q' has 3 rows, expected 2"):
        scorer.score(["a", "b"], ["x", "y"], {"q": np.zeros(3)})


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("os:system", "standard library"),
        ("subprocess:call", "standard library"),
        ("builtins:eval", "standard library"),
        ("numpy:pi", "must be a class or a Python function"),
        ("numpy:add", "must be a class or a Python function"),  # a ufunc, not a function
    ],
)
def test_a_plugin_must_be_a_scorer_factory_of_your_own(kind: str, message: str) -> None:
    from paretohqd.stages.kit.scoring.scorers import ScorerError

    with pytest.raises(ScorerError, match=message):
        build_scorer(kind, name="x")
