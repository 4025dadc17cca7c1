"""Evaluation metrics: mean reward vectors with bootstrap CIs, hypervolume (with a bootstrap
interval), preference-following, collapse, win rates.

Everything here is a pure function of arrays or of a polars frame of scored generations, so the
evaluate stage can recompute every number from ``eval_generations.parquet`` alone.

Conventions (docs/algorithms.md, "Evaluation"):

- Every objective is **maximised**.
- Hypervolume is computed on the *mean* reward vector of each preference model, after min-max
  normalisation with a **fixed** per-objective ``(lo, hi)`` (a config value or the round-1 pool's
  range, never the evaluated points' own range, so numbers are comparable across runs). The
  reference point is 0 in the normalised space, i.e. the nadir ``lo``. Coordinates outside
  ``[lo, hi]`` are clipped to ``[0, 1]`` before the hypervolume is taken; use
  :func:`outside_bounds` to find (and report) which points were clipped.
- A response is *collapsed* when it has fewer than ``min_tokens`` tokens or more than
  ``max_repeat`` of its n-grams are repeats (the proposed rule [I] for the paper's "language
  collapse": extremely short responses or repetitive phrases).
- A method's hypervolume interval is a paired bootstrap over held-out *prompts*: each resample
  draws prompts with replacement, recomputes every model's mean vector on the same draw, and
  recomputes each method's hypervolume from them; the interval is the basic (reverse
  percentile) one, which removes the upward bias resampling gives a hypervolume.
- *Preference-following* of a method is the Spearman rank correlation, over its preference
  models, between the weight w_i and the model's mean on objective i, averaged over the
  objectives: 1 when more weight always means more of that objective.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import polars as pl

#: Boolean flags per response; a type alias for readability.
BoolArray = np.ndarray
#: Bootstrap resamples are drawn in blocks of at most this many (resample, row) cells, so memory
#: stays bounded for large evaluation sets.
_BOOT_BLOCK_CELLS = 1 << 22


# --------------------------------------------------------------------------------------------
# validation helpers


def _as_matrix(values: Any, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """A finite float64 (n, M) matrix, or a ValueError naming the first bad row."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n, M) (one row per response, one column per "
            f"objective); got shape {arr.shape}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no objective columns (shape {arr.shape})")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} has no rows: need at least one scored response")
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} row {row}, objective {col} is {arr[row, col]}; scores must be finite "
            "(drop or re-score that response)"
        )
    return arr


def _vector(value: Any, m: int, name: str) -> np.ndarray:
    """A finite float64 vector of length ``m``; a scalar is repeated for every objective."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(m, float(arr))
    if arr.shape != (m,):
        raise ValueError(
            f"{name} must be a scalar or have one value per objective ({m}); got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got {arr.tolist()}")
    return arr


def _bounds(lo: Any, hi: Any, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-objective (lo, hi) as float vectors of length ``m`` with hi > lo everywhere."""
    lo_a, hi_a = _vector(lo, m, "lo"), _vector(hi, m, "hi")
    bad = np.flatnonzero(hi_a <= lo_a)
    if bad.size:
        k = int(bad[0])
        raise ValueError(
            f"normalisation bounds for objective {k} are lo={lo_a[k]}, hi={hi_a[k]}; need "
            "hi > lo (set evaluate.bounds to a (min, max) range with max > min)"
        )
    return lo_a, hi_a


# --------------------------------------------------------------------------------------------
# mean vectors


def mean_vector(
    scores: np.ndarray, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95
) -> dict[str, Any]:
    """Mean reward vector with a percentile-bootstrap confidence interval per objective.

    The bootstrap resamples whole rows (responses), so the interval reflects how much the mean
    would move with a different draw of held-out prompts; objectives are resampled jointly.

    Parameters
    ----------
    scores
        ``(n, M)`` finite scores, one row per response.
    n_boot
        Bootstrap resamples (>= 1).
    seed
        Seed of the resampling generator; the same seed gives the same interval.
    ci
        Coverage of the interval, in (0, 1).

    Returns
    -------
    dict
        ``mean``, ``lo``, ``hi``: float64 arrays of length M; ``n``: rows used. With ``n == 1``
        the interval is degenerate (``lo == hi == mean``).

    Raises
    ------
    ValueError
        If ``scores`` is empty, not 2-D or not finite, or ``n_boot``/``ci`` are out of range.

    Examples
    --------
    >>> out = mean_vector(np.array([[1.0, 0.0], [3.0, 2.0]]), n_boot=200)
    >>> out["mean"].tolist()
    [2.0, 1.0]
    """
    arr = _as_matrix(scores, "scores")
    return _mean_with_rng(arr, n_boot, np.random.default_rng(seed), ci)


