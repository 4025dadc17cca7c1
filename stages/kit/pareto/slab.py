"""Layers for rows that lie in a thin slab around a plane sum(z) = const (any M).

Anti-correlated objectives put the rows near such a plane, with a few, huge layers. There a
dominator is always close by: with every objective min-max scaled to z in [0, 1] and
S = sum(z), a row q that dominates p has z_i(q) - z_i(p) <= S(q) - S(p) for every i, because
the other differences are >= 0 too. So q lies in the box [z(p), z(p) + S_max - S(p)], which
is tiny when the slab is thin, and q comes before p when rows are sorted by S descending (ties
by the rows themselves, lexicographically, so a dominator with the same rounded S still comes
first).

Rows are sorted that way and put in a grid over (z_1, z_2, z_3) (two of them at M = 2) with
about four cells across the slab's thickness; each row's layer is 1 + the largest layer among
the earlier rows of the cells its box touches that really dominate it (checked exactly on the
original values). The result is
exact for any input; only the work depends on the slab. It stops and returns None once the
dominance checks pass ``budget`` (thick slabs, where the k-d tree sweep of ndtree.py is the
better choice). Its checks per row grow with n, so above nds._SLAB_MAX_ROWS rows the k-d tree
sweep runs instead (n = 1e6, M = 4: 5.6 s against 3.0 s, the machine shared).

Measured on the anti-correlated benchmark shape (best of 2): n = 1e5, M = 4: 0.07 s against
0.23 s for moocore.pareto_rank and 0.27 s for our divide and conquer; M = 5: 0.11 s against
0.55 s; n = 1e6, M = 4: 3.2 s against 4.4 s. (At M = 3 the bucketed sweep is far faster.)
"""

from __future__ import annotations

import numpy as np
from numba import njit

from paretohqd.stages.kit.pareto.rowsort import sort_rows_desc

_CELLS_PER_ROW = 4  # the grid has at most this many cells per row (memory stays O(n))
_CELLS_PER_SLAB = 4  # cells across the slab thickness: finer cells, fewer needless checks


def slab_layers(y: np.ndarray, budget: int) -> np.ndarray | None:
    """1-based layers (maximising) of finite ``y`` (n, M >= 2), or None past ``budget`` checks."""
    n, m = y.shape
    lo = y.min(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        span = y.max(axis=0) - lo
        span[span == 0] = 1.0  # a constant objective: z = 0 everywhere
        z = (y - lo) / span
        total = z.sum(axis=1)
    if not np.isfinite(total).all():  # a range that overflows a float: no thin slab to use
        return None
    keyed = np.empty((n, m + 1), dtype=np.float64)
    keyed[:, 0] = total
    keyed[:, 1:] = y
    order, rows = sort_rows_desc(keyed)
    zs = z[order]
    s_sorted = rows[:, 0]
    # Rounding in z and S: widen every box by a margin well above the float error of a sum.
    margin = 8 * m * np.finfo(np.float64).eps * max(1.0, float(np.abs(total).max()))
    thickness = float(s_sorted[0] - s_sorted[-1]) + margin
    grid_dims = min(m, 3)
    most = max(1, int((_CELLS_PER_ROW * n) ** (1.0 / grid_dims)))
    cells = int(min(most, max(1, np.ceil(_CELLS_PER_SLAB / thickness))))
    grid_z = np.zeros((n, 3), dtype=np.float64)  # a missing third grid axis stays at 0
    grid_z[:, :grid_dims] = zs[:, :grid_dims]
    layer_sorted = np.zeros(n, dtype=np.int32)
    done = _slab_sweep(
        np.ascontiguousarray(rows[:, 1:]),
        grid_z,
        s_sorted.copy(),
        margin,
        cells,
        cells if grid_dims == 3 else 1,
        budget,
        layer_sorted,
    )
    if not done:
        return None
    out = np.empty(n, dtype=np.int32)
    out[order] = layer_sorted
    return out


@njit(cache=True)
def _slab_sweep(  # pragma: no cover - compiled
    ys: np.ndarray,
    zs: np.ndarray,
    s: np.ndarray,
    margin: float,
    cells: int,
    cells_z: int,
    budget: int,
    out: np.ndarray,
) -> bool:
    n, m = ys.shape
    n_cells = cells * cells * cells_z
    # Rows grouped by grid cell, in sweep order within a cell (a counting sort), and copied
    # there, so scanning a cell reads memory in order.
    cell = np.empty(n, dtype=np.int64)
    start = np.zeros(n_cells + 1, dtype=np.int64)
    for t in range(n):
        cx = min(int(zs[t, 0] * cells), cells - 1)
        cy = min(int(zs[t, 1] * cells), cells - 1)
        cz = min(int(zs[t, 2] * cells_z), cells_z - 1)
        cell[t] = (cx * cells + cy) * cells_z + cz
        start[cell[t] + 1] += 1
    for c in range(n_cells):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    slot = np.empty(n, dtype=np.int64)  # row t sits at slot[t] of the cell order
    cell_t = np.empty(n, dtype=np.int64)
    cell_rows = np.empty_like(ys)
    cell_layer = np.zeros(n, dtype=np.int32)
    for t in range(n):
        u = fill[cell[t]]
        fill[cell[t]] += 1
        slot[t] = u
        cell_t[u] = t
        for d in range(m):
            cell_rows[u, d] = ys[t, d]
    s_max = s[0]
    checks = 0
    for t in range(n):
        reach = s_max - s[t] + margin  # no dominator is further than this in any z
        cx0 = min(int(zs[t, 0] * cells), cells - 1)
        cx1 = min(int((zs[t, 0] + reach) * cells), cells - 1)
        cy0 = min(int(zs[t, 1] * cells), cells - 1)
        cy1 = min(int((zs[t, 1] + reach) * cells), cells - 1)
        cz0 = min(int(zs[t, 2] * cells_z), cells_z - 1)
        cz1 = min(int((zs[t, 2] + reach) * cells_z), cells_z - 1)
        best = 0
        for cx in range(cx0, cx1 + 1):
            for cy in range(cy0, cy1 + 1):
                for cz in range(cz0, cz1 + 1):
                    c = (cx * cells + cy) * cells_z + cz
                    for u in range(start[c], start[c + 1]):
                        if cell_t[u] >= t:  # later rows cannot dominate row t
                            break
                        checks += 1
                        if cell_layer[u] > best and _dominates(cell_rows, u, ys, t):
                            best = cell_layer[u]
        out[t] = best + 1
        cell_layer[slot[t]] = best + 1
        if checks > budget:
            return False
    return True


@njit(cache=True, inline="always")
def _dominates(  # pragma: no cover - compiled
    a: np.ndarray, i: int, b: np.ndarray, j: int
) -> bool:
    """Row i of a dominates row j of b (maximising)."""
    gt = False
    for d in range(a.shape[1]):
        if a[i, d] < b[j, d]:
            return False
        if a[i, d] > b[j, d]:
            gt = True
    return gt
