"""Closed-form and small iterative solvers behind RACO, CAGrad, MGDA and PAMA.

Every gradient-combination method here only needs the m×m Gram matrix
``H[i, j] = <g_i, g_j>`` of the per-objective gradients, never the gradients themselves: the
training loop forms ``H`` tensor by tensor (so no flat copy of all parameters is ever made), asks
this module for coefficients ``a``, and writes ``sum_i a_i g_i`` back into ``.grad``. Keeping the
maths in float64 numpy on the CPU makes it exact, cheap (m is 2..5) and testable without torch.

Sections (see ``docs/algorithms.md`` §10 and §11):

- the CAGrad dual ``min_{p in simplex} p^T H w + c ||g0|| sqrt(p^T H p)``: an exact closed form
  for m = 2, an exact active-set (face enumeration) solver for m = 3 (and small m), and an
  accelerated projected-gradient solver for any m (also the cross-check of the exact ones);
- RACO's clipped correction and the original CAGrad direction, returned as coefficients;
- MGDA's min-norm element (Sener & Koltun's two-objective rule and a general-m solver);
- PAMA's Theorem 1 and the combined Noon advantage, per token or per batch, and the stream
  weighting that makes one PAMA model follow one preference.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "CorrectedDirection",
    "SolverInputError",
    "cagrad_direction",
    "cagrad_dual",
    "cagrad_objective",
    "mgda_min_norm",
    "mgda_two",
    "pama_combined_advantage",
    "pama_stream_scales",
    "project_simplex",
    "raco_direction",
    "theorem1",
]

FloatArray = NDArray[np.float64]
DualMethod = Literal["auto", "closed_form", "active_set", "pgd"]

# Largest m the active-set solver accepts: it enumerates all 2^m - 1 faces of the simplex.
MAX_ACTIVE_SET_M = 10
# Largest m for which method="auto" uses the exact active-set solver (63 faces at m = 6, ~2 ms).
AUTO_ACTIVE_SET_M = 6
# Relative thresholds, applied after H is scaled to max(diag H) = 1.
_ZERO_NORM_SQ = 1e-24  # ||g||^2 below this (relative to max ||g_i||^2) counts as a zero vector
_EIG_RTOL = 1e-12  # eigenvalues below this fraction of the largest count as zero (pinv, null)
_FEAS_TOL = 1e-9  # how far outside the simplex a candidate may fall before it is dropped
_STALL_ITERS = 100  # projected-gradient iterations without progress before it gives up


class SolverInputError(ValueError):
    """A Gram matrix, weight vector or advantage array cannot be used by a solver."""


@dataclass(frozen=True)
class CorrectedDirection:
    """Coefficients of a corrected update direction plus what produced them.

    The update direction is ``G0 = sum_i coeffs[i] * g_i``; the other fields are diagnostics
    worth logging each step (how far the correction moved away from the weighted gradient).

    Attributes
    ----------
    coeffs
        ``a`` with ``G0 = sum_i a_i g_i``.
    p_star
        The dual solution ``p*`` (equal to the base weights when the correction is skipped).
    p_used
        The dual weights actually used: ``min(p*, w)`` per coordinate when clipping, else ``p*``.
    g0_norm
        ``||g0|| = sqrt(w^T H w)`` of the base (weighted or mean) gradient.
    gp_norm
        ``||G~|| = sqrt(p_used^T H p_used)``.
    step
        The multiplier ``c ||g0|| / ||G~||`` in front of ``p_used`` (0 when skipped).
    skipped
        True when ``c = 0``, ``||g0|| = 0`` or ``||G~|| = 0``: then ``coeffs`` is the base weights
        (divided by the rescale factor for CAGrad) and the caller may skip the correction.
    """

    coeffs: FloatArray
    p_star: FloatArray
    p_used: FloatArray
    g0_norm: float
    gp_norm: float
    step: float
    skipped: bool


# --------------------------------------------------------------------------------------------
# validation (the public functions call these; the private kernels trust their inputs)
# --------------------------------------------------------------------------------------------


def _check_gram(H: ArrayLike, *, psd_tol: float, name: str = "H") -> FloatArray:
    """Return ``H`` as a symmetric float64 array, or say exactly which entry is wrong."""
    arr = np.asarray(H, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 1:
        raise SolverInputError(
            f"{name} must be a square m×m Gram matrix with m >= 1, got shape {arr.shape}; "
            f"build it as {name}[i, j] = <g_i, g_j>"
        )
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        i, j = bad[0]
        raise SolverInputError(
            f"{name}[{i}, {j}] = {arr[i, j]} is not finite; a gradient overflowed or is NaN, "
            "skip this step or lower the learning rate"
        )
    diag = np.diag(arr)
    scale = float(max(diag.max(), np.abs(arr).max(), 0.0))
    if np.any(diag < -psd_tol * scale):
        i = int(np.argmin(diag))
        raise SolverInputError(
            f"{name}[{i}, {i}] = {diag[i]} is negative, but it is ||g_{i}||^2; "
            f"{name} must be a Gram matrix of inner products"
        )
    asym = np.abs(arr - arr.T)
    if asym.max() > psd_tol * scale:
        i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
        raise SolverInputError(
            f"{name}[{i}, {j}] = {arr[i, j]} but {name}[{j}, {i}] = {arr[j, i]}: the Gram matrix "
            "must be symmetric; compute both entries from the same dot products"
        )
    sym = 0.5 * (arr + arr.T)
    if scale > 0.0:
        min_eig = float(np.linalg.eigvalsh(sym).min())
        if min_eig < -psd_tol * scale:
            raise SolverInputError(
                f"{name} is not positive semi-definite (smallest eigenvalue {min_eig:.3e}, largest "
                f"entry {scale:.3e}); it must be H[i, j] = <g_i, g_j> over the same parameters "
                "for every pair, accumulated in float64"
            )
    return sym


def _check_weights(w: ArrayLike, m: int, *, name: str = "w") -> FloatArray:
    """Return ``w`` as a float64 point of the simplex, or name the coordinate that is wrong."""
    arr = np.asarray(w, dtype=np.float64)
    if arr.shape != (m,):
        raise SolverInputError(
            f"{name} must have one weight per objective, shape ({m},), got shape {arr.shape}"
        )
    for i, value in enumerate(arr):
        if not math.isfinite(value) or value < 0.0:
            raise SolverInputError(
                f"{name}[{i}] = {value}; preference weights must be finite and >= 0"
            )
    total = float(arr.sum())
    if abs(total - 1.0) > 1e-6:
        raise SolverInputError(
            f"{name} sums to {total:.8g}, not 1; divide the preference weights by their sum"
        )
    return arr  # not renormalised, so that c = 0 gives back the caller's w bit for bit


def _check_c(c: float, *, name: str = "c") -> float:
    value = float(c)
    if not math.isfinite(value) or value < 0.0:
        raise SolverInputError(f"{name} = {c!r}; the conflict radius must be finite and >= 0")
    return value


# --------------------------------------------------------------------------------------------
# simplex helpers
# --------------------------------------------------------------------------------------------


def project_simplex(v: ArrayLike) -> FloatArray:
    """Euclidean projection of ``v`` onto the probability simplex.

    The sort-based algorithm of Held, Wolfe & Crowder (as in Duchi et al. 2008), O(m log m).

    Parameters
    ----------
    v
        A 1-D array of finite numbers.

    Returns
    -------
    numpy.ndarray
        The closest point ``p >= 0`` with ``sum(p) = 1``.

    Examples
    --------
    >>> project_simplex([0.0, 0.0, 2.0]).tolist()
    [0.0, 0.0, 1.0]
    """
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)):
        raise SolverInputError(f"project_simplex needs a finite 1-D array, got shape {arr.shape}")
    return _project_simplex(arr)


def _project_simplex(v: FloatArray) -> FloatArray:
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    idx = np.arange(1, v.size + 1)
    rho = int(np.nonzero(u - css / idx > 0)[0][-1])
    theta = css[rho] / (rho + 1)
    return np.maximum(v - theta, 0.0)


def _fw_gap(grad: FloatArray, p: FloatArray) -> float:
    """Frank-Wolfe gap ``grad^T p - min_i grad_i``: an upper bound on ``f(p) - f*`` (convex f)."""
    return float(grad @ p - grad.min())


# --------------------------------------------------------------------------------------------
# the CAGrad / RACO dual
# --------------------------------------------------------------------------------------------


def cagrad_objective(H: ArrayLike, w: ArrayLike, c: float, p: ArrayLike) -> float:
    """Value of the CAGrad dual objective ``p^T H w + c ||g0|| sqrt(p^T H p)`` at ``p``.

    Exposed so that callers (and tests) compare solvers by the value they reach, which is unique
    even when the minimiser is not (for instance when two gradients are parallel).

    Parameters
    ----------
    H
        The m×m Gram matrix ``H[i, j] = <g_i, g_j>``.
    w
        Base weights on the simplex; ``g0 = sum_i w_i g_i``.
    c
        Conflict radius, ``c >= 0``.
    p
        The point at which to evaluate (any length-m vector).

    Returns
    -------
    float
        The objective value.
    """
    gram = _check_gram(H, psd_tol=1e-6)
    weights = _check_weights(w, gram.shape[0])
    point = np.asarray(p, dtype=np.float64)
    if point.shape != weights.shape:
        raise SolverInputError(f"p must have shape {weights.shape}, got {point.shape}")
    g0_norm = math.sqrt(max(float(weights @ gram @ weights), 0.0))
    return _dual_value(gram, gram @ weights, _check_c(c) * g0_norm, point)


def _dual_value(H: FloatArray, b: FloatArray, s: float, p: FloatArray) -> float:
    return float(p @ b) + s * math.sqrt(max(float(p @ H @ p), 0.0))


def _dual_grad(H: FloatArray, b: FloatArray, s: float, p: FloatArray) -> FloatArray:
    hp = H @ p
    norm_sq = float(p @ hp)
    if norm_sq <= _ZERO_NORM_SQ:
        return b.copy()  # a subgradient: the norm term is not differentiable at G_p = 0
    return b + (s / math.sqrt(norm_sq)) * hp


def _dual_two(H: FloatArray, b: FloatArray, s: float) -> float:
    """Exact minimiser ``lambda`` of the m = 2 dual over ``p = (lambda, 1 - lambda)``.

    ``h(lambda) = b2 + delta lambda + s sqrt(Q(lambda))`` is convex, so its minimum over [0, 1]
    is at an endpoint or a stationary point; squaring ``h' = 0`` gives the quadratic below,
    whose roots include every stationary point (and possibly spurious ones, which evaluating
    ``h`` discards).
    """
    h11, h12, h22 = H[0, 0], H[0, 1], H[1, 1]
    delta = b[0] - b[1]
    q2 = h11 + h22 - 2.0 * h12
    q1 = 2.0 * (h12 - h22)
    q0 = h22
    a2 = delta * delta * q2 - s * s * q2 * q2
    a1 = delta * delta * q1 - s * s * q1 * q2
    a0 = delta * delta * q0 - s * s * q1 * q1 / 4.0
    roots: list[float] = []
    coef_scale = max(abs(a2), abs(a1), abs(a0), 1e-300)
    if abs(a2) > 1e-14 * coef_scale:
        disc = a1 * a1 - 4.0 * a2 * a0
        if disc >= -1e-12 * max(a1 * a1, abs(4.0 * a2 * a0), 1e-300):
            sq = math.sqrt(max(disc, 0.0))
            # numerically stable pair of roots
            qq = -0.5 * (a1 + math.copysign(sq, a1)) if a1 != 0.0 else -0.5 * sq
            if qq != 0.0:
                roots.extend((qq / a2, a0 / qq))
            else:
                roots.append(0.0)
    elif abs(a1) > 1e-14 * coef_scale:
        roots.append(-a0 / a1)
    candidates = [0.0, 1.0]
    candidates.extend(min(max(r, 0.0), 1.0) for r in roots if -1e-9 <= r <= 1.0 + 1e-9)
    best_lam, best_val = 0.0, math.inf
    for lam in candidates:
        val = _dual_value(H, b, s, np.array([lam, 1.0 - lam]))
        if val < best_val:
            best_lam, best_val = lam, val
    return best_lam


def _eig_split(H: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Pseudo-inverse of a PSD matrix plus an orthonormal basis of its null space."""
    vals, vecs = np.linalg.eigh(H)
    top = max(float(vals.max()), 0.0)
    keep = vals > _EIG_RTOL * top if top > 0.0 else np.zeros_like(vals, dtype=bool)
    pinv = (vecs[:, keep] / vals[keep]) @ vecs[:, keep].T
    return pinv, vecs[:, ~keep], vals


