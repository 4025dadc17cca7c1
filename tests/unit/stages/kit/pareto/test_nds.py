"""Property tests for the non-dominated sorting kernels against an O(n^2) reference.

The data strategies draw from small integer ranges and coarsely rounded floats on purpose: ties
and exact duplicates are where sort-and-sweep kernels go wrong, and real reward scores have many.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pareto_reference import brute_force_layers, score_arrays

from paretohqd.stages.kit.pareto.nds import NonFiniteScoreError, nondominated_layers


def _dominates(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """dom[i, j]: row i of q dominates row j of p (maximising)."""
    return np.all(q[:, None, :] >= p[None, :, :], axis=2) & np.any(
        q[:, None, :] > p[None, :, :], axis=2
    )


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(score_arrays())
def test_matches_brute_force(x: np.ndarray) -> None:
    got = nondominated_layers(x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, brute_force_layers(x))


@FAST
@given(score_arrays())
def test_layer_invariants(x: np.ndarray) -> None:
    layers = nondominated_layers(x)
    # nothing lost, layers contiguous 1..K
    assert layers.shape == (x.shape[0],)
    k = int(layers.max())
    assert set(np.unique(layers).tolist()) == set(range(1, k + 1))
    dom = _dominates(x, x)
    # no row is dominated by a row of the same or a later layer
    same_or_later = layers[:, None] >= layers[None, :]
    assert not (dom & same_or_later).any()
    # every row of layer k > 1 is dominated by some row of layer k - 1
    prev = layers[:, None] == layers[None, :] - 1
    rows = layers > 1
    assert (dom & prev).any(axis=0)[rows].all()
    # equal rows share a layer
    _, inverse = np.unique(x + 0.0, axis=0, return_inverse=True)
    for g in np.unique(inverse):
        assert len(set(layers[inverse.ravel() == g].tolist())) == 1


@FAST
@given(score_arrays(max_n=120), st.data())
def test_maximize_flags_per_column(x: np.ndarray, data: st.DataObject) -> None:
    m = x.shape[1]
    flags = data.draw(st.lists(st.booleans(), min_size=m, max_size=m))
    flipped = np.where(flags, 1.0, -1.0) * x
    np.testing.assert_array_equal(
        nondominated_layers(flipped, maximize=flags), nondominated_layers(x)
    )
    np.testing.assert_array_equal(
        nondominated_layers(-x, maximize=False), nondominated_layers(x, maximize=True)
    )


@FAST
@given(score_arrays(max_n=100), st.integers(0, 2**32 - 1))
def test_row_permutation_invariant(x: np.ndarray, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    np.testing.assert_array_equal(nondominated_layers(x[perm]), nondominated_layers(x)[perm])


def test_one_objective_is_dense_rank_descending() -> None:
    x = np.array([[3.0], [1.0], [3.0], [2.0], [-5.0], [1.0]])
    np.testing.assert_array_equal(nondominated_layers(x), [1, 3, 1, 2, 4, 3])


def test_small_known_example() -> None:
    x = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    np.testing.assert_array_equal(nondominated_layers(x), [1, 1, 1, 3, 1, 2])


def test_equal_first_objective_lower_second_is_dominated() -> None:
    x = np.array([[5.0, 1.0], [5.0, 3.0], [5.0, 2.0], [5.0, 3.0]])
    np.testing.assert_array_equal(nondominated_layers(x), [3, 1, 2, 1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_non_finite_names_row_and_column(bad: float, m: int) -> None:
    x = np.zeros((10, m))
    x[7, m - 1] = bad
    x[9, 0] = np.nan
    with pytest.raises(NonFiniteScoreError, match="row 7") as info:
        nondominated_layers(x)
    assert info.value.row == 7
    assert info.value.column == m - 1
    assert isinstance(info.value, ValueError)


def test_empty_input() -> None:
    out = nondominated_layers(np.zeros((0, 3)))
    assert out.dtype == np.int32
    assert out.shape == (0,)


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2), ()])
def test_rejects_non_2d(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="2-D"):
        nondominated_layers(np.zeros(shape))


def test_rejects_wrong_number_of_flags() -> None:
    with pytest.raises(ValueError, match="3 objectives"):
        nondominated_layers(np.zeros((4, 3)), maximize=[True, False])


def test_rejects_zero_columns() -> None:
    with pytest.raises(ValueError, match="no objective"):
        nondominated_layers(np.zeros((4, 0)))


def test_does_not_modify_input() -> None:
    x = np.round(np.random.default_rng(0).random((500, 3)), 1)
    before = x.copy()
    nondominated_layers(x, maximize=[True, False, True])
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize(
    ("m", "shape"),
    [
        (2, "uniform"),
        (2, "tied"),
        (2, "anti"),
        (3, "uniform"),
        (3, "tied"),
        (3, "anti"),
        (4, "uniform"),
        (4, "tied"),
        (4, "anti"),
        (5, "uniform"),
        (5, "tied"),
        (5, "anti"),
        (6, "tied"),
    ],
)
def test_agrees_with_moocore_at_larger_n(m: int, shape: str) -> None:
    """Sizes where the kernels' fast paths kick in: radix passes, batched searches, the M = 3
    layer search tree rebuilds, gap inserts and re-spread staircases (anti: huge layers), the
    M >= 4 k-d trees' splits, removals and rebuilds."""
    moocore = pytest.importorskip("moocore", reason="moocore is the independent reference here")
    rng = np.random.default_rng(1234 + m)
    n = 30_000 if m < 4 else 5_000
    x = rng.random((n, m))
    if shape == "tied":
        x = np.round(x, 2)
    elif shape == "anti":
        x = x / x.sum(axis=1, keepdims=True) + 1e-3 * rng.standard_normal((n, m))
    expected = np.asarray(moocore.pareto_rank(-x), dtype=np.int64)
    expected = expected - expected.min() + 1
    np.testing.assert_array_equal(nondominated_layers(x), expected)


