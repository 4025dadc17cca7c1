"""M = 3 layer sweep: one gapped 2-D staircase per layer.

Rows arrive sorted lexicographically descending (rowsort.py), so objective 1 is settled and
each layer only has to answer "does some row of mine have f2 >= a and f3 >= b?". A layer keeps
the staircase of its (f2, f3) values -- the 2-D Pareto front, f2 ascending and f3 descending --
so the query is one search (9-ary on large staircases, see _first_ge): the first point with
f2 >= a dominates the row iff its f3 >= b. A row's layer is the first layer that does not
dominate it (layers are nested), found by a search over the layers whose splits are weighted
by the rows each layer has taken (see build_tree); the insert reuses that search's last probe.

Inserting a point removes the points it covers and puts it in their place. A plain sorted array
makes that a shift of half the staircase on average, which dominated the run time when layers
are huge (the anti-correlated shape: 9 layers for 1e6 rows, staircases of about 500 points).
So the arrays keep *gaps*: a gap is a slot holding a copy of its left neighbour, which is
invisible to both binary searches. Covered points become gaps instead of being squeezed out; a
plain insertion shifts only up to the nearest gap (within ``_REACH`` slots), and when there is
none nearby the layer is re-laid out with a gap after every point. All layers share one arena;
a layer that outgrows its slot range moves to the arena's end with twice the room, so memory
stays O(n).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_REACH = 16  # how far an insertion looks for a gap before re-spreading the layer
_FIRST_CAP = 8
_KARY_MIN = 256  # measured: below this many slots the binary search is faster
REFRESH = 1024  # rows between rebuilds of the weighted layer search tree


@njit(cache=True)
def layers_3d(ys: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """1-based layers of rows sorted lexicographically descending (M = 3), into ``out``."""
    n = ys.shape[0]
    arena_a = np.empty(max(64, n), dtype=np.float64)
    arena_b = np.empty(max(64, n), dtype=np.float64)
    used = 0
    start = np.empty(n + 1, dtype=np.int64)
    cap = np.empty(n + 1, dtype=np.int64)
    size = np.zeros(n + 1, dtype=np.int64)
    count = 0
    # Search tree over the layers, weighted by how many rows each has taken (see build_tree).
    rows_in, tmid, tleft, tright = layer_tree(n + 1)
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
        lo, hi = 0, count
        node = tree_root
        j_hi = 0  # first f2 >= a in layer hi, from the probe that set hi
        while lo < hi:
            mid = tmid[node] if node >= 0 else (lo + hi) >> 1
            s0, sz = start[mid], size[mid]
            j = _first_ge(arena_a, s0, sz, a)
            if j < sz and arena_b[s0 + j] >= b:
                lo = mid + 1
                node = tright[node] if node >= 0 else -1
            else:
                hi = mid
                j_hi = j
                node = tleft[node] if node >= 0 else -1
        lay = lo
        out[i] = lay + 1
        rows_in[lay] += 1
        if lay == count:
            count += 1
            if used + _FIRST_CAP > arena_a.shape[0]:
                arena_a = grow(arena_a, used + _FIRST_CAP)
                arena_b = grow(arena_b, used + _FIRST_CAP)
            start[lay], cap[lay], size[lay] = used, _FIRST_CAP, 0
            used += _FIRST_CAP
        # The layer's last probe already found the first slot with f2 >= a: step over a slot
        # with f2 == a to get k, then walk back over the (few) covered slots to get j.
        s0, sz = start[lay], size[lay]
        k = j_hi if sz > 0 else 0  # a new layer is empty
        while k < sz and arena_a[s0 + k] <= a:
            k += 1
        while True:
            s0, sz = start[lay], size[lay]
            j = k  # points with f2 <= a are [0, k); of those, [j, k) have f3 <= b
            while j > 0 and arena_b[s0 + j - 1] <= b:
                j -= 1
            if k > j:  # covered points (and their gaps) become the new point and its gaps
                for t in range(s0 + j, s0 + k):
                    arena_a[t] = a
                    arena_b[t] = b
                break
            if _insert_near_gap(arena_a, arena_b, s0, sz, j, a, b):
                break
            if sz - j <= _REACH and sz < cap[lay]:  # near the end: shift the short tail
                for t in range(s0 + sz, s0 + j, -1):
                    arena_a[t] = arena_a[t - 1]
                    arena_b[t] = arena_b[t - 1]
                arena_a[s0 + j] = a
                arena_b[s0 + j] = b
                size[lay] = sz + 1
                break
            # No gap nearby: lay the layer out again with a gap after every point (moving it to
            # the arena's end if that does not fit).
            real = _compact(arena_a, arena_b, s0, sz)
            need = 2 * real + 2
            dst = s0
            if need > cap[lay]:
                new_cap = max(2 * cap[lay], need)
                if used + new_cap > arena_a.shape[0]:
                    arena_a = grow(arena_a, used + new_cap)
                    arena_b = grow(arena_b, used + new_cap)
                dst = used
                start[lay], cap[lay] = used, new_cap
                used += new_cap
            size[lay] = _spread(arena_a, arena_b, s0, real, dst)
            k = _first_gt(arena_a, start[lay], size[lay], a)  # slots moved: search again


@njit(cache=True, inline="always")
def same_as_previous(ys: np.ndarray, i: int) -> bool:  # pragma: no cover - compiled
    """Row i equals row i - 1 (rows are sorted, so equal rows are adjacent)."""
    return (
        i > 0
        and ys[i, 0] == ys[i - 1, 0]
        and ys[i, 1] == ys[i - 1, 1]
        and (ys[i, 2] == ys[i - 1, 2])
    )


@njit(cache=True)
def layer_tree(  # pragma: no cover - compiled
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows per layer and the arrays of build_tree's search tree, for up to ``size`` layers."""
    rows_in = np.zeros(size, dtype=np.int64)
    tmid = np.empty(size, dtype=np.int64)
    tleft = np.empty(size, dtype=np.int64)
    tright = np.empty(size, dtype=np.int64)
    return rows_in, tmid, tleft, tright