def _bootstrap_means(arr: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, M)`` means of row resamples, drawn in memory-bounded blocks."""
    n = arr.shape[0]
    block = max(1, _BOOT_BLOCK_CELLS // n)
    out = np.empty((n_boot, arr.shape[1]))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = arr[idx].mean(axis=1)
    return out


# --------------------------------------------------------------------------------------------
# normalisation and hypervolume


def normalise(points: np.ndarray, lo: Any, hi: Any) -> np.ndarray:
    """Per-objective min-max normalisation ``(p - lo) / (hi - lo)``, without clipping.

    ``lo``/``hi`` are fixed bounds (scalars or length-M vectors) with ``hi > lo``; values
    outside them map outside ``[0, 1]`` (see :func:`outside_bounds`).

    Examples
    --------
    >>> normalise(np.array([[0.0, 5.0]]), [0.0, 0.0], [2.0, 10.0]).tolist()
    [[0.0, 0.5]]
    """
    arr = _as_matrix(points, "points", allow_empty=True)
    lo_a, hi_a = _bounds(lo, hi, arr.shape[1])
    out: np.ndarray = (arr - lo_a) / (hi_a - lo_a)
    return out


def outside_bounds(points: np.ndarray, lo: Any, hi: Any) -> BoolArray:
    """Per row: does any coordinate fall outside ``[lo, hi]`` (and so get clipped for HV)?"""
    norm = normalise(points, lo, hi)
    return np.asarray(((norm < 0.0) | (norm > 1.0)).any(axis=1), dtype=bool)


def hypervolume(points: np.ndarray, *, lo: Any, hi: Any, ref: Any = None) -> float:
    """Hypervolume (maximisation) of ``points`` in the min-max normalised objective space.

    Points are normalised with the fixed ``lo``/``hi``, clipped to ``[0, 1]`` (count the clipped
    rows with :func:`outside_bounds`) and measured against the reference point ``ref``, given
    in the normalised space (default 0, the nadir ``lo``). The result therefore lies in
    ``[0, 1]``: 1 means a point at the ideal ``hi``. Points not strictly better than ``ref`` in
    every objective add nothing.

    Parameters
    ----------
    points
        ``(k, M)`` raw (unnormalised) objective vectors, e.g. the mean vectors of one method's
        preference models; ``k`` may be 0 (hypervolume 0).
    lo, hi
        Fixed per-objective bounds (scalars or length-M), ``hi > lo``.
    ref
        Reference point in normalised space (scalar or length-M); None means 0.

    Returns
    -------
    float

    Examples
    --------
    >>> round(hypervolume(np.array([[1.0, 0.2], [0.2, 1.0]]), lo=0.0, hi=1.0), 9)
    0.36
    """
    norm = np.clip(normalise(points, lo, hi), 0.0, 1.0)
    m = norm.shape[1]
    ref_a = np.zeros(m) if ref is None else _vector(ref, m, "ref")
    better = norm[(norm > ref_a).all(axis=1)]
    if better.shape[0] == 0:
        return 0.0
    import moocore

    # moocore minimises: negate both the points and the reference so "larger is better" holds.
    return float(moocore.hypervolume(-better, ref=-ref_a))


# --------------------------------------------------------------------------------------------
# collapse


def _repeat_share(tokens: Sequence[str], n: int) -> float:
    """1 - distinct/total n-grams; 0 when there are fewer than ``n`` tokens."""
    total = len(tokens) - n + 1
    if total <= 0:
        return 0.0
    grams = {tuple(tokens[i : i + n]) for i in range(total)}
    return 1.0 - len(grams) / total


def repeat_shares(
    responses: Sequence[str], *, n: int = 3, tokenizer: Callable[[str], Sequence[str]] | None = None
) -> np.ndarray:
    """Share of repeated n-grams per response (``1 - distinct/total``; 0 below ``n`` tokens)."""
    if n < 1:
        raise ValueError(f"n (the n-gram size) must be >= 1; got {n}")
    split = tokenizer or str.split
    return np.array([_repeat_share(list(split(r)), n) for r in responses], dtype=np.float64)


def collapse_flags(
    responses: Sequence[str],
    *,
    min_tokens: int = 5,
    max_repeat: float = 0.5,
    n: int = 3,
    tokenizer: Callable[[str], Sequence[str]] | None = None,
) -> BoolArray:
    """Flag degenerate ("collapsed") responses.

    A response is flagged when it has fewer than ``min_tokens`` tokens, or when its share of
    repeated n-grams, ``1 - distinct n-grams / total n-grams``, exceeds ``max_repeat``
    (strictly). Tokens are whitespace-separated words unless ``tokenizer`` (a callable from text
    to tokens) is given. A response with fewer than ``n`` tokens has repeated share 0, but may
    still be flagged as too short.

    Parameters
    ----------
    responses
        Generated texts.
    min_tokens
        Responses with fewer tokens are collapsed (0 disables the length rule).
    max_repeat
        Responses whose repeated n-gram share is above this are collapsed, in [0, 1].
    n
        n-gram size (>= 1).
    tokenizer
        Text -> tokens; default ``str.split``.

    Returns
    -------
    numpy.ndarray
        Boolean, one flag per response.

    Examples
    --------
    >>> collapse_flags(["ok", "a b c d e f", "no no no no no no"]).tolist()
    [True, False, True]
    """
    if isinstance(responses, str):
        raise ValueError("responses must be a sequence of texts, not a single string")
    if min_tokens < 0:
        raise ValueError(f"min_tokens must be >= 0; got {min_tokens}")
    if not 0.0 <= max_repeat <= 1.0:
        raise ValueError(f"max_repeat must lie in [0, 1]; got {max_repeat}")
    if n < 1:
        raise ValueError(f"n (the n-gram size) must be >= 1; got {n}")
    split = tokenizer or str.split
    flags = np.zeros(len(responses), dtype=bool)
    for i, text in enumerate(responses):
        if not isinstance(text, str):
            raise ValueError(f"response {i} is {type(text).__name__}, not text")
        tokens = list(split(text))
        flags[i] = len(tokens) < min_tokens or _repeat_share(tokens, n) > max_repeat
    return flags


def collapse_rate(
    responses: Sequence[str],
    *,
    min_tokens: int = 5,
    max_repeat: float = 0.5,
    n: int = 3,
    tokenizer: Callable[[str], Sequence[str]] | None = None,
) -> float:
    """Fraction of responses that :func:`collapse_flags` flags; ValueError when empty."""
    if len(responses) == 0:
        raise ValueError("collapse_rate needs at least one response; got none")
    flags = collapse_flags(
        responses, min_tokens=min_tokens, max_repeat=max_repeat, n=n, tokenizer=tokenizer
    )
    return float(flags.mean())


# --------------------------------------------------------------------------------------------
# win rates


def win_rate(
    model_scores: np.ndarray,
    base_scores: np.ndarray,
    *,
    objectives: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Per-objective share of prompts where the model beats, ties or loses to the base model.

    Rows are paired: row i of both arrays must score answers to the same prompt. Ties are exact
    equality (scores from the same deterministic scorer on the same text tie exactly).

    Parameters
    ----------
    model_scores, base_scores
        ``(n, M)`` finite scores with the same shape.
    objectives
        Names for the M objectives (the keys of the result); default ``"0"``, ``"1"``, ...

    Returns
    -------
    dict
        ``{objective: {"win": w, "tie": t, "loss": l}}`` with ``w + t + l == 1``.

    Examples
    --------
    >>> win_rate(np.array([[1.0], [0.0]]), np.array([[0.0], [0.0]]))
    {'0': {'win': 0.5, 'tie': 0.5, 'loss': 0.0}}
    """
    model = _as_matrix(model_scores, "model_scores")
    base = _as_matrix(base_scores, "base_scores")
    if model.shape != base.shape:
        raise ValueError(
            f"model_scores {model.shape} and base_scores {base.shape} must have the same shape: "
            "one row per prompt, paired, and one column per objective"
        )
    names = [str(i) for i in range(model.shape[1])] if objectives is None else list(objectives)
    if len(names) != model.shape[1]:
        raise ValueError(f"objectives names {len(names)} columns; the scores have {model.shape[1]}")
    win = (model > base).mean(axis=0)
    tie = (model == base).mean(axis=0)
    loss = (model < base).mean(axis=0)
    return {
        name: {"win": float(win[k]), "tie": float(tie[k]), "loss": float(loss[k])}
        for k, name in enumerate(names)
    }


