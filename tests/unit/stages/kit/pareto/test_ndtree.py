"""The k-d tree sweep (M >= 4) against the O(n^2) reference and the divide and conquer.

Its shortcuts -- covered rows dropped from a layer's tree, trees rebuilt from their live rows,
the layer search from layer 1 -- must not change a single layer, so every test runs both
search orders, on data with many ties and duplicate rows, at M = 2..6.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pareto_reference import brute_force_layers, score_arrays

from paretohqd.stages.kit.pareto import nds, ndtree
from paretohqd.stages.kit.pareto.ndtree import ndtree_layers

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    st.integers(2, 6).flatmap(lambda m: score_arrays(max_n=300, m=m)),
    st.booleans(),
)
def test_matches_brute_force(x: np.ndarray, from_front: bool) -> None:
    got = ndtree_layers(np.ascontiguousarray(x + 0.0), from_front=from_front)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, brute_force_layers(x))


def _shape(kind: str, n: int, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, m))
    if kind == "tied":  # most rows have exact duplicates
        return np.round(x, 1)
    if kind == "anti":  # near a plane: few, huge layers; nearly every insert covers rows
        return x / x.sum(axis=1, keepdims=True) + 1e-3 * rng.standard_normal((n, m))
    if kind == "coarse-anti":  # near a plane with ties in every objective
        return np.round(x / x.sum(axis=1, keepdims=True), 2)
    if kind == "constant-column":  # a split objective with no spread
        x[:, 1] = 0.5
        return np.round(x, 2)
    return x


@pytest.mark.parametrize("m", [4, 5, 6])
@pytest.mark.parametrize("kind", ["uniform", "tied", "anti", "coarse-anti", "constant-column"])
def test_agrees_with_divide_and_conquer_at_larger_n(kind: str, m: int) -> None:
    """Thousands of rows: leaf splits, removals, rebuilds (anti: one every few hundred rows)."""
    x = _shape(kind, 6_000, m, seed=m)
    expected = nds._layers_divide_conquer(x)
    for from_front in (False, True):
        np.testing.assert_array_equal(ndtree_layers(x, from_front=from_front), expected)


def test_duplicate_rows_share_a_layer() -> None:
    base = np.round(np.random.default_rng(3).random((40, 5)), 1)
    x = base[np.random.default_rng(4).integers(0, 40, size=3_000)]
    got = ndtree_layers(x)
    np.testing.assert_array_equal(got, brute_force_layers(x))
    np.testing.assert_array_equal(ndtree_layers(np.ones((50, 4))), np.ones(50, dtype=np.int32))


def test_chain_and_antichain() -> None:
    """One row per layer (nothing is ever covered) and one layer of 2,000 rows."""
    t = np.linspace(0.0, 1.0, 2_000)
    chain = np.column_stack([t, t, t, t])
    np.testing.assert_array_equal(ndtree_layers(chain), np.arange(2_000, 0, -1, dtype=np.int32))
    antichain = np.column_stack([t, 1 - t, t[::-1], 1 - t[::-1]])
    np.testing.assert_array_equal(ndtree_layers(antichain), np.ones(2_000, dtype=np.int32))


def test_a_sweep_that_runs_out_of_nodes_runs_again(monkeypatch: pytest.MonkeyPatch) -> None:
    x = _shape("uniform", 3_000, 4, seed=11)
    expected = nds._layers_divide_conquer(x)
    monkeypatch.setattr(ndtree, "_initial_nodes", lambda rows: 3)
    np.testing.assert_array_equal(ndtree_layers(x), expected)


def test_empty_input() -> None:
    assert ndtree_layers(np.zeros((0, 4))).shape == (0,)


def test_dispatch_sends_large_few_layer_data_to_the_trees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = _shape("anti", 8_000, 4, seed=5)
    expected = nds._layers_divide_conquer(x)
    monkeypatch.setattr(nds, "_SLAB_MAX_ROWS", 0)
    monkeypatch.setattr(nds, "slab_layers", None)  # must not be called
    np.testing.assert_array_equal(nds.nondominated_layers(x), expected)
