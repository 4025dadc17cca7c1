"""Exact non-dominated sorting: every row's Pareto layer, maximising every objective.

Layer 1 holds the rows no other row dominates; layer k+1 the rows dominated only by rows of
layers <= k. Row q dominates p when q >= p in every objective and q != p, so equal rows share a
layer. M = 1..3 share one sweep:

1. Sort rows lexicographically descending (rowsort.py: an LSD radix sort of packed keys, about
   4x faster than ``np.argsort`` on one column). Every dominator of a row now comes before it
   and equal rows are adjacent (an equal row simply copies its predecessor's layer).
2. Layers are nested: if a row is dominated by some row of layer L, it is dominated by some row
   of every layer before L. So a row's layer is the first layer that does not dominate it, found
   by binary search over the layers, with one "does layer L dominate p?" query per step.

The query is what differs with M. Objective 1 is already settled by the sort order, so only
objectives 2..M matter:

- M = 2: a layer dominates p iff its largest f2 so far is >= p.f2 -- one number per layer,
  O(n log n) in all (sort, then binary search over the per-layer running best). The searches
  of 16 rows run side by side on one snapshot and are then fixed up in order (see _layers_2d).
- M = 3: each layer keeps the 2-D staircase (Pareto front) of its (f2, f3) values, sorted by f2;
  the query is one search on it, an insert replaces the staircase points it covers (sweep3.py:
  gapped arrays, a weighted layer search tree). O(n log^2 n). When a sample shows few, huge
  layers, the staircases are split into buckets of f2 instead (buckets3.py), which makes the
  query about one load.
- M >= 4: each layer keeps its rows, projected to objectives 2..M, in a bucket k-d tree that
  answers the query by orthant search, and a row that joins a layer drops the rows it covers
  there (ndtree.py). When a sample shows few, huge layers (rows near a plane), the search over
  the layers starts at layer 1, and up to _SLAB_MAX_ROWS rows the slab sweep (slab.py) runs
  first: a dominator of a row must then be close by. The Jensen/Fortin/Buzdalov divide and
  conquer below, O(n log^(M-1) n) on deduplicated integer ranks, was the M >= 4 kernel before
  (n = 1e6, M = 4, best of 2 in one process on the shared machine: uniform 20.8 s vs 3.9 s,
  tied 5.5 vs 3.2, anti 18.8 vs 2.4); it stays as the sample's layer count in _few_layers and
  as a second exact implementation for the tests.

Memory is O(n) in every path (a few arrays of length n; the staircases share one arena).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from paretohqd.stages.kit.pareto.buckets3 import bucket_count, layers_3d_bucketed
from paretohqd.stages.kit.pareto.engine import NonFiniteScoreError
from paretohqd.stages.kit.pareto.ndtree import ndtree_layers
from paretohqd.stages.kit.pareto.rowsort import sort_rows_desc
from paretohqd.stages.kit.pareto.slab import slab_layers
from paretohqd.stages.kit.pareto.sweep3 import layers_3d


def nondominated_layers(
    scores: np.ndarray, *, maximize: bool | Sequence[bool] = True
) -> np.ndarray:
    """Pareto layer of every row (1 = non-dominated), as int32.

    Parameters
    ----------
    scores
        ``(n, M)`` array of objective values, ``M >= 1``.
    maximize
        Whether larger is better, for all objectives or per column.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int32 layer numbers, contiguous from 1; equal rows share a layer. With
        ``M == 1`` this is the dense rank, best first.

    Raises
    ------
    NonFiniteScoreError
        If a value is NaN or infinite (``.row``/``.column`` locate the first one, so the
        caller can name the sample).
    ValueError
        If ``scores`` is not 2-D or ``maximize`` has the wrong length.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n, M) array, got shape {x.shape}")
    n, m = x.shape
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    if m == 0:
        raise ValueError("scores has no objective columns")
    bad = _first_nonfinite(np.ascontiguousarray(x))
    if bad >= 0:
        row, col = divmod(bad, m)
        raise NonFiniteScoreError(int(row), int(col), float(x[row, col]))
    if isinstance(maximize, bool):
        flags = [maximize] * m
    else:
        flags = [bool(f) for f in maximize]
        if len(flags) != m:
            raise ValueError(f"maximize has {len(flags)} flags for {m} objectives")
    # Flip minimised columns so every kernel maximises; + 0.0 turns -0.0 into 0.0.
    y = x if all(flags) else x * np.where(flags, 1.0, -1.0) + 0.0
    y = np.ascontiguousarray(y)
    if m >= 4:
        few = _few_layers(y)
        if few and n <= _SLAB_MAX_ROWS:
            layers = slab_layers(y, budget=_SLAB_CHECKS_PER_ROW * n)
            if layers is not None:
                return layers
        return ndtree_layers(y, from_front=few)
    # Rows in lexicographically descending order: every dominator of a row comes before it and
    # equal rows are adjacent. The kernels then read memory in order.
    order, ys = sort_rows_desc(y)
    # Kernels fill layers in sorted order (writing through ``order`` inside the sweep stalls it
    # on cache-missing stores: 3x slower at M = 2, n = 1e7); one scatter pass puts them back.
    layer_sorted = np.empty(n, dtype=np.int32)
    if m == 1:
        _layers_1d(ys, layer_sorted)
    elif m == 2:
        _layers_2d(ys, layer_sorted)
    elif not (
        n >= _BUCKETED_MIN_ROWS
        and _few_layers(y)
        and layers_3d_bucketed(ys, layer_sorted, bucket_count(n), _BUCKETED_MAX_LAYERS)
    ):
        layers_3d(ys, layer_sorted)
    out = np.empty(n, dtype=np.int32)
    _scatter(layer_sorted, order, out)
    return out