def _face_candidates(H: FloatArray, b: FloatArray, s: float) -> list[FloatArray]:
    """Interior KKT candidates of the dual restricted to one face (all of its coordinates > 0).

    Stationarity in the relative interior with ``G_p != 0`` reads ``b + s H p / r = nu 1`` with
    ``r = ||G_p||``; solving gives ``p(nu) = H^+ (nu 1 - b) / (A nu - B)`` where ``nu`` solves
    ``A nu^2 - 2 B nu + C - s^2 = 0``. When ``H`` is singular, a minimiser that is not an isolated
    point of this form comes in a segment that reaches the face's boundary, where a smaller
    face's candidate attains the same value, so the pseudo-inverse loses nothing. The zero-norm
    point ``H p = 0`` (where the objective is 0 and not differentiable) is added when the null
    space is one-dimensional; wider null spaces again meet the boundary.
    """
    k = H.shape[0]
    ones = np.ones(k)
    pinv, null, _ = _eig_split(H)
    out: list[FloatArray] = []
    A = float(ones @ pinv @ ones)
    B = float(ones @ pinv @ b)
    C = float(b @ pinv @ b)
    if A > 1e-14:
        disc = B * B - A * (C - s * s)
        if disc >= -1e-12 * max(B * B, abs(A * (C - s * s)), 1e-300):
            sq = math.sqrt(max(disc, 0.0))
            for nu in ((B + sq) / A, (B - sq) / A):
                den = A * nu - B
                if abs(den) > 1e-14:
                    out.append(pinv @ (nu * ones - b) / den)
    if null.shape[1] == 1:
        z = null[:, 0]
        total = float(z.sum())
        if abs(total) > 1e-12:
            out.append(z / total)
    return out


def _dual_active_set(H: FloatArray, b: FloatArray, s: float) -> FloatArray:
    """Exact dual minimiser by enumerating the faces of the simplex (vertices, edges, interiors).

    The optimum lies in the relative interior of exactly one face, where it is a vertex, the
    m = 2 closed form on an edge, or an interior KKT / zero-norm candidate; evaluating the
    objective at every feasible candidate and keeping the smallest is therefore exact.
    """
    m = H.shape[0]
    best_p, best_val = np.eye(m)[0], math.inf
    for i in range(m):
        p = np.eye(m)[i]
        val = _dual_value(H, b, s, p)
        if val < best_val:
            best_p, best_val = p, val
    for size in range(2, m + 1):
        for face in itertools.combinations(range(m), size):
            idx = np.array(face)
            sub_h, sub_b = H[np.ix_(idx, idx)], b[idx]
            if size == 2:
                lam = _dual_two(sub_h, sub_b, s)
                cands = [np.array([lam, 1.0 - lam])]
            else:
                cands = _face_candidates(sub_h, sub_b, s)
            for q in cands:
                if not np.all(np.isfinite(q)) or q.min() < -_FEAS_TOL:
                    continue
                q = np.maximum(q, 0.0)
                q = q / q.sum()
                p = np.zeros(m)
                p[idx] = q
                val = _dual_value(H, b, s, p)
                if val < best_val:
                    best_p, best_val = p, val
    return best_p


