"""The radix row sort against numpy's lexsort: same rows in the same order, a valid permutation.

Extreme ranges (1e300 next to 1e-300, spans that overflow a float, values one ulp apart) send
the sort down its fallback key and through repeated re-sorting of runs; small runs hit the
insertion sort, large tied runs the next column.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paretohqd.stages.kit.pareto.rowsort import sort_rows_desc


def reference(y: np.ndarray) -> np.ndarray:
    """Rows of y in lexicographically descending order (np.lexsort sorts by the last key)."""
    return y[np.lexsort((-y).T[::-1])]


def check(y: np.ndarray) -> None:
    order, ys = sort_rows_desc(y)
    assert order.dtype == np.int64
    assert np.array_equal(np.sort(order), np.arange(y.shape[0]))
    np.testing.assert_array_equal(ys, y[order])
    # -0.0 and 0.0 compare equal, so compare with + 0.0 on both sides
    np.testing.assert_array_equal(ys + 0.0, reference(y) + 0.0)


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    m = draw(st.integers(1, 4))
    n = draw(st.integers(0, 400))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "rounded", "ints", "extreme", "ulps"]))
    if kind == "uniform":
        y = rng.random((n, m))
    elif kind == "rounded":
        y = np.round(rng.normal(size=(n, m)), 1)
    elif kind == "ints":
        y = rng.integers(-3, 4, size=(n, m)).astype(np.float64)
    elif kind == "extreme":
        choices = np.array([1e300, -1e300, 1e-300, -1e-300, 5e-324, 0.0, -0.0, 1.0, -2.5])
        y = choices[rng.integers(0, choices.size, size=(n, m))] * rng.integers(1, 3, size=(n, m))
    else:  # values a few ulps apart plus one far outlier: runs must be re-sorted exactly
        y = 1.0 + rng.integers(0, 6, size=(n, m)) * np.finfo(np.float64).eps
        if n:
            y[0, 0] = 1e200
    y[rng.random((n, m)) < 0.05] = -0.0
    return y


@settings(max_examples=300, deadline=None)
@given(arrays())
def test_matches_lexsort(y: np.ndarray) -> None:
    check(y)


@pytest.mark.parametrize("shape", ["uniform", "tied"])
def test_matches_lexsort_at_larger_n(shape: str) -> None:
    rng = np.random.default_rng(3)
    y = rng.random((200_000, 3))
    if shape == "tied":
        y = np.round(y, 2)
    check(y)


def test_does_not_modify_input() -> None:
    y = np.array([[0.1, 0.2], [0.3, -0.0], [0.3, 0.5]])
    before = y.copy()
    sort_rows_desc(y)
    np.testing.assert_array_equal(y, before)