@njit(cache=True)
def _scatter(  # pragma: no cover - compiled
    values: np.ndarray, order: np.ndarray, out: np.ndarray
) -> None:
    for i in range(values.shape[0]):
        out[order[i]] = values[i]


def _few_layers(y: np.ndarray) -> bool:
    """Whether a random 1,000-row sample has at most 2 layers: near-plane data, whose layers
    are few and huge (M = 3: 9 layers for 1e6 rows; the sample of uniform or tied data has 19
    to 24). M = 3 then uses the bucketed kernel, M >= 4 the slab sweep or the k-d tree sweep
    searching from layer 1 (at n = 1e6, M = 4, 97% of the anti-correlated rows are in layer 1:
    one query each instead of three). The anti-correlated benchmark shapes are the ones whose
    sample has 1 layer (the others: 11 or more). The sample costs about 1 ms.
    """
    n = y.shape[0]
    sample = y
    if n > _SAMPLE_ROWS:
        rows = np.random.default_rng(0).choice(n, _SAMPLE_ROWS, replace=False)
        sample = y[np.sort(rows)]
    return int(_layers_divide_conquer(sample).max()) <= 2


_SAMPLE_ROWS = 1000
# M = 3 data whose sample has few layers goes to the bucketed kernel (buckets3.py), which gives
# up past this many layers (then the general kernel runs); below this many rows the general
# kernel is fast enough that sampling is not worth it.
_BUCKETED_MAX_LAYERS = 32
_BUCKETED_MIN_ROWS = 20_000
# M >= 4 data whose sample has few layers goes to slab.py first, up to this many rows, which
# gives up (then ndtree.py runs) after this many dominance checks per row. The slab's checks
# per row grow with n; the k-d trees' work does not much. Measured on the anti-correlated
# shape (best of 2-3, one process, the 2-core machine shared with other work): M = 4, n = 1e5
# slab 0.135 s vs k-d trees 0.166 s; 3e5: 0.53 vs 0.57; 1e6: 5.6 vs 3.0. M = 5, 3e5: 1.13 vs
# 1.33.
_SLAB_MAX_ROWS = 500_000
_SLAB_CHECKS_PER_ROW = 256