def _dual_pgd(
    H: FloatArray, b: FloatArray, s: float, p0: FloatArray, *, tol: float, max_iter: int
) -> tuple[FloatArray, float, int]:
    """Accelerated projected gradient (FISTA with backtracking and adaptive restart).

    Stops when the Frank-Wolfe gap, an upper bound on the distance to the optimal value for a
    convex objective, is below ``tol``. Returns ``(p, gap, iterations)``.
    """
    x = _project_simplex(p0)
    fx = _dual_value(H, b, s, x)
    y, t = x.copy(), 1.0
    lip = max(float(np.trace(H)), 1e-12) * (1.0 + s)
    gap = math.inf
    it = 0
    best, stalled = fx, 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        fy = _dual_value(H, b, s, y)
        gy = _dual_grad(H, b, s, y)
        while True:
            z = _project_simplex(y - gy / lip)
            d = z - y
            fz = _dual_value(H, b, s, z)
            if fz <= fy + float(gy @ d) + 0.5 * lip * float(d @ d) + 1e-15 * (1.0 + abs(fy)):
                break
            lip *= 2.0
            if lip > 1e30:
                break
        if fz > fx:
            if t == 1.0:  # a plain projected step failed to descend: rounding level reached
                break
            y, t = x.copy(), 1.0  # momentum overshot: restart from the last iterate
            continue
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = z + ((t - 1.0) / t_next) * (z - x)
        x, fx, t = z, fz, t_next
        lip *= 0.9
        gap = _fw_gap(_dual_grad(H, b, s, x), x)
        if gap <= tol:
            break
        # At a kink (G_p = 0 on the boundary) the gap of a subgradient never closes although the
        # value has converged: stop once the value has not moved for a while.
        if fx < best - 1e-15 * (1.0 + abs(best)):
            best, stalled = fx, 0
        else:
            stalled += 1
            if stalled >= _STALL_ITERS:
                break
    return x, gap, it


