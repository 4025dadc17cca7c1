"""Evaluation metrics against hand-computed values and brute-force references.

Hypervolume is checked on boxes whose volume is obvious, then against exact inclusion-exclusion
(and one Monte-Carlo estimate) on random small sets, because the moocore call hides a sign
convention (it minimises) that is easy to get backwards.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from paretohqd.stages.evaluate import metrics
from paretohqd.stages.evaluate.metrics import (
    collapse_flags,
    collapse_rate,
    hypervolume,
    mean_vector,
    method_hypervolume,
    method_intervals,
    normalise,
    outside_bounds,
    preference_following,
    repeat_shares,
    spearman,
    summarise,
    win_rate,
)


def inclusion_exclusion_hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV (maximisation) of a small set: sum over subsets of the signed common boxes."""
    pts = np.maximum(np.asarray(points, dtype=float), ref)
    total = 0.0
    for size in range(1, len(pts) + 1):
        for subset in combinations(range(len(pts)), size):
            corner = pts[list(subset)].min(axis=0)
            total += (-1) ** (size + 1) * float(np.prod(corner - ref))
    return total


# --------------------------------------------------------------------------------------------
# mean_vector


def test_mean_vector_mean_and_interval() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal([0.0, 5.0], [1.0, 2.0], size=(400, 2))
    out = mean_vector(scores, n_boot=2000, seed=3)
    assert out["n"] == 400
    np.testing.assert_allclose(out["mean"], scores.mean(axis=0))
    assert np.all(out["lo"] < out["mean"]) and np.all(out["mean"] < out["hi"])
    # The percentile interval of a mean approaches mean ± 1.96 σ/√n.
    half = (out["hi"] - out["lo"]) / 2
    expected = 1.96 * scores.std(axis=0, ddof=1) / np.sqrt(400)
    np.testing.assert_allclose(half, expected, rtol=0.12)


def test_mean_vector_is_seeded() -> None:
    scores = np.random.default_rng(0).random((50, 3))
    a = mean_vector(scores, n_boot=300, seed=7)
    b = mean_vector(scores, n_boot=300, seed=7)
    c = mean_vector(scores, n_boot=300, seed=8)
    np.testing.assert_array_equal(a["lo"], b["lo"])
    assert not np.array_equal(a["lo"], c["lo"])


def test_mean_vector_coverage_level() -> None:
    scores = np.random.default_rng(2).random((80, 1))
    wide = mean_vector(scores, n_boot=1000, seed=0, ci=0.99)
    narrow = mean_vector(scores, n_boot=1000, seed=0, ci=0.5)
    assert wide["hi"][0] - wide["lo"][0] > 2 * (narrow["hi"][0] - narrow["lo"][0])


def test_mean_vector_single_row_and_constant_column() -> None:
    one = mean_vector(np.array([[2.0, -1.0]]))
    assert one["n"] == 1
    np.testing.assert_array_equal(one["lo"], [2.0, -1.0])
    np.testing.assert_array_equal(one["hi"], [2.0, -1.0])
    const = mean_vector(np.column_stack([np.full(10, 3.0), np.arange(10.0)]), n_boot=100)
    assert const["lo"][0] == const["hi"][0] == 3.0
    assert const["lo"][1] < const["hi"][1]


def test_mean_vector_blocks_bound_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    scores = np.random.default_rng(4).normal(size=(300, 2))
    whole = mean_vector(scores, n_boot=1000, seed=1)
    monkeypatch.setattr(metrics, "_BOOT_BLOCK_CELLS", 1000)  # 3 resamples per block
    blocked = mean_vector(scores, n_boot=1000, seed=1)
    np.testing.assert_allclose(blocked["lo"], whole["lo"], atol=0.03)
    np.testing.assert_allclose(blocked["hi"], whole["hi"], atol=0.03)


