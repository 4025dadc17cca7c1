"""The slab sweep against the O(n^2) reference, its budget, and its place in the dispatch.

Exactness must not depend on the slab being thin: the property test runs it on tie-heavy
data of every shape with an unlimited budget.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from pareto_reference import brute_force_layers, score_arrays

from paretohqd.stages.kit.pareto import nds
from paretohqd.stages.kit.pareto.slab import slab_layers


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score_arrays(max_n=250).filter(lambda x: x.shape[1] >= 2))
def test_matches_brute_force(x: np.ndarray) -> None:
    got = slab_layers(x, budget=10**12)
    assert got is not None
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, brute_force_layers(x))


def near_plane(n: int, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = rng.random((n, m))
    return u / u.sum(axis=1, keepdims=True) + 1e-3 * rng.standard_normal((n, m))


@pytest.mark.parametrize("m", [4, 5])
def test_agrees_with_divide_and_conquer_near_a_plane(m: int) -> None:
    x = near_plane(30_000, m, seed=m)
    got = slab_layers(x, budget=256 * x.shape[0])
    assert got is not None
    np.testing.assert_array_equal(got, nds._layers_divide_conquer(x))


def test_gives_up_past_the_budget_on_a_thick_slab() -> None:
    x = np.random.default_rng(1).random((5_000, 4))  # uniform: every row is a candidate
    assert slab_layers(x, budget=10_000) is None


def test_overflowing_range_is_left_to_the_other_kernels() -> None:
    x = np.array([[1e308, -1e308, 0.0, 0.0], [-1e308, 1e308, 0.0, 1.0]])
    assert slab_layers(x, budget=10**9) is None
    np.testing.assert_array_equal(nds.nondominated_layers(x), [1, 1])


def test_dispatch_falls_back_when_the_slab_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    x = near_plane(20_000, 4, seed=9)
    expected = nds._layers_divide_conquer(x)
    monkeypatch.setattr(nds, "_SLAB_CHECKS_PER_ROW", 0)
    np.testing.assert_array_equal(nds.nondominated_layers(x), expected)