def cagrad_dual(
    H: ArrayLike,
    w: ArrayLike,
    c: float,
    *,
    method: DualMethod = "auto",
    tol: float = 1e-12,
    max_iter: int = 20_000,
    psd_tol: float = 1e-6,
) -> FloatArray:
    """Solve the CAGrad/RACO dual ``p* = argmin_{p in simplex} p^T H w + c ||g0|| sqrt(p^T H p)``.

    ``g0 = sum_i w_i g_i`` and ``||g0|| = sqrt(w^T H w)``. The objective is convex (a linear term
    plus a scaled norm of ``G_p = sum_i p_i g_i``), so the exact solvers compare finitely many
    candidates and the iterative one certifies itself with the Frank-Wolfe gap.

    Parameters
    ----------
    H
        The m×m Gram matrix ``H[i, j] = <g_i, g_j>`` (symmetric PSD up to ``psd_tol``).
    w
        Base weights on the simplex (RACO: the preference; CAGrad: uniform).
    c
        Conflict radius ``c >= 0``.
    method
        ``"closed_form"`` (m = 2 only: roots of the stationarity quadratic), ``"active_set"``
        (exact face enumeration, m <= 10; the m = 3 solver of docs/algorithms.md §10), ``"pgd"``
        (accelerated projected gradient, any m), or ``"auto"``: closed form for m = 2, active set
        for 3 <= m <= 6, projected gradient above.
    tol
        Frank-Wolfe gap at which ``"pgd"`` stops, relative to ``max_i ||g_i||^2``.
    max_iter
        Iteration cap of ``"pgd"``.
    psd_tol
        Relative tolerance of the symmetry and PSD checks on ``H``.

    Returns
    -------
    numpy.ndarray
        ``p*`` on the simplex. When ``c = 0`` or ``||g0|| = 0`` the correction is void and ``w``
        itself is returned.

    Examples
    --------
    >>> H = [[1.0, -0.5], [-0.5, 1.0]]
    >>> cagrad_dual(H, [0.5, 0.5], 0.4).round(6).tolist()
    [0.5, 0.5]
    """
    gram = _check_gram(H, psd_tol=psd_tol)
    m = gram.shape[0]
    weights = _check_weights(w, m)
    radius = _check_c(c)
    if method not in ("auto", "closed_form", "active_set", "pgd"):
        raise SolverInputError(
            f"method = {method!r}; use 'auto', 'closed_form', 'active_set' or 'pgd'"
        )
    if method == "closed_form" and m != 2:
        raise SolverInputError(f"method='closed_form' needs m = 2 objectives, got m = {m}")
    if method == "active_set" and m > MAX_ACTIVE_SET_M:
        raise SolverInputError(
            f"method='active_set' enumerates 2^m faces; m = {m} > {MAX_ACTIVE_SET_M}, use 'pgd'"
        )
    if tol <= 0.0 or max_iter < 1:
        raise SolverInputError(f"tol = {tol} and max_iter = {max_iter} must be positive")
    p, _ = _solve_dual(gram, weights, radius, method=method, tol=tol, max_iter=max_iter)
    return p


def _solve_dual(
    H: FloatArray, w: FloatArray, c: float, *, method: DualMethod, tol: float, max_iter: int
) -> tuple[FloatArray, float]:
    """Kernel of :func:`cagrad_dual`; returns ``(p*, ||g0||)`` with ``p* = w`` when void."""
    m = H.shape[0]
    scale = float(np.diag(H).max())
    g0_sq = float(w @ H @ w)
    g0_norm = math.sqrt(max(g0_sq, 0.0))
    if c == 0.0 or scale <= 0.0 or g0_sq <= _ZERO_NORM_SQ * scale or m == 1:
        return w.copy(), g0_norm
    Hn = H / scale  # the minimiser is invariant to scaling H; thresholds become relative
    b = Hn @ w
    s = c * math.sqrt(g0_sq / scale)
    if method == "auto":
        method = "closed_form" if m == 2 else "active_set" if m <= AUTO_ACTIVE_SET_M else "pgd"
    if method == "closed_form":
        lam = _dual_two(Hn, b, s)
        return np.array([lam, 1.0 - lam]), g0_norm
    if method == "active_set":
        return _dual_active_set(Hn, b, s), g0_norm
    p, _, _ = _dual_pgd(Hn, b, s, w, tol=tol, max_iter=max_iter)
    return p, g0_norm


# --------------------------------------------------------------------------------------------
# RACO and CAGrad directions
# --------------------------------------------------------------------------------------------


def _corrected(
    H: FloatArray,
    w: FloatArray,
    c: float,
    *,
    clip: bool,
    divisor: float,
    method: DualMethod,
) -> CorrectedDirection:
    p_star, g0_norm = _solve_dual(H, w, c, method=method, tol=1e-12, max_iter=20_000)
    p_used = np.minimum(p_star, w) if clip else p_star.copy()
    gp_sq = float(p_used @ H @ p_used)
    gp_norm = math.sqrt(max(gp_sq, 0.0))
    scale = float(np.diag(H).max()) if H.size else 0.0
    void = c == 0.0 or g0_norm == 0.0 or gp_sq <= _ZERO_NORM_SQ * max(scale, 1e-300)
    void = void or float(w @ H @ w) <= _ZERO_NORM_SQ * max(scale, 1e-300)
    if void:
        return CorrectedDirection(w / divisor, p_star, p_used, g0_norm, gp_norm, 0.0, True)
    step = c * g0_norm / gp_norm
    coeffs = (w + step * p_used) / divisor
    return CorrectedDirection(coeffs, p_star, p_used, g0_norm, gp_norm, step, False)