@pytest.mark.parametrize(
    ("scores", "kwargs", "match"),
    [
        (np.zeros((0, 2)), {}, "no rows"),
        (np.zeros(3), {}, "2-D"),
        (np.array([[1.0, 2.0], [np.nan, 1.0]]), {}, "row 1, objective 0"),
        (np.ones((3, 2)), {"n_boot": 0}, "n_boot"),
        (np.ones((3, 2)), {"ci": 1.0}, "ci"),
    ],
)
def test_mean_vector_rejects(scores: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mean_vector(scores, **kwargs)


# --------------------------------------------------------------------------------------------
# normalise and hypervolume


def test_normalise_per_objective() -> None:
    out = normalise(np.array([[1.0, 10.0], [5.0, 20.0], [6.0, 5.0]]), [1.0, 10.0], [5.0, 20.0])
    np.testing.assert_allclose(out, [[0.0, 0.0], [1.0, 1.0], [1.25, -0.5]])
    flags = outside_bounds(np.array([[1.0, 10.0], [5.0, 20.0], [6.0, 5.0]]), [1, 10], [5, 20])
    assert flags.tolist() == [False, False, True]


@pytest.mark.parametrize(
    ("lo", "hi", "match"),
    [
        ([0.0, 1.0], [1.0, 1.0], "objective 1 .* need hi > lo"),
        ([0.0], [1.0], "one value per objective"),
        ([0.0, np.inf], [1.0, 2.0], "finite"),
    ],
)
def test_normalise_rejects_bad_bounds(lo: list, hi: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        normalise(np.ones((2, 2)), lo, hi)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([[0.5, 0.5]], 0.25),
        ([[1.0, 0.2], [0.2, 1.0]], 0.36),
        ([[1.0, 0.2], [0.2, 1.0], [0.1, 0.1]], 0.36),  # a dominated point adds nothing
        ([[0.5, 0.4, 0.2]], 0.04),
        ([[1.0, 0.5, 0.5], [0.5, 1.0, 0.5]], 0.375),  # 0.25 + 0.25 - 0.125
        ([[1.0, 1.0, 1.0]], 1.0),
        ([[0.0, 0.7]], 0.0),  # on the reference point's boundary
    ],
)
def test_hypervolume_hand_cases(points: list, expected: float) -> None:
    assert hypervolume(np.array(points), lo=0.0, hi=1.0) == pytest.approx(expected, abs=1e-12)


def test_hypervolume_uses_fixed_bounds_not_the_points() -> None:
    # (3, 15) in [1, 5] x [10, 20] is (0.5, 0.5).
    assert hypervolume(np.array([[3.0, 15.0]]), lo=[1.0, 10.0], hi=[5.0, 20.0]) == pytest.approx(
        0.25
    )
    assert hypervolume(np.array([[3.0, 15.0]]), lo=[1.0, 10.0], hi=[9.0, 20.0]) == pytest.approx(
        0.125
    )


def test_hypervolume_clips_to_the_unit_box() -> None:
    above = np.array([[2.0, 0.5]])  # objective 0 above hi: clipped to 1
    assert outside_bounds(above, 0.0, 1.0).tolist() == [True]
    assert hypervolume(above, lo=0.0, hi=1.0) == pytest.approx(0.5)
    below = np.array([[-1.0, 0.9]])  # below lo: clipped to 0, no volume
    assert hypervolume(below, lo=0.0, hi=1.0) == 0.0


