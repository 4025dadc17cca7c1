"""Tests of the CAGrad/RACO dual, RACO/CAGrad directions, MGDA and PAMA's Theorem 1.

Every solver is checked against an independent reference computed from explicit gradient
vectors (not from the Gram matrix the solver sees): a dense grid over the simplex with local
refinement, scipy's SLSQP from several starts, the CAGrad primal solved directly in parameter
space, and brute force over the simplex for MGDA and PAMA. Solvers are compared by the optimal
*value*, which is unique even when the minimiser is not (parallel or rank-deficient gradients).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

from paretohqd.stages.kit.training.solvers import (
    SolverInputError,
    cagrad_direction,
    cagrad_dual,
    mgda_min_norm,
    mgda_two,
    pama_combined_advantage,
    project_simplex,
    raco_direction,
    theorem1,
)

KINDS = ("random", "near_parallel", "opposite", "rank_deficient", "scaled", "zero_grad")
C_VALUES = (0.1, 0.4, 0.9, 1.5)


def _gradients(rng: np.random.Generator, m: int, kind: str) -> np.ndarray:
    """m gradient vectors of dimension 5..50 with the requested geometry."""
    d = int(rng.integers(5, 51))
    G = rng.normal(size=(m, d))
    if kind == "near_parallel":
        G[1] = G[0] * rng.uniform(0.5, 2.0) + 1e-4 * rng.normal(size=d)
    elif kind == "opposite":
        G[1] = -G[0] * rng.uniform(0.5, 2.0)
    elif kind == "rank_deficient":
        if m >= 3:
            G[2] = 0.3 * G[0] + 0.7 * G[1]
        else:
            G[1] = 2.0 * G[0]
    elif kind == "scaled":
        G = G * rng.uniform(1e-3, 1e3, size=(m, 1))
    elif kind == "zero_grad":
        G[-1] = 0.0
    return G


def _objective(G: np.ndarray, w: np.ndarray, c: float, P: np.ndarray) -> np.ndarray:
    """Dual objective for each row of P, from explicit vectors: <G_p, g0> + c||g0|| ||G_p||."""
    g0 = w @ G
    GP = np.atleast_2d(P) @ G
    return GP @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(GP, axis=1)


def _scale(G: np.ndarray, w: np.ndarray) -> float:
    """Natural size of the objective: ||g0|| max_i ||g_i||."""
    return float(np.linalg.norm(w @ G) * np.linalg.norm(G, axis=1).max())


def _simplex_grid(m: int, step: float) -> np.ndarray:
    n = round(1.0 / step)
    if m == 2:
        lam = np.linspace(0.0, 1.0, n + 1)
        return np.stack([lam, 1.0 - lam], axis=1)
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    a, b = i[keep] / n, j[keep] / n
    return np.stack([a, b, 1.0 - a - b], axis=1)


def _grid_min(G: np.ndarray, w: np.ndarray, c: float) -> float:
    """Dense grid (1e-3 for m = 2, 1e-2 for m = 3), then five ever finer grids around the best."""
    m = G.shape[0]
    step = 1e-3 if m == 2 else 1e-2
    P = _simplex_grid(m, step)
    vals = _objective(G, w, c, P)
    best = P[int(np.argmin(vals))]
    best_val = float(vals.min())
    local = _simplex_grid(m, 0.02)
    for _ in range(5):  # offsets in a window of width 2*step around best
        offsets = (local - 1.0 / m) * 2.0 * step * m
        Q = best + offsets - offsets.mean(axis=0)
        Q = Q[np.all(Q >= 0.0, axis=1)]
        Q = Q / Q.sum(axis=1, keepdims=True)
        qvals = _objective(G, w, c, Q)
        if qvals.min() < best_val:
            best, best_val = Q[int(np.argmin(qvals))], float(qvals.min())
        step /= 10.0
    return best_val


def _slsqp_min(G: np.ndarray, w: np.ndarray, c: float) -> float:
    """SLSQP from the centre and near every vertex, as the official CAGrad code solves it."""
    m = G.shape[0]
    best = np.inf
    scale = _scale(G, w) or 1.0  # SLSQP's tolerances are absolute: give it an O(1) objective
    starts = [np.full(m, 1.0 / m), *(0.9 * np.eye(m) + 0.1 / m)]
    for x0 in starts:
        res = minimize(
            lambda p: float(_objective(G, w, c, p)[0]) / scale,
            x0,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * m,
            constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1.0}],
            options={"ftol": 1e-14, "maxiter": 300},
        )
        p = project_simplex(res.x)
        best = min(best, float(_objective(G, w, c, p)[0]))
    return best


def _cases(seed: int, m: int, n_per_kind: int) -> list[tuple[np.ndarray, np.ndarray, float, str]]:
    rng = np.random.default_rng(seed)
    out = []
    for kind in KINDS:
        for _ in range(n_per_kind):
            G = _gradients(rng, m, kind)
            w = rng.dirichlet(np.ones(m))
            out.append((G, w, float(rng.choice(C_VALUES)), kind))
    return out


# ---------------------------------------------------------------------------------------------
# the dual
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3])
def test_exact_dual_matches_grid_and_slsqp(m: int) -> None:
    """The exact m = 2 / m = 3 solvers reach the optimal value found by both references."""
    method = "closed_form" if m == 2 else "active_set"
    for G, w, c, kind in _cases(seed=m, m=m, n_per_kind=6):
        H = G @ G.T
        p = cagrad_dual(H, w, c, method=method)
        assert p.shape == (m,) and p.min() >= 0.0 and abs(p.sum() - 1.0) < 1e-12
        exact = float(_objective(G, w, c, p)[0])
        grid, slsqp = _grid_min(G, w, c), _slsqp_min(G, w, c)
        scale = _scale(G, w)
        # never worse than either reference, and the references come close to it
        assert exact <= min(grid, slsqp) + 1e-9 * scale, (kind, c, exact, grid, slsqp)
        assert min(grid, slsqp) <= exact + 1e-7 * scale, (kind, c, exact, grid, slsqp)


def test_closed_form_and_active_set_agree_for_two() -> None:
    for G, w, c, kind in _cases(seed=11, m=2, n_per_kind=8):
        H = G @ G.T
        a = _objective(G, w, c, cagrad_dual(H, w, c, method="closed_form"))[0]
        b = _objective(G, w, c, cagrad_dual(H, w, c, method="active_set"))[0]
        assert abs(a - b) <= 1e-10 * _scale(G, w), kind


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_projected_gradient_agrees_with_exact(m: int) -> None:
    """PGD reaches the exact optimum; for m = 4, 5 the exact one is the face enumeration."""
    exact_method = "closed_form" if m == 2 else "active_set"
    for G, w, c, kind in _cases(seed=20 + m, m=m, n_per_kind=4):
        H = G @ G.T
        exact = _objective(G, w, c, cagrad_dual(H, w, c, method=exact_method))[0]
        pgd = _objective(G, w, c, cagrad_dual(H, w, c, method="pgd"))[0]
        scale = _scale(G, w)
        # 1e-7: at a kink (G_p = 0) a Gram-only method resolves ||G_p|| to sqrt(machine eps)
        assert abs(pgd - exact) <= 1e-7 * scale, (kind, c, pgd, exact)
        assert exact <= pgd + 1e-9 * scale


@pytest.mark.parametrize("m", [4, 5])
def test_active_set_beyond_three_matches_slsqp(m: int) -> None:
    for G, w, c, kind in _cases(seed=40 + m, m=m, n_per_kind=2):
        p = cagrad_dual(G @ G.T, w, c, method="active_set")
        exact = _objective(G, w, c, p)[0]
        assert exact <= _slsqp_min(G, w, c) + 1e-9 * _scale(G, w), kind


def test_dual_is_invariant_to_scaling_the_gram_matrix() -> None:
    rng = np.random.default_rng(5)
    for m in (2, 3, 5):
        G = rng.normal(size=(m, 12))
        w = rng.dirichlet(np.ones(m))
        p = cagrad_dual(G @ G.T, w, 0.4)
        for factor in (1e-6, 1e6):
            q = cagrad_dual(factor * (G @ G.T), w, 0.4)
            assert abs(_objective(G, w, 0.4, q)[0] - _objective(G, w, 0.4, p)[0]) <= 1e-9 * (
                _scale(G, w)
            )


def test_dual_returns_w_when_void() -> None:
    rng = np.random.default_rng(6)
    G = rng.normal(size=(3, 8))
    w = np.array([0.2, 0.3, 0.5])
    np.testing.assert_array_equal(cagrad_dual(G @ G.T, w, 0.0), w)
    G[2] = -(0.2 * G[0] + 0.3 * G[1]) / 0.5  # g0 = 0
    np.testing.assert_array_equal(cagrad_dual(G @ G.T, w, 0.4), w)
    np.testing.assert_array_equal(cagrad_dual(np.zeros((3, 3)), w, 0.4), w)


# ---------------------------------------------------------------------------------------------
# RACO and CAGrad directions
# ---------------------------------------------------------------------------------------------


def test_raco_clips_per_coordinate_without_renormalising() -> None:
    clipped_somewhere = 0
    for G, w, c, kind in _cases(seed=30, m=3, n_per_kind=5):
        H = G @ G.T
        out = raco_direction(H, w, c=c)
        np.testing.assert_array_equal(out.p_used, np.minimum(out.p_star, w))
        if out.skipped:
            np.testing.assert_array_equal(out.coeffs, w)
            continue
        if out.p_used.sum() < 1.0 - 1e-6:
            clipped_somewhere += 1  # not renormalised back onto the simplex
        gp = float(np.linalg.norm(out.p_used @ G))
        g0 = float(np.linalg.norm(w @ G))
        assert out.gp_norm == pytest.approx(gp, rel=1e-8, abs=1e-12 * g0), kind
        np.testing.assert_allclose(out.coeffs, w + (c * g0 / gp) * out.p_used, rtol=1e-8)
        # the correction adds exactly c||g0|| in norm
        d = out.coeffs @ G
        assert np.linalg.norm(d - w @ G) == pytest.approx(c * g0, rel=1e-8)
    assert clipped_somewhere >= 5


def test_raco_m2_example_by_hand() -> None:
    """Two conflicting objectives at w = (0.8, 0.2): p* leans to g2, the clip caps it at 0.2."""
    g1, g2 = np.array([1.0, 0.0]), np.array([-0.6, 0.8])
    G = np.stack([g1, g2])
    out = raco_direction(G @ G.T, [0.8, 0.2], c=0.4)
    assert out.p_star[1] > 0.2  # the dual wants more of the neglected objective ...
    assert out.p_used[1] == 0.2 and out.p_used[0] == out.p_star[0]  # ... the clip caps it
    assert out.p_used.sum() < 1.0


@pytest.mark.parametrize("clip", [True, False])
def test_c_zero_is_weighted_gradient_exactly(clip: bool) -> None:
    rng = np.random.default_rng(8)
    for m in (2, 3, 4):
        G = rng.normal(size=(m, 10))
        w = rng.dirichlet(np.ones(m))
        out = raco_direction(G @ G.T, w, c=0.0, clip=clip)
        np.testing.assert_array_equal(out.coeffs, w)
        assert out.skipped and out.step == 0.0


def test_zero_weighted_gradient_gives_w() -> None:
    g = np.array([1.0, -2.0, 0.5])
    G = np.stack([g, -g])
    out = raco_direction(G @ G.T, [0.5, 0.5], c=0.4)
    np.testing.assert_array_equal(out.coeffs, [0.5, 0.5])
    assert out.skipped and out.g0_norm == 0.0


def _primal_max(G: np.ndarray, g0: np.ndarray, radius: float) -> float:
    """max_d min_i <g_i, d> s.t. ||d - g0|| <= radius, solved directly in parameter space.

    Written as max t s.t. <g_i, d> >= t and ||d - g0||^2 <= radius^2, in units where
    max_i ||g_i|| = 1 and radius = 1 so that SLSQP's absolute tolerances mean the same thing
    for every case; analytic Jacobians keep it fast.
    """
    gmax = float(np.linalg.norm(G, axis=1).max())
    Gs, m, dim = G / gmax, G.shape[0], G.shape[1]
    # d = g0 + radius * u with ||u|| <= 1; min_i <g_i, d> / (gmax * radius) = t
    offset = Gs @ g0 / radius

    def lin(x: np.ndarray) -> np.ndarray:
        return offset + Gs @ x[:dim] - x[dim]

    def lin_jac(x: np.ndarray) -> np.ndarray:
        return np.hstack([Gs, -np.ones((m, 1))])

    cons = [
        {"type": "ineq", "fun": lin, "jac": lin_jac},
        {
            "type": "ineq",
            "fun": lambda x: 1.0 - x[:dim] @ x[:dim],
            "jac": lambda x: np.append(-2.0 * x[:dim], 0.0),
        },
    ]
    objective_jac = np.append(np.zeros(dim), -1.0)
    res = minimize(
        lambda x: -x[dim],
        np.append(np.zeros(dim), float(offset.min())),
        jac=lambda x: objective_jac,
        method="SLSQP",
        constraints=cons,
        options={"ftol": 1e-14, "maxiter": 500},
    )
    u = res.x[:dim] / max(1.0, float(np.linalg.norm(res.x[:dim])))  # feasible
    return float((G @ (g0 + radius * u)).min())


def test_unclipped_direction_solves_the_cagrad_primal() -> None:
    """clip=False: d stays in the ball ||d - g0|| <= c||g0|| and maximises min_i <g_i, d>."""
    rng = np.random.default_rng(9)
    checked = skipped = 0
    for trial in range(24):
        m = (2, 3, 4)[trial % 3]
        kind = KINDS[trial % len(KINDS)]
        G = _gradients(rng, m, kind)[:, :20]
        w = rng.dirichlet(np.ones(m))
        c = float(rng.choice((0.25, 0.4, 0.9)))
        out = raco_direction(G @ G.T, w, c=c, clip=False)
        g0 = w @ G
        d = out.coeffs @ G
        radius = c * float(np.linalg.norm(g0))
        assert np.linalg.norm(d - g0) <= radius * (1.0 + 1e-9) + 1e-12
        if out.skipped:
            # Only when 0 is the best dual point (G_p* = 0): Algorithm 1 then keeps G0 = g0,
            # which need not maximise the primal, so there is nothing more to check.
            assert np.linalg.norm(out.p_star @ G) <= 1e-7 * np.linalg.norm(G, axis=1).max()
            np.testing.assert_array_equal(out.coeffs, w)
            skipped += 1
            continue
        ours = float((G @ d).min())
        ref = _primal_max(G, g0, radius)
        tol = 1e-7 * _scale(G, w)
        assert ours >= ref - tol, (kind, c, ours, ref)
        checked += 1
    assert checked >= 15 and skipped >= 1


@pytest.mark.parametrize("rescale", [0, 1, 2])
def test_cagrad_direction_matches_official_recipe(rescale: int) -> None:
    """Mean g0, dual by SLSQP as in Cranial-XIX/CAGrad, divided by 1, 1 + c^2 or 1 + c."""
    rng = np.random.default_rng(10 + rescale)
    c = 0.5
    for m in (2, 3, 4):
        G = rng.normal(size=(m, 15))
        out = cagrad_direction(G @ G.T, c=c, rescale=rescale)  # type: ignore[arg-type]
        w = np.full(m, 1.0 / m)
        g0 = G.mean(axis=0)
        best_p, best = w, np.inf
        for x0 in [w, *(0.9 * np.eye(m) + 0.1 / m)]:
            res = minimize(
                lambda p, G=G, w=w: float(_objective(G, w, c, p)[0]),
                x0,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * m,
                constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1.0}],
                options={"ftol": 1e-14},
            )
            if res.fun < best:
                best_p, best = res.x, res.fun
        gw = best_p @ G
        d = g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw
        d = d / {0: 1.0, 1: 1.0 + c * c, 2: 1.0 + c}[rescale]
        np.testing.assert_allclose(out.coeffs @ G, d, atol=1e-5 * float(np.linalg.norm(d)))
        plain = raco_direction(G @ G.T, w, c=c, clip=False)
        np.testing.assert_allclose(out.coeffs * {0: 1.0, 1: 1.25, 2: 1.5}[rescale], plain.coeffs)


# ---------------------------------------------------------------------------------------------
# MGDA
# ---------------------------------------------------------------------------------------------


def test_mgda_two_matches_brute_force() -> None:
    rng = np.random.default_rng(12)
    gammas = np.linspace(0.0, 1.0, 10_001)
    checked = 0
    for _ in range(40):
        G = rng.normal(size=(2, int(rng.integers(5, 30))))
        H = G @ G.T
        if H[0, 1] >= min(H[0, 0], H[1, 1]):
            continue  # special cases are tested separately
        gamma, rest = mgda_two(H)
        assert rest == 1.0 - gamma
        norms = np.linalg.norm(np.outer(gammas, G[0]) + np.outer(1.0 - gammas, G[1]), axis=1)
        assert abs(gamma - gammas[int(np.argmin(norms))]) <= 1e-4
        assert np.linalg.norm(gamma * G[0] + rest * G[1]) <= norms.min() + 1e-9
        checked += 1
    assert checked >= 10


def test_mgda_two_special_cases() -> None:
    g1 = np.array([1.0, 0.0])
    assert mgda_two(np.outer([1, 3], [1, 3]) * 1.0)[0] == 0.999  # <g1,g2> = 3 >= ||g1||^2 = 1
    G = np.stack([g1 * 3.0, np.array([1.0, 0.5])])  # <g1,g2> = 3 >= ||g2||^2 = 1.25
    assert mgda_two(G @ G.T) == (0.001, 1.0 - 0.001)
    G = np.stack([g1, g1])  # both hold: the first check wins, as in the reference code
    assert mgda_two(G @ G.T)[0] == 0.999
    assert mgda_two([[1.0, 0.0], [0.0, 1.0]]) == (0.5, 0.5)


@pytest.mark.parametrize("m", [2, 3, 5])
def test_mgda_min_norm_matches_slsqp(m: int) -> None:
    rng = np.random.default_rng(13 + m)
    for kind in KINDS:
        G = _gradients(rng, m, kind)
        p = mgda_min_norm(G @ G.T)
        assert p.min() >= 0.0 and abs(p.sum() - 1.0) < 1e-12
        ours = float(np.linalg.norm(p @ G) ** 2)
        best = np.inf
        for x0 in [np.full(m, 1.0 / m), *(0.9 * np.eye(m) + 0.1 / m)]:
            res = minimize(
                lambda q, G=G: float(np.sum((q @ G) ** 2)),
                x0,
                method="SLSQP",
                bounds=[(0.0, 1.0)] * m,
                constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1.0}],
                options={"ftol": 1e-15},
            )
            best = min(best, float(np.sum((project_simplex(res.x) @ G) ** 2)))
        assert ours <= best + 1e-9 * np.max(np.sum(G**2, axis=1)), kind


# ---------------------------------------------------------------------------------------------
# PAMA
# ---------------------------------------------------------------------------------------------


GRID_N = 40


def _brute_min_combination(values: np.ndarray) -> float:
    """argmin over a simplex grid (step 1/40) of (sum_i c_i v_i)^2, as the value sum_i c_i v_i."""
    n = values.size
    grid = np.array(
        [c for c in itertools.product(range(GRID_N + 1), repeat=n) if sum(c) == GRID_N],
        dtype=float,
    )
    combos = (grid / GRID_N) @ values
    return float(combos[int(np.argmin(combos**2))])


def _assert_is_min_combination(s_star: float, values: np.ndarray) -> None:
    """s* is attainable, beats every grid point, and sits where the grid's best point is."""
    brute = _brute_min_combination(values)
    assert values.min() - 1e-15 <= s_star <= values.max() + 1e-15  # some c in the simplex
    assert abs(s_star) <= abs(brute) + 1e-15
    assert abs(s_star - brute) <= np.ptp(values) / GRID_N + 1e-15


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.3, 0.7, 1.5], 0.3),  # all positive: the worst objective
        ([-0.3, -0.7, -1.5], -0.3),  # all negative: the largest
        ([-1.0, 2.0, 0.5], 0.0),  # mixed signs
        ([0.0, 2.0, 0.5], 0.0),  # a zero
        ([0.0, 0.0], 0.0),
        ([-2.0, 0.0], 0.0),
        ([4.0], 4.0),
    ],
)
def test_theorem1_sign_cases(values: list[float], expected: float) -> None:
    arr = np.array(values)
    assert theorem1(arr) == expected
    _assert_is_min_combination(theorem1(arr), arr)