def raco_direction(
    H: ArrayLike,
    w: ArrayLike,
    *,
    c: float = 0.4,
    clip: bool = True,
    method: DualMethod = "auto",
    psd_tol: float = 1e-6,
) -> CorrectedDirection:
    """RACO's update direction as coefficients on the per-objective gradients (Algorithm 1).

    ``G0 = g0 + c ||g0|| G~ / ||G~||`` with ``g0 = sum_i w_i g_i``, ``G~ = sum_i p~_i g_i`` and
    ``p~ = min(p*, w)`` coordinate by coordinate, **without renormalising** (the clip is what
    keeps the update aligned with the preference; renormalising would undo it). So
    ``a = w + (c ||g0|| / ||G~||) p~``.

    Parameters
    ----------
    H
        The m×m Gram matrix ``H[i, j] = <g_i, g_j>``.
    w
        Preference weights on the simplex.
    c
        Conflict radius; 0.4 in the paper. ``c = 0`` gives ``a = w`` exactly (DPO-LW).
    clip
        Clip ``p*`` at ``w`` (RACO). ``False`` is CAGrad with the weighted ``g0`` and no
        rescaling (the paper's "vanilla CAGrad" ablation).
    method
        Dual solver, as in :func:`cagrad_dual`.
    psd_tol
        Relative tolerance of the checks on ``H``.

    Returns
    -------
    CorrectedDirection
        ``coeffs`` and diagnostics. When ``c = 0``, ``||g0|| = 0`` or ``||G~|| = 0``,
        ``coeffs == w`` and ``skipped`` is True.

    Examples
    --------
    >>> H = [[1.0, -0.5], [-0.5, 1.0]]
    >>> raco_direction(H, [0.8, 0.2], c=0.0).coeffs.tolist()
    [0.8, 0.2]
    """
    gram = _check_gram(H, psd_tol=psd_tol)
    weights = _check_weights(w, gram.shape[0])
    return _corrected(gram, weights, _check_c(c), clip=clip, divisor=1.0, method=method)


def cagrad_direction(
    H: ArrayLike,
    *,
    c: float = 0.5,
    rescale: Literal[0, 1, 2] = 1,
    method: DualMethod = "auto",
    psd_tol: float = 1e-6,
) -> CorrectedDirection:
    """The original CAGrad direction (Liu et al. 2021) as coefficients: mean ``g0``, no clip.

    ``d = g0 + (c ||g0|| / ||G_p*||) G_p*`` with ``g0`` the mean gradient, then divided as in the
    official code: ``rescale=0`` not at all, ``1`` by ``1 + c^2`` (NYUv2), ``2`` by ``1 + c``.

    Parameters
    ----------
    H
        The m×m Gram matrix ``H[i, j] = <g_i, g_j>``.
    c
        Conflict radius (0.5 is the official default, 0.4 on NYUv2, 0.9 on MT10).
    rescale
        0, 1 or 2 as above.
    method
        Dual solver, as in :func:`cagrad_dual`.
    psd_tol
        Relative tolerance of the checks on ``H``.

    Returns
    -------
    CorrectedDirection
        ``coeffs`` with ``d = sum_i coeffs[i] g_i`` and diagnostics.
    """
    gram = _check_gram(H, psd_tol=psd_tol)
    radius = _check_c(c)
    if rescale not in (0, 1, 2):
        raise SolverInputError(
            f"rescale = {rescale!r}; use 0 (none), 1 (divide by 1 + c^2) or 2 (divide by 1 + c)"
        )
    divisor = {0: 1.0, 1: 1.0 + radius * radius, 2: 1.0 + radius}[rescale]
    m = gram.shape[0]
    w = np.full(m, 1.0 / m)
    return _corrected(gram, w, radius, clip=False, divisor=divisor, method=method)


# --------------------------------------------------------------------------------------------
# MGDA
# --------------------------------------------------------------------------------------------


def mgda_two(H: ArrayLike, *, psd_tol: float = 1e-6) -> tuple[float, float]:
    """Sener & Koltun's two-objective min-norm weights ``(gamma, 1 - gamma)``.

    ``gamma = <g2 - g1, g2> / ||g1 - g2||^2``, with the reference code's special cases kept
    bit for bit so that MGDA baselines match published numbers: ``gamma = 0.999`` when
    ``<g1, g2> >= ||g1||^2`` (checked first), ``gamma = 0.001`` when ``<g1, g2> >= ||g2||^2``.

    Parameters
    ----------
    H
        The 2×2 Gram matrix.
    psd_tol
        Relative tolerance of the checks on ``H``.

    Returns
    -------
    tuple of float
        ``(gamma, 1 - gamma)``, the weights of ``g1`` and ``g2``.

    Examples
    --------
    >>> mgda_two([[1.0, 0.0], [0.0, 1.0]])
    (0.5, 0.5)
    """
    gram = _check_gram(H, psd_tol=psd_tol)
    if gram.shape != (2, 2):
        raise SolverInputError(f"mgda_two needs a 2×2 Gram matrix, got shape {gram.shape}")
    v11, v12, v22 = float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1])
    if v12 >= v11:
        gamma = 0.999
    elif v12 >= v22:
        gamma = 0.001
    else:
        gamma = -1.0 * ((v12 - v22) / (v11 + v22 - 2.0 * v12))
    return gamma, 1.0 - gamma


