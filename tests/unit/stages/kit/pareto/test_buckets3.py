"""The bucketed M = 3 kernel against the O(n^2) reference, and its hand-off to the general one.

Few buckets put many points in one bucket (its scan and bisection paths); many buckets leave
most empty. The sweep order and the search tree are shared with sweep3.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pareto_reference import brute_force_layers, score_arrays

from paretohqd.stages.kit.pareto import nds
from paretohqd.stages.kit.pareto.buckets3 import bucket_count, layers_3d_bucketed
from paretohqd.stages.kit.pareto.rowsort import sort_rows_desc


def bucketed_layers(x: np.ndarray, n_buckets: int, max_layers: int) -> tuple[bool, np.ndarray]:
    order, ys = sort_rows_desc(x)
    layer_sorted = np.zeros(x.shape[0], dtype=np.int32)
    done = layers_3d_bucketed(ys, layer_sorted, n_buckets, max_layers)
    out = np.zeros(x.shape[0], dtype=np.int32)
    out[order] = layer_sorted
    return done, out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(score_arrays(m=3, max_n=300), st.sampled_from([1, 4, 64, 1024]))
def test_matches_brute_force(x: np.ndarray, n_buckets: int) -> None:
    done, got = bucketed_layers(x, n_buckets, max_layers=x.shape[0] + 1)
    assert done
    np.testing.assert_array_equal(got, brute_force_layers(x))


@pytest.mark.parametrize("n_buckets", [1, 64, 1024])
def test_agrees_with_general_kernel_on_huge_layers(n_buckets: int) -> None:
    """Near-plane data at a size where buckets fill, move and bisect (1 bucket: 1,000s of
    points in it)."""
    rng = np.random.default_rng(11)
    u = rng.random((40_000, 3))
    x = u / u.sum(axis=1, keepdims=True) + 1e-3 * rng.standard_normal((40_000, 3))
    done, got = bucketed_layers(x, n_buckets, max_layers=32)
    assert done
    np.testing.assert_array_equal(got, nds._layers_divide_conquer(x))


def test_gives_up_past_max_layers() -> None:
    x = np.array([[3.0, 3.0, 3.0], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]])
    assert not bucketed_layers(x, 4, max_layers=2)[0]
    assert bucketed_layers(x, 4, max_layers=3)[0]


def test_dispatch_falls_back_when_layers_outgrow_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sample with few layers picks the bucketed kernel; past its layer limit the general
    kernel must take over and still be exact."""
    rng = np.random.default_rng(12)
    u = rng.random((30_000, 3))
    x = u / u.sum(axis=1, keepdims=True) + 1e-3 * rng.standard_normal((30_000, 3))
    expected = nds._layers_divide_conquer(x)
    assert expected.max() > 2
    monkeypatch.setattr(nds, "_BUCKETED_MAX_LAYERS", 2)
    np.testing.assert_array_equal(nds.nondominated_layers(x), expected)


def test_bucket_count_grows_with_n_within_bounds() -> None:
    assert bucket_count(10) == 64
    assert bucket_count(100_000) == 512
    assert bucket_count(10**8) == 1024