def test_theorem1_is_the_projection_on_random_values() -> None:
    rng = np.random.default_rng(14)
    for _ in range(30):
        values = rng.choice([-1.0, 1.0]) * rng.uniform(0.0, 2.0, size=3)
        if rng.random() < 0.5:
            values *= rng.choice([-1.0, 1.0], size=3)
        _assert_is_min_combination(theorem1(values), values)


def test_pama_per_token_noon_and_mask() -> None:
    rng = np.random.default_rng(15)
    adv = rng.normal(size=(3, 40))
    adv[:, :5] = np.abs(adv[:, :5]) + 0.1  # some tokens with all-positive advantages
    ok = rng.random(40) < 0.7
    ok[:5] = True
    out = pama_combined_advantage(adv, ok)
    for t in range(40):
        noon = np.maximum(adv[:, t], 0.0) * ok[t]
        _assert_is_min_combination(float(out[t]), noon)
        if ok[t] and np.all(adv[:, t] > 0.0):
            assert out[t] == adv[:, t].min()  # follow the worst objective
        else:
            assert out[t] == 0.0  # any non-positive advantage or a clipped ratio: no update
    assert np.all(out[:5] > 0.0)
    # without Noon the theorem sees the signed values: all-negative tokens give the max
    raw = pama_combined_advantage(-np.abs(adv), None, noon=False)
    np.testing.assert_array_equal(raw, (-np.abs(adv)).max(axis=0))


