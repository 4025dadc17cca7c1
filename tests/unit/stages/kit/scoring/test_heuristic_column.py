"""Heuristic and column scorers against hand-computed values, through the registry."""

from __future__ import annotations

import numpy as np
import pytest

from paretohqd.stages.kit.scoring.heuristic import repetition
from paretohqd.stages.kit.scoring.scorers import ScorerError, build_scorer

RESPONSES = [
    "one two three four",  # 4 words
    "",  # empty
    "a b a b a b",  # 6 words, trigrams: aba bab aba bab -> 2 distinct of 4
    "x y",  # fewer than 3 words
    "the cat sat on the mat the cat sat",  # 9 words, 7 trigrams, "the cat sat" twice
]


def _score(options: dict, responses: list[str] = RESPONSES) -> np.ndarray:
    scorer = build_scorer("heuristic", name="h", options=options)
    return scorer.score([""] * len(responses), responses, None)


def test_verbosity_counts_whitespace_words() -> None:
    np.testing.assert_array_equal(_score({"metric": "verbosity"}), [4, 0, 6, 2, 9])


def test_conciseness_formula() -> None:
    got = _score({"metric": "conciseness", "target": 4})
    # -|n - 4| / 4
    np.testing.assert_allclose(got, [0.0, -1.0, -0.5, -0.5, -1.25])


def test_repetition_formula() -> None:
    got = _score({"metric": "repetition"})
    np.testing.assert_allclose(got, [1.0, 0.0, 0.5, 1.0, 6 / 7])
    assert repetition(list("aaaa"), n=1) == pytest.approx(0.25)
    assert _score({"metric": "repetition", "n": 2}, ["a b a b"])[0] == pytest.approx(2 / 3)


def test_tokenizer_option_counts_tokenizer_ids(minilm_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    text = "Tokenization splits unbelievably long words."
    expected = len(tok(text, add_special_tokens=False)["input_ids"])
    assert expected != len(text.split())
    got = _score({"metric": "verbosity", "tokenizer": str(minilm_dir)}, [text])
    assert got[0] == expected


def test_conciseness_needs_target() -> None:
    with pytest.raises(ScorerError, match="needs option 'target'"):
        build_scorer("heuristic", name="short", options={"metric": "conciseness"})


def test_unknown_option_names_key_and_accepted() -> None:
    with pytest.raises(ScorerError) as err:
        build_scorer("heuristic", name="short", options={"metric": "verbosity", "ngram": 2})
    msg = str(err.value)
    assert "objective 'short': unknown option 'ngram'" in msg
    assert "accepted: metric, target, n, tokenizer" in msg
    assert "\n" not in msg


def test_bad_option_value_is_one_line() -> None:
    with pytest.raises(ScorerError, match="option 'metric'") as err:
        build_scorer("heuristic", name="x", options={"metric": "brevity"})
    assert "\n" not in str(err.value)


def test_column_scale_offset() -> None:
    scorer = build_scorer("column", name="c", options={"column": "q", "scale": -2, "offset": 1})
    extras = {"q": np.array([0.0, 1.0, 2.5]), "other": np.zeros(3)}
    np.testing.assert_array_equal(scorer.score(["p"] * 3, ["r"] * 3, extras), [1.0, -1.0, -4.0])


def test_column_missing_names_available() -> None:
    scorer = build_scorer("column", name="c", options={"column": "quality"})
    with pytest.raises(ScorerError, match=r"column 'quality'.*available: helpfulness, score"):
        scorer.score(["p"], ["r"], {"score": np.ones(1), "helpfulness": np.ones(1)})


def test_column_nan_names_row() -> None:
    from paretohqd.stages.kit.scoring.scorers import ScoreValueError

    scorer = build_scorer("column", name="c", options={"column": "q"})
    with pytest.raises(ScoreValueError, match="objective 'c': row 2") as err:
        scorer.score(["p"] * 3, ["r"] * 3, {"q": np.array([1.0, 2.0, np.nan])})
    assert err.value.row == 2