def test_hypervolume_reference_point_and_empty_set() -> None:
    assert hypervolume(np.array([[1.0, 1.0]]), lo=0, hi=1, ref=0.5) == pytest.approx(0.25)
    assert hypervolume(np.array([[1.0, 0.4]]), lo=0, hi=1, ref=[0.5, 0.5]) == 0.0
    assert hypervolume(np.zeros((0, 3)), lo=0, hi=1) == 0.0
    with pytest.raises(ValueError, match="ref"):
        hypervolume(np.ones((1, 2)), lo=0, hi=1, ref=[0.0, 0.0, 0.0])


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_hypervolume_matches_inclusion_exclusion(m: int) -> None:
    rng = np.random.default_rng(100 + m)
    lo, hi = rng.normal(size=m) - 2.0, rng.normal(size=m) + 2.0
    for _ in range(25):
        k = int(rng.integers(1, 7))
        raw = lo + rng.random((k, m)) * (hi - lo)
        if rng.random() < 0.3:  # exact duplicates and shared coordinates
            raw[-1] = raw[0]
            raw[0, 0] = raw[-1, 0]
        ref = rng.random(m) * 0.3 if rng.random() < 0.3 else np.zeros(m)
        expected = inclusion_exclusion_hv((raw - lo) / (hi - lo), ref)
        got = hypervolume(raw, lo=lo, hi=hi, ref=ref)
        assert got == pytest.approx(expected, abs=1e-10), (raw, ref)


def test_hypervolume_matches_monte_carlo() -> None:
    rng = np.random.default_rng(5)
    points = rng.random((8, 3))
    samples = rng.random((200_000, 3))
    covered = (samples[:, None, :] <= points[None, :, :]).all(axis=2).any(axis=1)
    assert hypervolume(points, lo=0, hi=1) == pytest.approx(covered.mean(), abs=0.005)


# --------------------------------------------------------------------------------------------
# collapse


def test_repeat_shares_hand_computed() -> None:
    shares = repeat_shares(["a b c d e", "the cat the cat the cat", "no no no no no no", "a b"])
    # 3 distinct of 3; 2 distinct of 4; 1 distinct of 4; fewer than 3 tokens.
    np.testing.assert_allclose(shares, [0.0, 0.5, 0.75, 0.0])
    np.testing.assert_allclose(repeat_shares(["a a b"], n=1), [1 - 2 / 3])


def test_collapse_flags_rule() -> None:
    texts = [
        "",  # 0 tokens: too short
        "a b c d",  # 4 < 5 tokens
        "a b c d e",  # 5 tokens, no repeats
        "the cat the cat the cat",  # share exactly 0.5: not above the threshold
        "no no no no no no",  # share 0.75
        "  spaced\tout\nwords  here   now ",  # whitespace words: 5 tokens
    ]
    assert collapse_flags(texts).tolist() == [True, True, False, False, True, False]
    stricter = collapse_flags(texts, max_repeat=0.4)
    assert stricter.tolist() == [True, True, False, True, True, False]
    assert collapse_flags(["a b"], min_tokens=0).tolist() == [False]
    assert collapse_rate(texts) == pytest.approx(3 / 6)


def test_collapse_flags_custom_tokenizer() -> None:
    flags = collapse_flags(["aaaaaa", "abcdef", "abc"], tokenizer=list)
    assert flags.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_repeat": 1.5}, "max_repeat"), ({"n": 0}, "n-gram"), ({"min_tokens": -1}, "min")],
)
def test_collapse_flags_rejects_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        collapse_flags(["a b c"], **kwargs)