def test_pama_per_batch_uses_masked_means() -> None:
    rng = np.random.default_rng(16)
    adv = rng.normal(loc=0.5, size=(2, 4, 6))  # (N, batch, length)
    ok = rng.random((4, 6)) < 0.8
    valid = np.ones((4, 6), dtype=bool)
    valid[1, 4:] = False  # padding
    valid[3, 2:] = False
    out = pama_combined_advantage(adv, ok, granularity="batch", valid_mask=valid)
    means = []
    for i in range(2):
        total, count = 0.0, 0
        for b in range(4):
            for t in range(6):
                if valid[b, t]:
                    total += max(adv[i, b, t], 0.0) * (1.0 if ok[b, t] else 0.0)
                    count += 1
        means.append(total / count)
    expected = min(means) if min(means) > 0 else 0.0
    np.testing.assert_allclose(out[valid], expected, rtol=1e-12)
    assert np.all(out[~valid] == 0.0)
    # one objective with a non-positive batch mean switches the whole batch off
    adv[1] = -np.abs(adv[1])
    off = pama_combined_advantage(adv, ok, granularity="batch", valid_mask=valid)
    assert np.all(off == 0.0)


def test_pama_per_token_padding_is_zero() -> None:
    adv = np.ones((2, 2, 3))
    valid = np.array([[True, True, False], [True, False, False]])
    out = pama_combined_advantage(adv, None, valid_mask=valid)
    np.testing.assert_array_equal(out, valid.astype(float))