# --------------------------------------------------------------------------------------------
# frames


def _group_seed(seed: int, method: str, pref_id: str) -> np.random.Generator:
    """A generator per (method, pref) so a group's CI does not depend on the other groups."""
    return np.random.default_rng([seed, zlib.crc32(f"{method}\x00{pref_id}".encode())])


def summarise(
    frame: pl.DataFrame,
    *,
    objectives: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    min_tokens: int = 5,
    max_repeat: float = 0.5,
    n: int = 3,
    tokenizer: Callable[[str], Sequence[str]] | None = None,
    base_method: str = "base",
) -> pl.DataFrame:
    """Per-(method, pref_id) summary of scored evaluation generations.

    Parameters
    ----------
    frame
        One row per generated response with columns ``method``, ``pref_id``, ``prompt_id``,
        ``response`` and one numeric column per objective. ``(method, pref_id, prompt_id)``
        must be unique.
    objectives
        The objective columns, in order.
    n_boot, seed, ci
        Bootstrap settings of :func:`mean_vector`; each group's generator is derived from
        ``seed`` and its (method, pref_id), so adding a model leaves other CIs unchanged.
    min_tokens, max_repeat, n, tokenizer
        The collapse rule of :func:`collapse_flags`.
    base_method
        Rows with this method are the reference for win rates (paired on ``prompt_id``).

    Returns
    -------
    polars.DataFrame
        One row per (method, pref_id), in order of first appearance, with columns ``method``,
        ``pref_id``, ``n``, ``{obj}_mean``, ``{obj}_lo``, ``{obj}_hi`` per objective,
        ``collapse_rate``, ``n_paired`` (prompts also answered by the base model) and
        ``{obj}_win``, ``{obj}_tie``, ``{obj}_loss``. Win columns are null for the base model
        itself and wherever no prompt pairs with a base answer.
    """
    import polars as pl

    objectives = list(objectives)
    _check_eval_rows(frame, objectives)
    base_by_prompt = _base_answers(frame, objectives, base_method)
    records: list[dict[str, Any]] = []
    groups = frame.group_by(["method", "pref_id"], maintain_order=True)
    for (method, pref_id), group in groups:
        method, pref_id = str(method), str(pref_id)
        scores = group.select(objectives).cast(pl.Float64).to_numpy()  # validated above
        stats = _mean_with_rng(scores, n_boot, _group_seed(seed, method, pref_id), ci)
        rec: dict[str, Any] = {"method": method, "pref_id": pref_id, "n": int(stats["n"])}
        for k, name in enumerate(objectives):
            rec[f"{name}_mean"] = float(stats["mean"][k])
            rec[f"{name}_lo"] = float(stats["lo"][k])
            rec[f"{name}_hi"] = float(stats["hi"][k])
        rec["collapse_rate"] = collapse_rate(
            group["response"].to_list(),
            min_tokens=min_tokens,
            max_repeat=max_repeat,
            n=n,
            tokenizer=tokenizer,
        )
        is_base = method == base_method
        rec |= _win_columns(
            scores, group["prompt_id"].to_list(), objectives, base_by_prompt, is_base
        )
        records.append(rec)
    return pl.DataFrame(records, schema=_summary_schema(objectives))


