"""Shared by the Pareto kernel tests: an O(n^2) reference and tie-heavy test data.

The data strategies draw from small integer ranges and coarsely rounded floats on purpose: ties
and exact duplicates are where sort-and-sweep kernels go wrong, and real reward scores have many.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


def brute_force_layers(scores: np.ndarray) -> np.ndarray:
    """Reference layers by repeated peeling, maximising every column (O(n^2) per layer)."""
    x = np.asarray(scores, dtype=np.float64)
    n = x.shape[0]
    ge = np.all(x[:, None, :] >= x[None, :, :], axis=2)  # ge[q, p]: q >= p everywhere
    gt = np.any(x[:, None, :] > x[None, :, :], axis=2)
    dom = ge & gt  # dom[q, p]: q dominates p
    layers = np.zeros(n, dtype=np.int32)
    remaining = np.ones(n, dtype=bool)
    k = 0
    while remaining.any():
        k += 1
        dominated = dom[remaining][:, remaining].any(axis=0)
        idx = np.flatnonzero(remaining)[~dominated]
        layers[idx] = k
        remaining[idx] = False
    return layers


@st.composite
def score_arrays(draw: st.DrawFn, *, max_n: int = 200, m: int | None = None) -> np.ndarray:
    """(n, M) float arrays, M in 1..5 unless given, with many ties and duplicate rows."""
    m = draw(st.integers(1, 5)) if m is None else m
    n = draw(st.integers(1, max_n))
    kind = draw(st.sampled_from(["small-int", "rounded", "anti", "dup-rows"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "small-int":
        hi = draw(st.integers(1, 6))
        x = rng.integers(-hi, hi + 1, size=(n, m)).astype(np.float64)
    elif kind == "rounded":
        x = np.round(rng.normal(size=(n, m)), draw(st.integers(0, 2)))
    elif kind == "anti":  # points near the plane sum(x) = 0: few, large layers
        x = rng.random((n, m))
        x[:, -1] = -x[:, :-1].sum(axis=1) + np.round(rng.random(n), 1) if m > 1 else x[:, -1]
        x = np.round(x, 2)
    else:
        base = np.round(rng.random((max(1, n // 4), m)), 1)
        x = base[rng.integers(0, base.shape[0], size=n)]
    # -0.0 must behave like 0.0
    x[rng.random((n, m)) < 0.05] = -0.0
    return x