# ---------------------------------------------------------------------------------------------
# validation at the edge
# ---------------------------------------------------------------------------------------------


def test_bad_gram_matrices_are_named() -> None:
    w = [0.5, 0.5]
    with pytest.raises(SolverInputError, match=r"H\[0, 1\] = 2.0 but H\[1, 0\] = 1.0"):
        cagrad_dual([[4.0, 2.0], [1.0, 4.0]], w, 0.4)
    with pytest.raises(SolverInputError, match="not positive semi-definite"):
        cagrad_dual([[1.0, 3.0], [3.0, 1.0]], w, 0.4)
    with pytest.raises(SolverInputError, match=r"H\[1, 1\] = nan is not finite"):
        cagrad_dual([[1.0, 0.0], [0.0, np.nan]], w, 0.4)
    with pytest.raises(SolverInputError, match=r"H\[1, 1\] = -1.0 is negative"):
        raco_direction([[1.0, 0.0], [0.0, -1.0]], w)
    with pytest.raises(SolverInputError, match="square"):
        mgda_min_norm(np.ones((2, 3)))
    with pytest.raises(SolverInputError, match="2×2"):
        mgda_two(np.eye(3))


def test_bad_weights_and_options_are_named() -> None:
    H = np.eye(3)
    with pytest.raises(SolverInputError, match=r"sums to 0\.9"):
        raco_direction(H, [0.3, 0.3, 0.3])
    with pytest.raises(SolverInputError, match=r"w\[1\] = -0.1"):
        raco_direction(H, [0.6, -0.1, 0.5])
    with pytest.raises(SolverInputError, match=r"shape \(3,\)"):
        raco_direction(H, [0.5, 0.5])
    with pytest.raises(SolverInputError, match=r"c = -0\.1"):
        raco_direction(H, [0.2, 0.3, 0.5], c=-0.1)
    with pytest.raises(SolverInputError, match="closed_form"):
        cagrad_dual(H, [0.2, 0.3, 0.5], 0.4, method="closed_form")
    with pytest.raises(SolverInputError, match="rescale"):
        cagrad_direction(H, rescale=3)  # type: ignore[arg-type]


def test_bad_pama_inputs_are_named() -> None:
    adv = np.ones((2, 5))
    with pytest.raises(SolverInputError, match=r"ratio_ok_mask must have the token shape \(5,\)"):
        pama_combined_advantage(adv, np.ones(4, dtype=bool))
    with pytest.raises(SolverInputError, match="granularity"):
        pama_combined_advantage(adv, None, granularity="sequence")  # type: ignore[arg-type]
    bad = adv.copy()
    bad[1, 3] = np.inf
    with pytest.raises(SolverInputError, match=r"adv\[1, 3\] = inf"):
        pama_combined_advantage(bad)
    with pytest.raises(SolverInputError, match="non-empty"):
        theorem1([])