def _check_eval_rows(frame: pl.DataFrame, objectives: list[str]) -> None:
    """Raise a ValueError naming the first row :func:`summarise` cannot use.

    Checked up front, at the edge, so the per-group loop can cast and resample without
    guarding, and the message names the method, preference and prompt to fix.
    """
    import polars as pl

    if not objectives:
        raise ValueError("summarise needs at least one objective column name")
    required = ["method", "pref_id", "prompt_id", "response", *objectives]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"evaluation rows lack column(s) {', '.join(map(repr, missing))}; they have "
            f"{', '.join(frame.columns)}"
        )
    if frame.height == 0:
        raise ValueError("no evaluation rows to summarise")
    not_numeric = [c for c in objectives if not frame.schema[c].is_numeric()]
    if not_numeric:
        raise ValueError(
            f"objective column(s) {', '.join(map(repr, not_numeric))} are not numeric "
            f"({', '.join(str(frame.schema[c]) for c in not_numeric)}); pass the score columns"
        )
    for col in ("method", "pref_id", "prompt_id"):
        nulls = frame[col].null_count()
        if nulls:
            raise ValueError(f"column {col!r} has {nulls} null value(s); every row needs one")
    dupes = frame.group_by(["method", "pref_id", "prompt_id"]).len().filter(pl.col("len") > 1)
    if dupes.height:
        m, p, q, k = dupes.row(0)
        raise ValueError(
            f"method {m!r}, pref_id {p!r} answered prompt {q!r} {k} times; each model must "
            "answer each prompt once (deduplicate the evaluation rows)"
        )
    _check_eval_values(frame, objectives)