@FAST
@given(score_arrays())
def test_divide_and_conquer_matches_brute_force(x: np.ndarray) -> None:
    """The moocore-free path for M >= 4 (exercised here at every M >= 2)."""
    from paretohqd.stages.kit.pareto.nds import _layers_divide_conquer

    if x.shape[1] < 2:
        x = np.hstack([x, x[:, :1]])
    np.testing.assert_array_equal(_layers_divide_conquer(x + 0.0), brute_force_layers(x))


def test_divide_and_conquer_at_larger_n() -> None:
    """Deep recursion (median splits, Fenwick sweeps) rather than the brute-force leaves."""
    from paretohqd.stages.kit.pareto.nds import _layers_divide_conquer

    rng = np.random.default_rng(7)
    for m, decimals in [(3, 2), (4, 1), (4, 3), (5, 2)]:
        x = np.round(rng.random((1500, m)), decimals)
        np.testing.assert_array_equal(_layers_divide_conquer(x), brute_force_layers(x))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 3000),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0, 1, 3]),
)
def test_staircase_search_matches_searchsorted(size: int, seed: int, decimals: int) -> None:
    """The M = 3 staircase search (binary below 256 slots, 9-ary above) at every size, with
    duplicates (gaps are copies of their left neighbour) and queries on, between and outside
    the stored values."""
    from paretohqd.stages.kit.pareto.sweep3 import _first_ge

    rng = np.random.default_rng(seed)
    values = np.sort(np.round(rng.random(size) * 10, decimals))
    arena = np.concatenate([rng.random(5), values, rng.random(5)])  # the layer sits at offset 5
    queries = np.concatenate([values[:50], rng.random(50) * 12 - 1, [-np.inf, np.inf]])
    for x in queries:
        assert _first_ge(arena, 5, size, float(x)) == np.searchsorted(values, x, side="left")


def test_few_layers_sends_m4_data_to_the_faster_method() -> None:
    """Near-plane data (one or two huge layers) goes to the slab sweep or the k-d tree sweep
    searching from layer 1, the rest to the bisecting k-d tree sweep: the choice measured
    faster for each (see _few_layers)."""
    from paretohqd.stages.kit.pareto.nds import _few_layers

    rng = np.random.default_rng(5)
    uniform = rng.random((20_000, 4))
    anti = uniform / uniform.sum(axis=1, keepdims=True)
    assert _few_layers(anti)
    assert not _few_layers(uniform)