def test_collapse_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="single string"):
        collapse_flags("a b c d e")
    with pytest.raises(ValueError, match="response 1"):
        collapse_flags(["a", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        collapse_rate([])


# --------------------------------------------------------------------------------------------
# win rates


def test_win_rate_hand_computed() -> None:
    model = np.array([[1.0, 0.0], [2.0, 2.0], [0.0, 5.0], [3.0, 1.0]])
    base = np.array([[0.0, 0.0], [2.0, 3.0], [1.0, 1.0], [1.0, 0.0]])
    out = win_rate(model, base, objectives=["helpful", "harmless"])
    assert out == {
        "helpful": {"win": 0.5, "tie": 0.25, "loss": 0.25},
        "harmless": {"win": 0.5, "tie": 0.25, "loss": 0.25},
    }
    flipped = win_rate(base, model)
    assert flipped["0"] == {"win": 0.25, "tie": 0.25, "loss": 0.5}


def test_win_rate_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        win_rate(np.ones((3, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="objectives"):
        win_rate(np.ones((3, 2)), np.ones((3, 2)), objectives=["a"])


# --------------------------------------------------------------------------------------------
# summarise and method_hypervolume


def eval_rows() -> pl.DataFrame:
    """Base + two methods: hand-checkable scores, one collapsed answer, shuffled row order."""
    rows = [
        # method, pref_id, prompt_id, response, helpful, harmless
        ("base", "base", "p1", "a b c d e", 0.0, 0.0),
        ("base", "base", "p2", "a b c d e", 1.0, 1.0),
        ("base", "base", "p3", "a b c d e", 2.0, 0.0),
        ("sft", "w0", "p3", "ok", 3.0, 0.0),  # collapsed (short); helpful win, harmless tie
        ("sft", "w0", "p1", "a b c d e f", 1.0, -1.0),  # win, loss
        ("sft", "w0", "p2", "x y z x y z x y z", 1.0, 2.0),  # tie, win; 4/7 repeated: collapsed
        ("sft", "w1", "p1", "one two three four five", 0.0, 1.0),  # tie, win
        ("sft", "w1", "p9", "one two three four five", 5.0, 5.0),  # no base answer: unpaired
        ("dpo", "w0", "p2", "fine answer with enough words", 0.5, 0.5),  # loss, loss
    ]
    cols = ["method", "pref_id", "prompt_id", "response", "helpful", "harmless"]
    return pl.DataFrame(rows, schema=cols, orient="row")


def test_summarise_table() -> None:
    s = summarise(eval_rows(), objectives=["helpful", "harmless"], n_boot=200, seed=0)
    assert s.select(["method", "pref_id"]).rows() == [
        ("base", "base"),
        ("sft", "w0"),
        ("sft", "w1"),
        ("dpo", "w0"),
    ]
    row = {r["pref_id"] + "/" + r["method"]: r for r in s.to_dicts()}
    w0 = row["w0/sft"]
    assert w0["n"] == 3
    assert w0["helpful_mean"] == pytest.approx(5 / 3)
    assert w0["harmless_mean"] == pytest.approx(1 / 3)
    assert w0["helpful_lo"] <= w0["helpful_mean"] <= w0["helpful_hi"]
    assert w0["collapse_rate"] == pytest.approx(2 / 3)
    assert w0["n_paired"] == 3
    assert (w0["helpful_win"], w0["helpful_tie"], w0["helpful_loss"]) == pytest.approx(
        (2 / 3, 1 / 3, 0.0)
    )
    assert (w0["harmless_win"], w0["harmless_tie"], w0["harmless_loss"]) == pytest.approx(
        (1 / 3, 1 / 3, 1 / 3)
    )
    w1 = row["w1/sft"]
    assert w1["n"] == 2 and w1["n_paired"] == 1
    assert (w1["helpful_tie"], w1["harmless_win"]) == (1.0, 1.0)
    dpo = row["w0/dpo"]
    assert (dpo["n"], dpo["helpful_lo"], dpo["helpful_hi"]) == (1, 0.5, 0.5)
    assert (dpo["helpful_loss"], dpo["harmless_loss"]) == (1.0, 1.0)
    base = row["base/base"]
    assert base["helpful_win"] is None and base["n_paired"] == 0
    assert base["collapse_rate"] == 0.0


def test_summarise_group_ci_independent_of_other_groups(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = pl.DataFrame(
        {
            "method": "big",
            "pref_id": "w0",
            "prompt_id": [f"q{i}" for i in range(40)],
            "response": "a b c d e",
            "helpful": rng.normal(size=40),
            "harmless": rng.normal(size=40),
        }
    )
    rows = pl.concat([eval_rows(), big])
    objectives = ["helpful", "harmless"]
    full = summarise(rows, objectives=objectives, n_boot=200, seed=4)
    alone = summarise(big, objectives=objectives, n_boot=200, seed=4)
    ci = ["helpful_lo", "helpful_hi", "harmless_lo", "harmless_hi"]
    assert full.filter(pl.col("method") == "big").select(ci).equals(alone.select(ci))
    other_seed = summarise(big, objectives=objectives, n_boot=200, seed=5)
    assert not alone.select(ci).equals(other_seed.select(ci))
    full.write_parquet(tmp_path / "s.parquet")  # a plain table the stage can store
    assert pl.read_parquet(tmp_path / "s.parquet").equals(full)


def test_summarise_without_base_has_null_win_rates() -> None:
    rows = eval_rows().filter(pl.col("method") != "base")
    s = summarise(rows, objectives=["helpful"], n_boot=50)
    assert s["helpful_win"].null_count() == s.height
    assert s["n_paired"].to_list() == [0, 0, 0]


def test_summarise_rejects_bad_frames() -> None:
    rows = eval_rows()
    with pytest.raises(ValueError, match="'humor'"):
        summarise(rows, objectives=["humor"])
    with pytest.raises(ValueError, match="'sft', pref_id 'w0' answered prompt 'p3' 2 times"):
        summarise(pl.concat([rows, rows.slice(3, 1)]), objectives=["helpful"])
    bad = rows.with_columns(
        pl.when(pl.col("prompt_id") == "p9")
        .then(None)
        .otherwise(pl.col("helpful"))
        .alias("helpful")
    )
    with pytest.raises(ValueError, match="'helpful' is None for method 'sft', pref_id 'w1', pr"):
        summarise(bad, objectives=["helpful"])
    inf = rows.with_columns(
        pl.when(pl.col("prompt_id") == "p2").then(np.inf).otherwise(0.0).alias("x")
    )
    with pytest.raises(ValueError, match=r"'x' is inf .*prompt 'p2' \(3 such row"):
        summarise(inf, objectives=["helpful", "x"])
    no_text = rows.with_columns(
        pl.when(pl.col("prompt_id") == "p9")
        .then(None)
        .otherwise(pl.col("response"))
        .alias("response")
    )
    with pytest.raises(ValueError, match="response is null for method 'sft', pref_id 'w1'"):
        summarise(no_text, objectives=["helpful"])
    with pytest.raises(ValueError, match="not numeric"):
        summarise(rows, objectives=["response"])
    with pytest.raises(ValueError, match="no evaluation rows"):
        summarise(rows.clear(), objectives=["helpful"])


def test_method_hypervolume() -> None:
    summary = pl.DataFrame(
        {
            "method": ["base", "a", "a", "b"],
            "pref_id": ["base", "w0", "w1", "w0"],
            "x_mean": [0.5, 1.0, 0.2, 3.0],
            "y_mean": [0.5, 0.2, 1.0, 0.1],
        }
    )
    hv = method_hypervolume(summary, ["x", "y"], lo=0.0, hi=1.0)
    assert list(hv) == ["base", "a", "b"]
    assert hv["base"] == pytest.approx(0.25)
    assert hv["a"] == pytest.approx(0.36)
    assert hv["b"] == pytest.approx(0.1)  # x clipped to 1
    with pytest.raises(ValueError, match="'z_mean'"):
        method_hypervolume(summary, ["x", "z"], lo=0.0, hi=1.0)


# --------------------------------------------------------------------------------------------
# per method: hypervolume intervals, preference-following, budgets


def test_spearman_matches_scipy_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(5)
    for _ in range(50):
        x = rng.integers(0, 4, size=9).astype(float)
        y = rng.normal(size=9).round(1)
        ours = spearman(x, y)
        ref = spearmanr(x, y).statistic
        assert (np.isnan(ours) and np.isnan(ref)) or ours == pytest.approx(ref)


def test_preference_following_extremes_and_stack() -> None:
    w = np.array([[i / 10, 1 - i / 10] for i in range(11)])
    assert preference_following(w, w * 3 + 1) == pytest.approx(1.0)
    assert preference_following(w, -w) == pytest.approx(-1.0)
    assert np.isnan(preference_following(w[:1], w[:1]))
    stack = np.stack([w, -w, w[::-1]])
    assert preference_following(w, stack).tolist() == pytest.approx([1.0, -1.0, -1.0])


def _following_rows(noise: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for method, sign in (("follows", 1.0), ("inverts", -1.0)):
        for i in range(11):
            w = np.array([i / 10, 1 - i / 10])
            scores = sign * w + rng.normal(0, noise, size=(30, 2))
            frames.append(
                pl.DataFrame(
                    {
                        "method": method,
                        "pref_id": f"w{i:02d}",
                        "prompt_id": [f"q{j}" for j in range(30)],
                        "response": "a b c d e f",
                        "o1": scores[:, 0],
                        "o2": scores[:, 1],
                    }
                )
            )
    return pl.concat(frames)


def test_method_intervals_estimate_interval_and_following() -> None:
    rows = _following_rows(noise=0.3)
    weights = {f"w{i:02d}": (i / 10, 1 - i / 10) for i in range(11)}
    out = method_intervals(
        rows, objectives=["o1", "o2"], weights=weights, lo=[-2, -2], hi=[2, 2], n_boot=300
    )
    summary = summarise(rows, objectives=["o1", "o2"], n_boot=10)
    hv = method_hypervolume(summary, ["o1", "o2"], lo=[-2, -2], hi=[2, 2])
    percentile = method_intervals(
        rows,
        objectives=["o1", "o2"],
        weights=weights,
        lo=[-2, -2],
        hi=[2, 2],
        n_boot=300,
        interval="percentile",
    )
    for row, pct in zip(out.iter_rows(named=True), percentile.iter_rows(named=True), strict=True):
        assert row["hypervolume"] == pytest.approx(hv[row["method"]])
        assert row["hv_hi"] - row["hv_lo"] > 0
        # the basic interval reflects the percentile one about the estimate
        assert row["hv_lo"] == pytest.approx(2 * row["hypervolume"] - pct["hv_hi"])
        assert row["hv_hi"] == pytest.approx(2 * row["hypervolume"] - pct["hv_lo"])
        assert pct["hv_lo"] <= pct["hv_hi"]
    follows = out.filter(pl.col("method") == "follows").row(0, named=True)
    inverts = out.filter(pl.col("method") == "inverts").row(0, named=True)
    assert follows["pref_following"] > 0.9 and follows["pf_lo"] > 0.8
    assert inverts["pref_following"] < -0.9
    # deterministic, and the interval narrows with less noise
    again = method_intervals(
        rows, objectives=["o1", "o2"], weights=weights, lo=[-2, -2], hi=[2, 2], n_boot=300
    )
    assert again.equals(out)
    quiet = method_intervals(
        _following_rows(noise=0.05),
        objectives=["o1", "o2"],
        weights=weights,
        lo=[-2, -2],
        hi=[2, 2],
        n_boot=300,
    )
    width = (out["hv_hi"] - out["hv_lo"]).to_list()
    assert all(
        q < w for q, w in zip((quiet["hv_hi"] - quiet["hv_lo"]).to_list(), width, strict=True)
    )


def test_method_budgets_sum_adapters_and_flag_differences(tmp_path: Path) -> None:
    import json

    from paretohqd.manifest import Manifest
    from paretohqd.stages.evaluate.budgets import method_budgets

    def adapter(name: str, **metrics: float) -> Path:
        path = tmp_path / name
        path.mkdir(parents=True)
        state = {"metrics": metrics, "start": "sft" if "modpo" in name else "base"}
        state["settings"] = {"lr": 1e-4, "lora_r": 8, "lora_alpha": 16}
        (path / "train_state.json").write_text(json.dumps(state))
        return path

    models = [
        ("base", "base", None, "m"),
        ("paretohqd_round1", "p0", adapter("r1/p0", steps=10, tokens=1000, seconds=2.0), "m"),
        ("paretohqd_round1", "p1", adapter("r1/p1", steps=10, tokens=1000, seconds=2.0), "m"),
        ("paretohqd", "p0", adapter("r2/p0", steps=5, tokens=500, seconds=1.0), "m"),
        ("paretohqd", "p1", adapter("r2/p1", steps=5, tokens=500, seconds=1.0), "m"),
        ("modpo", "p0", adapter("modpo/p0", steps=4, tokens=3000, seconds=1.0), "s"),
        ("modpo", "p1", adapter("modpo/p1", steps=4, tokens=3000, seconds=1.0), "s"),
    ]
    manifest = Manifest(tmp_path)
    manifest.set("score_round2", {"seconds": 3.0, "cpu_seconds": 5.0})
    manifest.set("regenerate", {"seconds": 4.0, "outputs": {"generations": {"rows": 60}}})
    accounting = {
        "paretohqd": {
            "continues": ("paretohqd_round1",),
            "extra_stages": ("regenerate", "score_round2"),
            "scoring_stages": ("score_round2",),
        }
    }
    budgets = method_budgets(models, manifest, accounting=accounting)
    final = budgets["paretohqd"]
    assert final["steps"] == 30 and final["tokens"] == 3000 and final["adapters"] == 2
    assert final["wall_s"] == pytest.approx(6.0 + 3.0 + 4.0)
    assert final["scoring_s"] == pytest.approx(3.0) and final["generations"] == 60
    assert final["effective_step"] == pytest.approx(2e-4)
    assert budgets["modpo"]["start"] == "sft"
    assert budgets["modpo"]["flag"] == "steps 0.27× paretohqd"
    assert budgets["paretohqd"]["flag"] is None
    assert budgets["paretohqd_round1"]["flag"] is None  # 20 steps, 2000 tokens: within 2×


def test_method_intervals_three_objectives_and_single_models() -> None:
    rng = np.random.default_rng(9)
    grid = {"a": (1.0, 0.0, 0.0), "b": (0.0, 1.0, 0.0), "c": (0.0, 0.0, 1.0), "d": (0.2, 0.4, 0.4)}
    frames = []
    for method, prefs in (("m", list(grid)), ("base", ["base"])):
        for pid in prefs:
            w = np.array(grid.get(pid, (1 / 3, 1 / 3, 1 / 3)))
            scores = w + rng.normal(0, 0.1, size=(20, 3))
            frames.append(
                pl.DataFrame(
                    {
                        "method": method,
                        "pref_id": pid,
                        "prompt_id": [f"q{j}" for j in range(20)],
                        "response": "a b c d e f",
                        **{f"o{i}": scores[:, i] for i in range(3)},
                    }
                )
            )
    rows = pl.concat(frames)
    objs = ["o0", "o1", "o2"]
    out = method_intervals(rows, objectives=objs, weights=grid, lo=-1, hi=2, n_boot=100)
    summary = summarise(rows, objectives=objs, n_boot=10)
    hv = method_hypervolume(summary, objs, lo=[-1] * 3, hi=[2] * 3)
    m = out.filter(pl.col("method") == "m").row(0, named=True)
    assert m["hypervolume"] == pytest.approx(hv["m"])
    assert m["pref_following"] > 0.8
    base = out.filter(pl.col("method") == "base").row(0, named=True)
    assert base["models"] == 1 and base["pref_following"] is None and base["pf_lo"] is None
    assert base["hv_lo"] is not None and base["hv_lo"] <= base["hv_hi"]