def mgda_min_norm(
    H: ArrayLike, *, tol: float = 1e-12, max_iter: int = 20_000, psd_tol: float = 1e-6
) -> FloatArray:
    """Min-norm point of the convex hull of the gradients: ``argmin_{p in simplex} p^T H p``.

    Exact for m = 2 (the clipped formula, without :func:`mgda_two`'s 0.999/0.001 substitutes);
    accelerated projected gradient for m > 2, stopped by the Frank-Wolfe gap.

    Parameters
    ----------
    H
        The m×m Gram matrix.
    tol
        Frank-Wolfe gap at which to stop, relative to ``max_i ||g_i||^2``.
    max_iter
        Iteration cap.
    psd_tol
        Relative tolerance of the checks on ``H``.

    Returns
    -------
    numpy.ndarray
        The weights ``p``; ``sum_i p_i g_i`` is the min-norm element.
    """
    gram = _check_gram(H, psd_tol=psd_tol)
    m = gram.shape[0]
    if tol <= 0.0 or max_iter < 1:
        raise SolverInputError(f"tol = {tol} and max_iter = {max_iter} must be positive")
    scale = float(np.diag(gram).max())
    if m == 1 or scale <= 0.0:
        return np.full(m, 1.0 / m)
    Hn = gram / scale
    if m == 2:
        denom = Hn[0, 0] + Hn[1, 1] - 2.0 * Hn[0, 1]
        gamma = 0.5 if denom <= 1e-15 else (Hn[1, 1] - Hn[0, 1]) / denom
        gamma = min(max(gamma, 0.0), 1.0)
        return np.array([gamma, 1.0 - gamma])
    return _min_norm_pgd(Hn, tol=tol, max_iter=max_iter)


def _min_norm_pgd(H: FloatArray, *, tol: float, max_iter: int) -> FloatArray:
    m = H.shape[0]
    lip = 2.0 * max(float(np.linalg.eigvalsh(H).max()), 1e-15)
    x = np.full(m, 1.0 / m)
    y, t = x.copy(), 1.0
    fx = float(x @ H @ x)
    for _ in range(max_iter):
        z = _project_simplex(y - 2.0 * (H @ y) / lip)
        fz = float(z @ H @ z)
        if fz > fx:
            if t == 1.0:  # a plain projected step failed to descend: rounding level reached
                break
            y, t = x.copy(), 1.0
            continue
        t_next = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
        y = z + ((t - 1.0) / t_next) * (z - x)
        x, fx, t = z, fz, t_next
        if _fw_gap(2.0 * (H @ x), x) <= tol:
            break
    return x


# --------------------------------------------------------------------------------------------
# PAMA
# --------------------------------------------------------------------------------------------