def _check_eval_values(frame: pl.DataFrame, objectives: list[str]) -> None:
    """Raise a ValueError on the first non-finite score or null response, naming its row.

    A NaN or a failed generation would otherwise surface as a NaN mean or a crash in the
    collapse rule, far from the row that caused it.
    """
    import polars as pl

    for name in objectives:
        bad = frame.filter(~pl.col(name).cast(pl.Float64).is_finite().fill_null(False))
        if bad.height:
            m, p, q, v = bad.select(["method", "pref_id", "prompt_id", name]).row(0)
            raise ValueError(
                f"objective {name!r} is {v} for method {m!r}, pref_id {p!r}, prompt {q!r} "
                f"({bad.height} such row(s)); scores must be finite: re-score or drop them"
            )
    bad_text = frame.filter(pl.col("response").is_null())
    if bad_text.height:
        m, p, q = bad_text.select(["method", "pref_id", "prompt_id"]).row(0)
        raise ValueError(
            f"response is null for method {m!r}, pref_id {p!r}, prompt {q!r} "
            f"({bad_text.height} such row(s)); drop failed generations before summarising"
        )


def _base_answers(
    frame: pl.DataFrame, objectives: list[str], base_method: str
) -> dict[Any, np.ndarray]:
    """The base model's score vector per prompt_id, the reference win rates pair against.

    Raises a ValueError when the base method has several preference models: a prompt would
    then have several base answers and no single one to compare with.
    """
    import polars as pl

    base = frame.filter(pl.col("method") == base_method)
    base_by_prompt = {
        pid: np.asarray(row, dtype=np.float64)
        for pid, *row in base.select(["prompt_id", *objectives]).iter_rows()
    }
    if base.height and base["pref_id"].n_unique() > 1:
        raise ValueError(
            f"method {base_method!r} has several pref_ids ({base['pref_id'].unique().to_list()});"
            " the base model must be a single model for win rates"
        )
    return base_by_prompt


def _win_columns(
    scores: np.ndarray,
    prompt_ids: list[Any],
    objectives: list[str],
    base_by_prompt: dict[Any, np.ndarray],
    is_base: bool,
) -> dict[str, Any]:
    """``n_paired`` and ``{obj}_win/tie/loss`` of one model against the base answers.

    Only prompts the base model also answered are paired; the base model itself, and a model
    with no paired prompt, get null win rates (no comparison was made, which is not a tie).
    """
    pairs = [(i, base_by_prompt[pid]) for i, pid in enumerate(prompt_ids) if pid in base_by_prompt]
    cols: dict[str, Any] = {"n_paired": len(pairs) if not is_base else 0}
    wins = None
    if not is_base and pairs:
        rows = np.array([i for i, _ in pairs])
        wins = win_rate(scores[rows], np.stack([b for _, b in pairs]), objectives=objectives)
    for name in objectives:
        for key in ("win", "tie", "loss"):
            cols[f"{name}_{key}"] = None if wins is None else wins[name][key]
    return cols


def _summary_schema(objectives: list[str]) -> dict[str, Any]:
    """The column types of :func:`summarise`'s table, fixed so an all-null column keeps its type."""
    import polars as pl

    schema: dict[str, Any] = {"method": pl.String, "pref_id": pl.String, "n": pl.Int64}
    for name in objectives:
        schema |= {f"{name}_{s}": pl.Float64 for s in ("mean", "lo", "hi")}
    schema |= {"collapse_rate": pl.Float64, "n_paired": pl.Int64}
    for name in objectives:
        schema |= {f"{name}_{s}": pl.Float64 for s in ("win", "tie", "loss")}
    return schema