@njit(cache=True)
def _layers_1d(ys: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    layer = 1
    for i in range(ys.shape[0]):
        if i > 0 and ys[i, 0] != ys[i - 1, 0]:
            layer += 1
        out[i] = layer


_BATCH = 16  # M = 2 binary searches run side by side


@njit(cache=True)
def _layers_2d(ys: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """M = 2 sweep over rows sorted lexicographically descending.

    ``best[L]`` is the largest f2 in layer L + 1 so far (non-increasing in L); a row joins the
    first layer whose best is below its f2. One binary search per row is a chain of dependent
    loads, so rows go in batches: all of a batch search the same snapshot of ``best`` side by
    side (the CPU overlaps the chains), then are placed in order. Placing a row only raises one
    ``best`` entry, so a later row's snapshot answer can only move right, past entries that
    this batch raised: a short forward scan fixes it.
    """
    n = ys.shape[0]
    best = np.empty(1024, dtype=np.float64)  # grows with the number of layers
    base = np.empty(_BATCH, dtype=np.int64)
    count = 0
    for i0 in range(0, n, _BATCH):
        nb = min(_BATCH, n - i0)
        for b in range(nb):
            base[b] = 0
        width = count
        while width > 1:
            half = width >> 1
            for b in range(nb):
                probe = base[b] + half
                base[b] = probe if best[probe] >= ys[i0 + b, 1] else base[b]
            width -= half
        for b in range(nb):
            i = i0 + b
            v = ys[i, 1]
            if i > 0 and v == ys[i - 1, 1] and ys[i, 0] == ys[i - 1, 0]:
                out[i] = out[i - 1]  # an equal row shares the layer
                continue
            lay = base[b]
            while lay < count and best[lay] >= v:
                lay += 1
            if lay == best.shape[0]:
                grown = np.empty(2 * lay, dtype=np.float64)
                grown[:lay] = best
                best = grown
            best[lay] = v
            if lay == count:
                count += 1
            out[i] = lay + 1


@njit(cache=True)
def _first_nonfinite(y: np.ndarray) -> int:  # pragma: no cover - compiled
    flat = y.ravel()
    for i in range(flat.shape[0]):
        if not np.isfinite(flat[i]):
            return i
    return -1


# --- Jensen / Fortin / Buzdalov divide and conquer, for M >= 3 --------------------------------
#
# Works on integer coordinates where smaller is better (dense ranks of the negated scores), on
# unique rows sorted lexicographically ascending, so a row can only be dominated by rows with a
# smaller index and any two rows are distinct. Objectives are numbered 0..M-1. ``rank`` holds the
# 0-based layer found so far; a dominator l of h raises it to rank[l] + 1.
#
# _dc_a(S, k): rows of S are equal in objectives > k; settle dominance inside S on 0..k.
# _dc_b(L, H, k): every l in L is <= every h in H in objectives > k and rank[L] is final;
#                 raise rank[H] from L, comparing objectives 0..k.
# Both split at the median of objective k; at k = 1 a sweep with a prefix-maximum Fenwick tree
# over objective 1 finishes the job. O(n log^(M-1) n) time, O(n) memory per recursion level.

_BRUTE_A = 32
_BRUTE_B = 16384


@njit(cache=True, inline="always")
def _le_upto(c: np.ndarray, i: int, j: int, k: int) -> bool:  # pragma: no cover - compiled
    for d in range(k + 1):  # noqa: SIM110 - an explicit loop compiles to the tight code we want
        if c[i, d] > c[j, d]:
            return False
    return True


@njit(cache=True)
def _fen_query(fen: np.ndarray, pos: int) -> int:  # pragma: no cover - compiled
    best = -1
    p = pos + 1
    while p > 0:
        if fen[p] > best:
            best = fen[p]
        p -= p & -p
    return best


@njit(cache=True)
def _fen_update(fen: np.ndarray, pos: int, value: int) -> None:  # pragma: no cover - compiled
    p = pos + 1
    n = fen.shape[0]
    while p < n:
        if fen[p] < value:
            fen[p] = value
        p += p & -p


@njit(cache=True)
def _fen_clear(fen: np.ndarray, pos: int) -> None:  # pragma: no cover - compiled
    p = pos + 1
    n = fen.shape[0]
    while p < n and fen[p] != -1:
        fen[p] = -1
        p += p & -p


@njit(cache=True)
def _sweep_a(
    c: np.ndarray, rank: np.ndarray, fen: np.ndarray, s: np.ndarray
) -> None:  # pragma: no cover - compiled
    for t in range(s.shape[0]):
        i = s[t]
        r = _fen_query(fen, c[i, 1])
        if r + 1 > rank[i]:
            rank[i] = r + 1
        _fen_update(fen, c[i, 1], rank[i])
    for t in range(s.shape[0]):
        _fen_clear(fen, c[s[t], 1])


@njit(cache=True)
def _sweep_b(  # pragma: no cover - compiled
    c: np.ndarray, rank: np.ndarray, fen: np.ndarray, lo_set: np.ndarray, hi_set: np.ndarray
) -> None:
    p = 0
    nl = lo_set.shape[0]
    for t in range(hi_set.shape[0]):
        h = hi_set[t]
        while p < nl and lo_set[p] < h:
            _fen_update(fen, c[lo_set[p], 1], rank[lo_set[p]])
            p += 1
        r = _fen_query(fen, c[h, 1])
        if r + 1 > rank[h]:
            rank[h] = r + 1
    for t in range(p):
        _fen_clear(fen, c[lo_set[t], 1])


@njit(cache=True)
def _split3(  # pragma: no cover - compiled
    c: np.ndarray, s: np.ndarray, k: int, med: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable split of ``s`` into objective-k values < med, == med, > med."""
    n_lt = 0
    n_eq = 0
    for t in range(s.shape[0]):
        v = c[s[t], k]
        if v < med:
            n_lt += 1
        elif v == med:
            n_eq += 1
    lt = np.empty(n_lt, dtype=np.int64)
    eq = np.empty(n_eq, dtype=np.int64)
    gt = np.empty(s.shape[0] - n_lt - n_eq, dtype=np.int64)
    a = b = g = 0
    for t in range(s.shape[0]):
        i = s[t]
        v = c[i, k]
        if v < med:
            lt[a] = i
            a += 1
        elif v == med:
            eq[b] = i
            b += 1
        else:
            gt[g] = i
            g += 1
    return lt, eq, gt


@njit(cache=True)
def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    out = np.empty(a.shape[0] + b.shape[0], dtype=np.int64)
    i = j = t = 0
    while i < a.shape[0] and j < b.shape[0]:
        if a[i] < b[j]:
            out[t] = a[i]
            i += 1
        else:
            out[t] = b[j]
            j += 1
        t += 1
    while i < a.shape[0]:
        out[t] = a[i]
        i += 1
        t += 1
    while j < b.shape[0]:
        out[t] = b[j]
        j += 1
        t += 1
    return out


@njit(cache=True)
def _median_of(c: np.ndarray, s: np.ndarray, k: int) -> int:  # pragma: no cover - compiled
    # Median of at most 255 evenly spaced rows: splits stay balanced in practice, and large
    # sets no longer pay a full copy and partition per split.
    count = s.shape[0]
    take = min(count, 255)
    vals = np.empty(take, dtype=np.int64)
    for t in range(take):
        vals[t] = c[s[(t * count) // take], k]
    return np.partition(vals, take // 2)[take // 2]


@njit(cache=True)
def _dc_a(  # pragma: no cover - compiled
    c: np.ndarray, rank: np.ndarray, fen: np.ndarray, s: np.ndarray, k: int
) -> None:
    n = s.shape[0]
    if n < 2:
        return
    if n <= _BRUTE_A:
        for b in range(1, n):
            j = s[b]
            for a in range(b):
                i = s[a]
                if rank[i] >= rank[j] and _le_upto(c, i, j, k):
                    rank[j] = rank[i] + 1
        return
    if k == 1:
        _sweep_a(c, rank, fen, s)
        return
    med = _median_of(c, s, k)
    lt, eq, gt = _split3(c, s, k, med)
    if lt.shape[0] == 0 and gt.shape[0] == 0:
        _dc_a(c, rank, fen, s, k - 1)
        return
    _dc_a(c, rank, fen, lt, k)
    _dc_b(c, rank, fen, lt, eq, k - 1)
    _dc_a(c, rank, fen, eq, k - 1)
    _dc_b(c, rank, fen, _merge(lt, eq), gt, k - 1)
    _dc_a(c, rank, fen, gt, k)


@njit(cache=True)
def _dc_b(  # pragma: no cover - compiled
    c: np.ndarray, rank: np.ndarray, fen: np.ndarray, lo_set: np.ndarray, hi_set: np.ndarray, k: int
) -> None:
    nl = lo_set.shape[0]
    nh = hi_set.shape[0]
    if nl == 0 or nh == 0:
        return
    if nl * nh <= _BRUTE_B or nl == 1 or nh == 1:
        for b in range(nh):
            j = hi_set[b]
            for a in range(nl):
                i = lo_set[a]
                if i > j:
                    break
                if rank[i] >= rank[j] and _le_upto(c, i, j, k):
                    rank[j] = rank[i] + 1
        return
    if k == 1:
        _sweep_b(c, rank, fen, lo_set, hi_set)
        return
    min_l = max_l = c[lo_set[0], k]
    for t in range(1, nl):
        v = c[lo_set[t], k]
        min_l = min(min_l, v)
        max_l = max(max_l, v)
    min_h = max_h = c[hi_set[0], k]
    for t in range(1, nh):
        v = c[hi_set[t], k]
        min_h = min(min_h, v)
        max_h = max(max_h, v)
    if max_l <= min_h:
        _dc_b(c, rank, fen, lo_set, hi_set, k - 1)
        return
    if min_l > max_h:
        return
    med = _median_of(c, _merge(lo_set, hi_set), k)
    l_lt, l_eq, l_gt = _split3(c, lo_set, k, med)
    h_lt, h_eq, h_gt = _split3(c, hi_set, k, med)
    _dc_b(c, rank, fen, l_lt, h_lt, k)
    _dc_b(c, rank, fen, _merge(l_lt, l_eq), _merge(h_eq, h_gt), k - 1)
    _dc_b(c, rank, fen, l_gt, h_gt, k)


def _layers_divide_conquer(y: np.ndarray) -> np.ndarray:
    """Exact layers for any M >= 2 by the divide and conquer: dedupe, dense integer ranks."""
    n, m = y.shape
    order, ys = sort_rows_desc(y)  # lexicographically descending = ascending in rank space
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(ys[1:] != ys[:-1], axis=1)
    group = np.cumsum(new) - 1
    unique_rows = ys[new]
    c = np.empty(unique_rows.shape, dtype=np.int64)
    for d in range(m):  # rank 0 = largest value, so smaller is better from here on
        c[:, d] = _dense_rank_desc(unique_rows[:, d])
    rank = _layers_dc(c)
    out = np.empty(n, dtype=np.int32)
    out[order] = rank[group] + 1
    return out


def _dense_rank_desc(values: np.ndarray) -> np.ndarray:
    """Dense ranks, 0 for the largest value (the radix row sort on one column, then a scan)."""
    order, sorted_values = sort_rows_desc(values.reshape(-1, 1))
    step = np.empty(values.shape[0], dtype=np.int64)
    step[0] = 0
    step[1:] = sorted_values[1:, 0] != sorted_values[:-1, 0]
    ranks = np.empty(values.shape[0], dtype=np.int64)
    ranks[order] = np.cumsum(step)
    return ranks


@njit(cache=True)
def _layers_dc(c: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """0-based layers of unique, lexicographically ascending integer rows (smaller is better)."""
    n = c.shape[0]
    rank = np.zeros(n, dtype=np.int64)
    fen = np.full(int(c[:, 1].max()) + 2, -1, dtype=np.int64)
    _dc_a(c, rank, fen, np.arange(n), c.shape[1] - 1)
    return rank