def theorem1(values: ArrayLike) -> float:
    """PAMA's Theorem 1: ``min_{c in simplex} |sum_i c_i v_i|`` is attained at the projection of
    0 onto ``[min_i v_i, max_i v_i]``; return that optimal ``s* = sum_i c_i v_i``.

    ``s* = 0`` if ``min <= 0 <= max``, ``min`` if all are positive, ``max`` if all are negative.
    O(N), which is the point of PAMA: no MGDA solve per step.

    Parameters
    ----------
    values
        A non-empty 1-D array of per-objective advantages (finite).

    Returns
    -------
    float
        ``s*``.

    Examples
    --------
    >>> theorem1([0.3, 0.7]), theorem1([-0.3, -0.7]), theorem1([-1.0, 2.0])
    (0.3, -0.3, 0.0)
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1:
        raise SolverInputError(f"theorem1 needs a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        i = int(np.argmin(np.isfinite(arr)))
        raise SolverInputError(f"values[{i}] = {arr[i]} is not finite; check the value heads")
    return float(np.clip(0.0, arr.min(), arr.max()))


def pama_combined_advantage(
    adv: ArrayLike,
    ratio_ok_mask: ArrayLike | None = None,
    *,
    granularity: Literal["token", "batch"] = "token",
    valid_mask: ArrayLike | None = None,
    noon: bool = True,
) -> FloatArray:
    """PAMA's combined advantage ``s*`` from N per-objective advantages (docs/algorithms.md §11).

    Noon clipping ``A = max(A', 0)``, then ``I(A) = A * 1[u <= 1 + eps]`` (the ratio test is
    the caller's ``ratio_ok_mask``), then Theorem 1. Per token (the default, the literal
    reading) this is ``s*_t = min_i I_t^(i)`` whenever all are positive and 0 otherwise; per batch
    (the verl port) Theorem 1 is applied once to the batch means of ``I(A^(i))`` over the valid
    tokens and the scalar is broadcast to every valid token.

    Parameters
    ----------
    adv
        Advantages, shape ``(N, *token_shape)`` (e.g. ``(N, T)`` or ``(N, B, L)``).
    ratio_ok_mask
        Boolean ``1[u_t <= 1 + eps]`` of shape ``token_shape``; ``None`` means all true.
    granularity
        ``"token"`` or ``"batch"``.
    valid_mask
        Boolean mask of real (non-padding) tokens, shape ``token_shape``; ``None`` means all.
        Padding tokens get ``s* = 0`` and are left out of the batch means.
    noon
        Apply Noon clipping (default). ``False`` applies Theorem 1 to the raw signed values,
        which is the general statement of the theorem.

    Returns
    -------
    numpy.ndarray
        ``s*`` of shape ``token_shape``.

    Examples
    --------
    >>> adv = [[0.5, -1.0, 2.0], [0.2, 3.0, 1.0]]
    >>> pama_combined_advantage(adv).tolist()
    [0.2, 0.0, 1.0]
    """
    arr = np.asarray(adv, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[0] < 1 or arr.size == 0:
        raise SolverInputError(
            f"adv must have shape (N objectives, *tokens) with N >= 1, got shape {arr.shape}"
        )
    token_shape = arr.shape[1:]
    if not np.all(np.isfinite(arr)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise SolverInputError(
            f"adv{list(idx)} = {arr[idx]} is not finite; check the rewards and value heads"
        )
    ok = _check_mask(ratio_ok_mask, token_shape, "ratio_ok_mask")
    valid = _check_mask(valid_mask, token_shape, "valid_mask")
    if granularity not in ("token", "batch"):
        raise SolverInputError(f"granularity = {granularity!r}; use 'token' or 'batch'")
    clipped = np.maximum(arr, 0.0) if noon else arr
    indicator = clipped * (ok & valid)  # I(A); padding contributes nothing
    if granularity == "token":
        lo, hi = indicator.min(axis=0), indicator.max(axis=0)
        return np.clip(0.0, lo, hi) * valid
    n_valid = int(valid.sum())
    if n_valid == 0:
        return np.zeros(token_shape)
    means = indicator.reshape(arr.shape[0], -1).sum(axis=1) / n_valid
    return np.where(valid, theorem1(means), 0.0)


def pama_stream_scales(
    weights: ArrayLike, reward_std: ArrayLike | None = None
) -> tuple[list[int], FloatArray]:
    """Which objectives become PAMA reward streams, and each stream's reward multiplier.

    Theorem 1 follows the *smallest* advantage, so weighting stream i by w_i would let the
    least-wanted objective drive every update (the preference comes out inverted). Instead
    stream i is scaled by ``max(w) / (w_i σ_i)`` (Tchebycheff-style): the min then equalises
    ``A_i σ_i / w_i``, so the policy improves the objectives in proportion to w, and the most
    weighted stream keeps the scale of its (whitened) reward. ``σ_i`` is the spread of
    objective i's rewards (``reward_std``; ``None`` = 1), so that w compares objectives in
    units of their spread rather than of their raw scale. Objectives with w_i = 0 are left out.

    Examples
    --------
    >>> active, scale = pama_stream_scales([0.8, 0.2, 0.0])
    >>> active, scale.tolist()
    ([0, 1], [1.0, 4.0])
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise SolverInputError(f"weights must be a non-empty vector of w_i >= 0, got {w}")
    active = [int(i) for i in np.flatnonzero(w > 0)]
    if not active:
        raise SolverInputError(f"weights {w.tolist()} put no weight on any objective")
    std = np.ones_like(w) if reward_std is None else np.asarray(reward_std, dtype=np.float64)
    if std.shape != w.shape or not np.all(np.isfinite(std)) or np.any(std <= 0):
        raise SolverInputError(
            f"reward_std must hold one positive, finite spread per objective, got {std}"
        )
    return active, w.max() / (w[active] * std[active])


def _check_mask(mask: ArrayLike | None, shape: tuple[int, ...], name: str) -> NDArray[np.bool_]:
    if mask is None:
        return np.ones(shape, dtype=bool)
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise SolverInputError(
            f"{name} must have the token shape {shape} of adv[i], got shape {arr.shape}"
        )
    if arr.dtype != np.bool_:
        if not np.all(np.isin(arr, (0, 1))):
            raise SolverInputError(f"{name} must be boolean (or 0/1), got values other than 0/1")
        arr = arr.astype(bool)
    return arr