@njit(cache=True)
def build_tree(  # pragma: no cover - compiled
    rows_in: np.ndarray, count: int, tmid: np.ndarray, tleft: np.ndarray, tright: np.ndarray
) -> None:
    """Layer search tree that splits each range at its weighted median (node 0 is the root).

    Any split inside the current range keeps the layer search exact, so the choice is only
    about speed: with a few huge layers (the anti-correlated shape: 9 layers, two thirds of the
    rows in the first two) splitting by the rows seen so far needs about 2.4 staircase probes
    per row instead of 3.4 for the plain midpoint. Every layer weighs at least 1, so new, small
    layers still split evenly. Layers made after a rebuild are searched by plain bisection.
    """
    if count == 0:
        return
    cum = np.empty(count + 1, dtype=np.int64)
    cum[0] = 0
    for t in range(count):
        cum[t + 1] = cum[t] + rows_in[t] + 1
    # stack of (node, lo, hi) ranges still to split
    stack = np.empty((count, 3), dtype=np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, 0, count
    depth = 1
    nodes = 1
    while depth > 0:
        depth -= 1
        node, lo, hi = stack[depth, 0], stack[depth, 1], stack[depth, 2]
        half = (cum[lo] + cum[hi]) // 2
        # first m in [lo, hi) whose layer reaches past half the range's weight
        m_lo, m_hi = lo, hi - 1
        while m_lo < m_hi:
            m = (m_lo + m_hi) >> 1
            if cum[m + 1] <= half:
                m_lo = m + 1
            else:
                m_hi = m
        mid = m_lo
        tmid[node] = mid
        tleft[node] = -1
        tright[node] = -1
        if mid > lo:
            tleft[node] = nodes
            stack[depth, 0], stack[depth, 1], stack[depth, 2] = nodes, lo, mid
            depth += 1
            nodes += 1
        if hi > mid + 1:
            tright[node] = nodes
            stack[depth, 0], stack[depth, 1], stack[depth, 2] = nodes, mid + 1, hi
            depth += 1
            nodes += 1


@njit(cache=True, inline="always")
def _first_ge(arr: np.ndarray, s0: int, sz: int, x: float) -> int:  # pragma: no cover
    """First offset in [0, sz) with arr >= x (arr non-decreasing), else sz.

    A 9-ary search: each round compares x with 8 evenly spaced slots, whose loads are
    independent, so the CPU issues them together; a binary search would wait for each load in
    turn (11 dependent loads for a 1200-slot staircase, against 3 rounds here).
    """
    if sz < _KARY_MIN:  # small staircases (tied data): a branchless binary search
        if sz == 0:
            return 0
        base = 0
        width = sz
        while width > 1:
            half = width >> 1
            base = base + half if arr[s0 + base + half] < x else base
            width -= half
        return base + 1 if arr[s0 + base] < x else base
    lo = s0
    n = sz
    while n > 8:
        step = n // 9
        c = 0
        for t in range(1, 9):
            c += arr[lo + step * t - 1] < x
        if c < 8:
            lo += step * c
            n = step - 1
        else:
            lo += 8 * step
            n -= 8 * step
    c = 0
    for t in range(n):
        c += arr[lo + t] < x
    return lo + c - s0


@njit(cache=True, inline="always")
def _first_gt(arr: np.ndarray, s0: int, sz: int, x: float) -> int:  # pragma: no cover
    # First offset in [0, sz) with arr > x (arr non-decreasing), else sz.
    if sz == 0:
        return 0
    base = 0
    width = sz
    while width > 1:
        half = width >> 1
        base = base + half if arr[s0 + base + half] <= x else base
        width -= half
    return base + 1 if arr[s0 + base] <= x else base


@njit(cache=True, inline="always")
def _is_gap(arena_a: np.ndarray, arena_b: np.ndarray, t: int) -> bool:  # pragma: no cover
    # Distinct staircase points differ in both coordinates, so equal neighbours mean a gap.
    return arena_a[t] == arena_a[t - 1] and arena_b[t] == arena_b[t - 1]


@njit(cache=True)
def _insert_near_gap(  # pragma: no cover - compiled
    arena_a: np.ndarray, arena_b: np.ndarray, s0: int, sz: int, j: int, a: float, b: float
) -> bool:
    """Put (a, b) before offset ``j`` using the nearest gap within ``_REACH``; False if none.

    A gap right of j: shift [j, gap) one slot right. A gap left of j: shift (gap, j) one slot
    left and use slot j - 1. Either way the order is kept and the gap's copy disappears.
    """
    for d in range(1, _REACH + 1):
        t = j + d
        if t < sz and _is_gap(arena_a, arena_b, s0 + t):
            for u in range(s0 + t, s0 + j, -1):
                arena_a[u] = arena_a[u - 1]
                arena_b[u] = arena_b[u - 1]
            arena_a[s0 + j] = a
            arena_b[s0 + j] = b
            return True
        t = j - d
        if t >= 1 and _is_gap(arena_a, arena_b, s0 + t):
            for u in range(s0 + t, s0 + j - 1):
                arena_a[u] = arena_a[u + 1]
                arena_b[u] = arena_b[u + 1]
            arena_a[s0 + j - 1] = a
            arena_b[s0 + j - 1] = b
            return True
    return False


@njit(cache=True)
def _compact(  # pragma: no cover - compiled
    arena_a: np.ndarray, arena_b: np.ndarray, s0: int, sz: int
) -> int:
    """Drop the gaps of [s0, s0 + sz), keeping the points in order at s0; returns their count."""
    w = s0
    for t in range(s0, s0 + sz):
        if t > s0 and _is_gap(arena_a, arena_b, t):
            continue
        arena_a[w] = arena_a[t]
        arena_b[w] = arena_b[t]
        w += 1
    return w - s0


@njit(cache=True)
def _spread(  # pragma: no cover - compiled
    arena_a: np.ndarray, arena_b: np.ndarray, src: int, count: int, dst: int
) -> int:
    """Copy ``count`` points from ``src`` to ``dst`` >= src, each followed by a gap.

    From the back, so ``dst == src`` (in place, capacity >= 2 * count) overwrites nothing before
    it is read. Returns the new size.
    """
    for r in range(count - 1, -1, -1):
        arena_a[dst + 2 * r + 1] = arena_a[src + r]
        arena_b[dst + 2 * r + 1] = arena_b[src + r]
        arena_a[dst + 2 * r] = arena_a[src + r]
        arena_b[dst + 2 * r] = arena_b[src + r]
    return 2 * count


@njit(cache=True)
def grow(arr: np.ndarray, need: int) -> np.ndarray:  # pragma: no cover - compiled
    new = np.empty(max(need, 2 * arr.shape[0]), dtype=arr.dtype)
    new[: arr.shape[0]] = arr
    return new