def _mean_with_rng(
    scores: np.ndarray, n_boot: int, rng: np.random.Generator, ci: float
) -> dict[str, Any]:
    """:func:`mean_vector` with a ready generator (validated by the caller's arguments)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), e.g. 0.95; got {ci}")
    mean = scores.mean(axis=0)
    if scores.shape[0] == 1:
        return {"mean": mean, "lo": mean.copy(), "hi": mean.copy(), "n": 1}
    boots = _bootstrap_means(scores, n_boot, rng)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], axis=0)
    return {"mean": mean, "lo": lo, "hi": hi, "n": scores.shape[0]}


def method_hypervolume(
    summary: pl.DataFrame,
    objectives: Sequence[str],
    *,
    lo: Any,
    hi: Any,
    ref: Any = None,
) -> dict[str, float]:
    """Hypervolume per method over its preference models' mean vectors.

    Each method's point set is the ``{obj}_mean`` vectors of its rows in ``summary`` (one per
    preference model). The base model is treated like any other method: its set is its single
    mean vector, so its hypervolume is the box it dominates, the baseline every trained set of
    models should exceed. Normalisation and reference point as in :func:`hypervolume`.

    Returns
    -------
    dict
        ``{method: hypervolume}`` in order of first appearance in ``summary``.
    """
    cols = [f"{name}_mean" for name in objectives]
    missing = [c for c in ["method", *cols] if c not in summary.columns]
    if missing:
        raise ValueError(
            f"summary lacks column(s) {', '.join(map(repr, missing))}; build it with summarise()"
            f" using the same objectives"
        )
    out: dict[str, float] = {}
    for (method,), group in summary.group_by(["method"], maintain_order=True):
        points = _as_matrix(group.select(cols).to_numpy(), f"mean vectors of method {method!r}")
        out[str(method)] = hypervolume(points, lo=lo, hi=hi, ref=ref)
    return out


# --------------------------------------------------------------------------------------------
# per method: hypervolume interval and preference-following


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    if (counts > 1).any():
        sums = np.bincount(inverse, weights=ranks)
        ranks = sums[inverse] / counts[inverse]
    return ranks


def spearman(x: Any, y: Any) -> float:
    """Spearman's rank correlation with average ranks for ties; NaN when either is constant.

    Examples
    --------
    >>> spearman([0.0, 0.5, 1.0], [0.1, 0.2, 0.9])
    1.0
    >>> round(spearman([0, 0, 1, 1], [1, 2, 3, 4]), 6)
    0.894427
    """
    a = _average_ranks(np.asarray(x, dtype=np.float64))
    b = _average_ranks(np.asarray(y, dtype=np.float64))
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def preference_following(weights: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Mean over objectives of ``spearman(w_i, mean_i)`` across a method's preference models.

    ``weights`` is ``(models, M)``; ``means`` is ``(models, M)`` or a stack ``(B, models, M)``
    (one value per bootstrap resample, computed at once). Objectives whose weights (or means)
    do not vary are left out; NaN when none is left (e.g. a single model).
    """
    stack = means[None] if means.ndim == 2 else means
    rhos = np.full((stack.shape[0], weights.shape[1]), np.nan)
    for i in range(weights.shape[1]):
        w_rank = _average_ranks(weights[:, i])
        if len(w_rank) < 2 or w_rank.std() == 0:
            continue
        y = stack[:, :, i]
        ranks = np.argsort(np.argsort(y, axis=1, kind="stable"), axis=1) + 1.0
        tied = (np.diff(np.sort(y, axis=1), axis=1) == 0).any(axis=1)
        for b in np.flatnonzero(tied):  # rare with real scores: average the tied ranks
            ranks[b] = _average_ranks(y[b])
        wc = w_rank - w_rank.mean()
        rc = ranks - ranks.mean(axis=1, keepdims=True)
        denom = np.sqrt((wc**2).sum() * (rc**2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            rhos[:, i] = np.where(denom > 0, (rc @ wc) / denom, np.nan)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(rhos)
        out = np.where(valid.any(axis=1), np.nansum(rhos, axis=1) / valid.sum(axis=1), np.nan)
    return out if means.ndim == 3 else out[0]


def _normalised_hypervolume(norm: np.ndarray) -> float:
    """:func:`hypervolume` of points already normalised and clipped to [0, 1], reference 0.

    Two objectives take a sort and a sum (called once per bootstrap resample); more go to
    moocore like :func:`hypervolume`.
    """
    better = norm[(norm > 0).all(axis=1)]
    if better.shape[0] == 0:
        return 0.0
    if better.shape[1] == 2:
        order = np.lexsort((-better[:, 1], -better[:, 0]))  # x descending, then y descending
        x, y = better[order, 0], better[order, 1]
        top = np.maximum.accumulate(y)  # best y among points with x at least this large
        prev = np.concatenate([[0.0], top[:-1]])
        return float(np.sum(x * np.maximum(top - prev, 0.0)))
    import moocore

    return float(moocore.hypervolume(-better, ref=np.zeros(better.shape[1])))


def method_intervals(
    frame: pl.DataFrame,
    *,
    objectives: Sequence[str],
    weights: Any,
    lo: Any,
    hi: Any,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    interval: str = "basic",
) -> pl.DataFrame:
    """Per method: hypervolume and preference-following, each with a paired bootstrap interval.

    Parameters
    ----------
    frame
        Scored evaluation generations (``method``, ``pref_id``, ``prompt_id`` and one column
        per objective), as :func:`summarise` takes them.
    objectives
        The objective columns, in order.
    weights
        ``{pref_id: weight vector}`` of the preference grid; models whose pref_id is not in it
        (the base model, the shared SFT start) get no preference-following.
    lo, hi
        The fixed normalisation of :func:`hypervolume`.
    n_boot, seed, ci
        Bootstrap resamples (of held-out prompts, shared by every model), seed and level.
    interval
        ``"basic"`` (default): the reverse-percentile interval [2θ̂ − q_hi, 2θ̂ − q_lo].
        Resampling noise pushes a hypervolume *up* (it rewards outlying points) and pulls a
        rank correlation toward 0; the basic interval subtracts that bias where the plain
        ``"percentile"`` interval [q_lo, q_hi] adds it. Both are clipped to the statistic's
        range ([0, 1] and [−1, 1]).

    Returns
    -------
    polars.DataFrame
        ``method``, ``models``, ``hypervolume``, ``hv_lo``, ``hv_hi``, ``pref_following``,
        ``pf_lo``, ``pf_hi``, in order of first appearance.
    """
    import polars as pl

    objectives = list(objectives)
    if frame.height == 0:
        raise ValueError("no evaluation rows")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), e.g. 0.95; got {ci}")
    if interval not in ("basic", "percentile"):
        raise ValueError(f"interval = {interval!r}; use 'basic' or 'percentile'")
    groups, scores, present = _prompt_grid(frame, objectives)
    means = _resampled_means(scores, present, n_boot, seed)
    lo_a, hi_a = _bounds(lo, hi, len(objectives))
    methods: dict[str, list[int]] = {}
    for gi, ((method, _), _) in enumerate(groups):
        methods.setdefault(str(method), []).append(gi)
    pref_ids = [str(key[1]) for key, _ in groups]
    records = []
    alpha = (1.0 - ci) / 2.0
    for method, idx in methods.items():
        hv = _resampled_hypervolumes(means[:, idx], lo_a, hi_a)
        pf = _resampled_following(means, idx, pref_ids, weights)
        rec: dict[str, Any] = {"method": method, "models": len(idx)}
        rec["hypervolume"], rec["hv_lo"], rec["hv_hi"] = _interval(hv, alpha, interval, (0.0, 1.0))
        rec["pref_following"], rec["pf_lo"], rec["pf_hi"] = _interval(
            pf, alpha, interval, (-1.0, 1.0)
        )
        records.append(rec)
    schema = {"method": pl.String, "models": pl.Int64} | {
        c: pl.Float64 for c in ("hypervolume", "hv_lo", "hv_hi", "pref_following", "pf_lo", "pf_hi")
    }
    return pl.DataFrame(records, schema=schema)


def _prompt_grid(
    frame: pl.DataFrame, objectives: list[str]
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The (method, pref_id) groups and their scores laid out on one shared prompt axis.

    Returns the groups in order of first appearance, ``scores`` ``(G, P, M)`` (0 where a model
    did not answer) and ``present`` ``(G, P)`` (1 where it did). A shared axis is what lets one
    resample of prompts weigh every model's answers to the same prompts (the paired bootstrap).
    """
    import polars as pl

    prompts = sorted(set(frame["prompt_id"].to_list()))
    pos = {p: i for i, p in enumerate(prompts)}
    groups = list(frame.group_by(["method", "pref_id"], maintain_order=True))
    g, p, m = len(groups), len(prompts), len(objectives)
    scores = np.zeros((g, p, m))
    present = np.zeros((g, p))
    for gi, (_, group) in enumerate(groups):
        where = np.array([pos[x] for x in group["prompt_id"].to_list()])
        scores[gi, where] = group.select(objectives).cast(pl.Float64).to_numpy()
        present[gi, where] = 1.0
    return groups, scores, present


def _resampled_means(scores: np.ndarray, present: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot + 1, G, M)`` mean vectors: row 0 on the prompts as drawn, then one per resample.

    A resample is a count per prompt (how often it was drawn), shared by every model, so the
    means stay paired across models; a model that answered none of the drawn prompts gets NaN.
    """
    p = scores.shape[1]
    rng = np.random.default_rng([seed, 0x48D5])
    draws = rng.integers(0, p, size=(n_boot, p))
    counts = np.stack([np.bincount(row, minlength=p) for row in draws]).astype(np.float64)
    counts = np.vstack([np.ones((1, p)), counts])  # row 0: the estimate itself
    mass = counts @ present.T  # (B+1, G)
    with np.errstate(invalid="ignore", divide="ignore"):
        means: np.ndarray = (
            np.einsum("bp,gpm->bgm", counts, scores * present[:, :, None]) / mass[:, :, None]
        )
    return means


def _resampled_hypervolumes(means: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Hypervolume of one method's mean vectors ``(B + 1, models, M)`` per resample.

    Models without a mean in a resample (NaN) are left out of that resample's set; a resample
    with none left is NaN, so it drops out of the interval instead of counting as 0.
    """
    hv = np.full(means.shape[0], np.nan)
    norm = np.clip((means - lo) / (hi - lo), 0.0, 1.0)
    for b in range(means.shape[0]):
        pts = norm[b][np.isfinite(norm[b]).all(axis=1)]
        if len(pts):
            hv[b] = _normalised_hypervolume(pts)
    return hv


def _resampled_following(
    means: np.ndarray, idx: list[int], pref_ids: list[str], weights: Any
) -> np.ndarray:
    """Preference-following of one method (groups ``idx``) per resample; NaN when undefined.

    Only models whose pref_id has a weight vector count, and at least two are needed: a rank
    correlation over fewer models says nothing.
    """
    w = [weights.get(pref_ids[gi]) for gi in idx]
    ranked = [gi for gi, wi in zip(idx, w, strict=True) if wi is not None]
    w_arr = np.array([weights[pref_ids[gi]] for gi in ranked], dtype=np.float64)
    if len(ranked) < 2:
        return np.full(means.shape[0], np.nan)
    return preference_following(w_arr, means[:, ranked])


def _interval(
    values: np.ndarray, alpha: float, interval: str, bounds: tuple[float, float]
) -> tuple[float | None, float | None, float | None]:
    """``(estimate, lo, hi)`` from ``values[0]`` (the estimate) and ``values[1:]`` (resamples).

    Non-finite resamples are dropped; without an estimate or any resample the interval is
    null. ``"basic"`` reflects the percentiles around the estimate so the resampling bias is
    subtracted, not added; both ends are clipped to the statistic's range ``bounds``.
    """
    boots = values[1:][np.isfinite(values[1:])]
    estimate = float(values[0]) if np.isfinite(values[0]) else None
    if estimate is None or not len(boots):
        return estimate, None, None
    q_lo, q_hi = np.quantile(boots, [alpha, 1.0 - alpha])
    if interval == "basic":  # reflect: the resampling bias is subtracted, not added
        q_lo, q_hi = 2 * estimate - q_hi, 2 * estimate - q_lo
    return estimate, float(np.clip(q_lo, *bounds)), float(np.clip(q_hi, *bounds))
