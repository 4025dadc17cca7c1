"""M = 3 sweep for data with a few, huge layers: staircases split into buckets of f2.

Same sweep as sweep3.py (rows sorted lexicographically descending, a row's layer is the first
layer that does not dominate it, a weighted search tree over the layers), with a different
answer to "does layer L hold a row with f2 >= a and f3 >= b?". The f2 range is cut into K
equal buckets, and every layer keeps

- per bucket, the staircase of its own points (f2 ascending, f3 descending) in a small array;
- ``top[L, c]``: the largest f3 of the layer's points in buckets >= c.

Points in buckets above a's bucket c all have f2 > a, so the layer dominates the row iff
``top[L, c + 1] >= b`` or the first point of bucket c with f2 >= a has f3 >= b: one load, and
a scan of a bucket holding about one point, instead of a search through a staircase of
hundreds. A point only ever replaces covered points in its own bucket (a covered point left
in a lower bucket is harmless: it never decides a query that the new point would not), and
raises ``top`` for the buckets below it until ``top`` is already at least its f3.

On the anti-correlated benchmark shape (9 layers for 1e6 rows, staircases of about 700
points) this kernel took 0.085 s where sweep3.py took 0.15 s. Its memory is K entries per
layer, so the caller only uses it when a sample shows few layers, and it gives up (returns
False) if the layers outgrow ``max_layers``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from paretohqd.stages.kit.pareto.sweep3 import (
    REFRESH,
    build_tree,
    grow,
    layer_tree,
    same_as_previous,
)

_BUCKET_CAP = 4  # first capacity of a bucket's array; doubles when full
_SCAN = 16  # buckets longer than this are searched by bisection


def bucket_count(n: int) -> int:
    """K: a power of two in [64, 1024], about one bucket per 256 rows.

    Measured on the anti-correlated shape: 512 to 2048 buckets ran alike at n = 1e6 (0.085 s),
    1024 was best at 1e7, and more buckets only cost cache (4096: +10% at 1e6, +40% at 1e7).
    """
    k = 64
    while k < n // 256 and k < 1024:
        k *= 2
    return k


@njit(cache=True)
def layers_3d_bucketed(  # pragma: no cover - compiled
    ys: np.ndarray, out: np.ndarray, n_buckets: int, max_layers: int
) -> bool:
    """Layers of rows sorted lexicographically descending (M = 3) into ``out``.

    Returns False, with ``out`` incomplete, as soon as more than ``max_layers`` layers appear.
    """
    n = ys.shape[0]
    k_b = n_buckets
    lo2 = hi2 = ys[0, 1] if n > 0 else 0.0
    for i in range(n):
        lo2 = min(lo2, ys[i, 1])
        hi2 = max(hi2, ys[i, 1])
    scale = 0.0
    if hi2 > lo2 and np.isfinite(hi2 - lo2):
        scale = (k_b - 1) / (hi2 - lo2)
        if not np.isfinite(scale):
            scale = 0.0
    top = np.full((max_layers, k_b + 1), -np.inf)
    bstart = np.zeros((max_layers, k_b), dtype=np.int64)
    bsize = np.zeros((max_layers, k_b), dtype=np.int64)
    bcap = np.zeros((max_layers, k_b), dtype=np.int64)
    arena_a = np.empty(max(64, n), dtype=np.float64)
    arena_b = np.empty(max(64, n), dtype=np.float64)
    used = 0
    count = 0
    rows_in, tmid, tleft, tright = layer_tree(max_layers + 1)
    tree_root = -1
    next_refresh = 0
    for i in range(n):
        a, b = ys[i, 1], ys[i, 2]
        if same_as_previous(ys, i):
            out[i] = out[i - 1]  # an equal row shares the layer
            continue
        if i >= next_refresh:
            build_tree(rows_in, count, tmid, tleft, tright)
            tree_root = 0 if count > 0 else -1
            next_refresh = i + REFRESH
        c = min(int((a - lo2) * scale), k_b - 1)  # monotone in a, so buckets keep f2 order
        lo, hi = 0, count
        node = tree_root
        while lo < hi:
            mid = tmid[node] if node >= 0 else (lo + hi) >> 1
            dominated = top[mid, c + 1] >= b
            if not dominated:
                s0, sz = bstart[mid, c], bsize[mid, c]
                t = _first_ge(arena_a, s0, sz, a)
                dominated = t < sz and arena_b[s0 + t] >= b
            if dominated:
                lo = mid + 1
                node = tright[node] if node >= 0 else -1
            else:
                hi = mid
                node = tleft[node] if node >= 0 else -1
        lay = lo
        if lay == count:
            if count == max_layers:
                return False
            count += 1
        out[i] = lay + 1
        rows_in[lay] += 1
        # Insert into the bucket's staircase: [j, k) are the covered points it replaces.
        s0, sz = bstart[lay, c], bsize[lay, c]
        k = _first_ge(arena_a, s0, sz, a)
        while k < sz and arena_a[s0 + k] <= a:
            k += 1
        j = k
        while j > 0 and arena_b[s0 + j - 1] <= b:
            j -= 1
        new_size = sz - (k - j) + 1
        if new_size > bcap[lay, c]:
            new_cap = max(_BUCKET_CAP, 2 * bcap[lay, c])
            if used + new_cap > arena_a.shape[0]:
                arena_a = grow(arena_a, used + new_cap)
                arena_b = grow(arena_b, used + new_cap)
            arena_a[used : used + sz] = arena_a[s0 : s0 + sz]
            arena_b[used : used + sz] = arena_b[s0 : s0 + sz]
            s0 = used
            bstart[lay, c], bcap[lay, c] = used, new_cap
            used += new_cap
        if k != j + 1 and k < sz:  # move the tail [k, sz) to j + 1
            d0, s1, tail = s0 + j + 1, s0 + k, sz - k
            if d0 > s1:
                for t in range(tail - 1, -1, -1):
                    arena_a[d0 + t] = arena_a[s1 + t]
                    arena_b[d0 + t] = arena_b[s1 + t]
            else:
                for t in range(tail):
                    arena_a[d0 + t] = arena_a[s1 + t]
                    arena_b[d0 + t] = arena_b[s1 + t]
        arena_a[s0 + j] = a
        arena_b[s0 + j] = b
        bsize[lay, c] = new_size
        cc = c
        while cc >= 0 and top[lay, cc] < b:
            top[lay, cc] = b
            cc -= 1
    return True


@njit(cache=True, inline="always")
def _first_ge(arr: np.ndarray, s0: int, sz: int, x: float) -> int:  # pragma: no cover
    # First offset in [0, sz) with arr >= x (arr non-decreasing), else sz. Buckets hold about
    # one point, so a scan; long ones (skewed f2) are bisected.
    if sz <= _SCAN:
        t = 0
        while t < sz and arr[s0 + t] < x:
            t += 1
        return t
    lo, hi = 0, sz
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[s0 + mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo
