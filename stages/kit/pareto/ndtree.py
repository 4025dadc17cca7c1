"""Layers for M >= 4 objectives: a sweep with one dynamic k-d tree per layer (ENS-NDT style).

The M = 2 and M = 3 sweeps in nds.py generalise: rows go in lexicographically descending order
(every dominator of a row comes before it; equal rows are merged first), and a row's layer is
the first layer that does not dominate it, found by binary search because layers are nested.
Objective 1 is settled by the order, so "does layer L dominate p?" asks whether some row of L
is >= p in objectives 2..M: an orthant-emptiness query on the layer's rows projected to those
M - 1 objectives. Each layer keeps its projected rows in a bucket k-d tree (Gustavsson and
Syberfeldt's non-dominated tree, 2018): leaves of up to ``_LEAF_CAP`` rows, a leaf splits at
the median of its widest objective when it overflows, and every node keeps the exact bounding
box of its live rows. A query skips a node whose box maximum is below p in some objective,
answers yes at once for a box whose minimum is >= p everywhere, and otherwise descends (into
the lower child only when p lies below the split). Leaves store rows by objective and are
scanned without branches, a vector pass per objective, so a large leaf is cheap to scan and the
trees stay shallow: at n = 1e6, M = 4, 16-row leaves were 1.4x slower than 64, 128-row 1.1x.

Two things keep the trees small, as the staircases keep M = 3 small:

- A row that joins layer L removes the rows of L that it covers in objectives 2..M: every later
  row is <= it in objective 1, so whatever they dominated, it dominates too. A layer's tree then
  holds only the (M - 1)-D maxima of its rows -- a surface, not a volume (n = 1e6, M = 4,
  uniform: 82,000 live rows at the end; without the removals the sweep took 2.5x longer).
- Removals leave empty leaves behind, in splits made for rows long gone, so a tree is rebuilt,
  balanced, from its live rows once more rows went in since its last build than twice what it
  holds: O(log n) amortised per insert. Anti-correlated rows (near a plane: few, huge layers)
  need it most -- nearly every insert covers older rows, and 16,000 of 1e6 stay live -- and
  took 3.7x longer without it.

With few, huge layers (``from_front``) the layer search probes layers 1, 2, 4, ... first
instead of bisecting: a row of layer 1 then costs one query, not log2(#layers) (at n = 1e6,
M = 4, 97% of the anti-correlated rows are in layer 1). And while every layer before the probed
one is known to dominate p, the probe first removes the rows p covers there: a layer that
dominates p holds none, so a removal settles p's layer without the query (1.9 s -> 1.6 s on
that shape).

The answer is exact for any input; only the work depends on the data. Memory is O(n): the
pools hold 4n / ``_LEAF_CAP`` nodes and half as many leaves of ``_LEAF_CAP + 1`` rows (about
100 MB in all at n = 1e6, M = 4), and grow, by running the sweep again, only if it runs out.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from paretohqd.stages.kit.pareto.rowsort import sort_rows_desc

_LEAF_CAP = 64  # rows per leaf before it splits; a rebuild fills leaves to half of this
_SAMPLE = 31  # values sampled to pick a rebuild split (a near-median is balanced enough)


def ndtree_layers(y: np.ndarray, *, from_front: bool = False) -> np.ndarray:
    """1-based layers (maximising) of a finite, C-contiguous float64 ``(n, M >= 2)`` array.

    ``from_front`` searches the layers from layer 1 up instead of bisecting them: faster when
    most rows are in the first few layers (nds._few_layers), slower otherwise.
    """
    n = y.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    order, ys = sort_rows_desc(y)
    new = np.ones(n, dtype=bool)
    new[1:] = np.any(ys[1:] != ys[:-1], axis=1)
    group = np.cumsum(new) - 1
    points = np.ascontiguousarray(ys[new][:, 1:])
    nodes = _initial_nodes(points.shape[0])
    layer_unique = np.empty(points.shape[0], dtype=np.int32)
    while not _sweep(points, nodes, layer_unique, from_front):
        nodes *= 2
    out = np.empty(n, dtype=np.int32)
    out[order] = layer_unique[group]
    return out


def _initial_nodes(rows: int) -> int:
    """Node pool for ``rows`` unique rows: leaves a quarter full on average, which the
    benchmark shapes stay well within (a split leaves two halves; a rebuild fills leaves half).
    A sweep that runs out says so and runs again with twice the room."""
    return 4 * rows // _LEAF_CAP + 1024


# Node records. ``box[node]`` holds the box of the node's live rows (maxima in columns 0..d-1,
# minima in d..2d-1), then the split value, then the live row count, so the checks that prune a
# node read one record; ``link[node]`` holds the children, the parent and, for a leaf (left
# child -1), its slot in the leaf pool, else the split objective. Rows >= split go right.
_LEFT, _RIGHT, _PARENT, _AUX = 0, 1, 2, 3


@njit(cache=True)
def _sweep(  # pragma: no cover - compiled
    pts: np.ndarray, max_nodes: int, out: np.ndarray, from_front: bool
) -> bool:
    """Fill ``out`` with the 1-based layers of ``pts`` (unique rows, objectives 2..M, in
    lexicographically descending order of the full rows). False when the node pool runs out."""
    n, d = pts.shape
    box = np.empty((max_nodes, 2 * d + 2), dtype=np.float64)
    link = np.full((max_nodes, 4), -1, dtype=np.int64)
    max_leaves = max_nodes // 2 + 2
    lpts = np.empty(
        (max_leaves, d, _LEAF_CAP + 1), dtype=np.float64
    )  # by objective: scans vectorise
    lcnt = np.zeros(max_leaves, dtype=np.int64)
    free = np.empty((2, max_nodes), dtype=np.int64)  # free nodes, free leaf slots
    pool = np.zeros(4, dtype=np.int64)  # next fresh node, next fresh leaf, #free of each
    roots = np.empty(64, dtype=np.int64)
    inserted = np.zeros(64, dtype=np.int64)  # rows inserted into each tree since its build
    n_layers = 0
    stack = np.empty(16, dtype=np.int64)  # doubles when a search goes deeper
    mask = np.empty(_LEAF_CAP + 1, dtype=np.uint8)
    scratch = np.empty((n, d), dtype=np.float64)  # live rows of a tree being rebuilt
    cnt = 2 * d + 1
    for i in range(n):
        p = pts[i]
        first = 0
        last = n_layers
        covered = 0  # rows that p covers in layer ``swept``, already removed
        swept = -1
        if from_front:  # probe layers 1, 2, 4, 8, ... until one does not dominate p
            probe = 0
            while probe < n_layers:
                if probe == first:
                    # Every layer before this one dominates p, so if p covers a row here it
                    # joins this layer: a layer that dominates p holds no row p covers (the
                    # dominator would cover that row too, and the sweep never leaves a covered
                    # row live). Removing those rows first then often saves the query.
                    stack, covered = _remove_covered(
                        roots[probe], p, box, link, lpts, lcnt, stack, mask
                    )
                    swept = probe
                    if covered > 0:
                        break
                found, stack = _dominated(roots[probe], p, box, link, lpts, lcnt, stack, mask)
                if not found:
                    break
                first = probe + 1
                probe = 2 * probe + 1
            last = first if covered > 0 else min(probe, n_layers)
        while first < last:
            mid = (first + last) >> 1
            found, stack = _dominated(roots[mid], p, box, link, lpts, lcnt, stack, mask)
            if found:
                first = mid + 1
            else:
                last = mid
        lay = first
        out[i] = lay + 1
        if lay == n_layers:
            if n_layers == roots.shape[0]:
                roots = _grown(roots, n_layers)
                inserted = _grown(inserted, n_layers)
            node = _new_leaf(box, link, lcnt, pool, free)
            if node < 0:
                return False
            roots[n_layers] = node
            inserted[n_layers] = 0
            n_layers += 1
        elif swept != lay and box[roots[lay], cnt] > 0:
            stack, _ = _remove_covered(roots[lay], p, box, link, lpts, lcnt, stack, mask)
        if not _insert(roots[lay], p, box, link, lpts, lcnt, pool, free):
            return False
        inserted[lay] += 1
        if inserted[lay] > 2 * box[roots[lay], cnt] + 4 * _LEAF_CAP:
            root = _rebuild(roots[lay], scratch, box, link, lpts, lcnt, pool, free)
            if root < 0:
                return False
            roots[lay] = root
            inserted[lay] = 0
    return True


@njit(cache=True)
def _grown(a: np.ndarray, used: int) -> np.ndarray:  # pragma: no cover - compiled
    b = np.empty(2 * a.shape[0], dtype=a.dtype)
    b[:used] = a[:used]
    return b


@njit(cache=True)
def _dominated(  # pragma: no cover - compiled
    root: int,
    p: np.ndarray,
    box: np.ndarray,
    link: np.ndarray,
    lpts: np.ndarray,
    lcnt: np.ndarray,
    stack: np.ndarray,
    mask: np.ndarray,
) -> tuple[bool, np.ndarray]:
    """Whether some live row under ``root`` is >= p everywhere (and the stack, maybe grown).

    The upper child goes first: its rows are larger in the split objective, so more likely to
    dominate p, and a yes ends the search.
    """
    d = p.shape[0]
    stack[0] = root
    sp = 1
    while sp > 0:
        sp -= 1
        node = stack[sp]
        if box[node, 2 * d + 1] == 0:
            continue
        inside = True
        outside = False
        for k in range(d):
            if box[node, k] < p[k]:
                outside = True
                break
            if box[node, d + k] < p[k]:
                inside = False
        if outside:
            continue
        if inside:
            return True, stack
        if link[node, _LEFT] < 0:
            if _any_ge(lpts[link[node, _AUX]], lcnt[link[node, _AUX]], p, mask):
                return True, stack
        else:
            if sp + 2 > stack.shape[0]:
                stack = _grown(stack, sp)
            if p[link[node, _AUX]] < box[node, 2 * d]:
                stack[sp] = link[node, _LEFT]
                sp += 1
            stack[sp] = link[node, _RIGHT]
            sp += 1
    return False, stack


@njit(cache=True, inline="always")
def _any_ge(  # pragma: no cover - compiled
    rows: np.ndarray, size: int, p: np.ndarray, mask: np.ndarray
) -> bool:
    """Whether one of the first ``size`` rows of a leaf (stored by objective) is >= p
    everywhere. No early exit: one vector pass per objective beats a branch per value."""
    for s in range(size):
        mask[s] = 1
    for k in range(p.shape[0]):
        for s in range(size):
            mask[s] &= rows[k, s] >= p[k]
    hits = 0
    for s in range(size):
        hits |= mask[s]
    return hits != 0


@njit(cache=True)
def _remove_covered(  # pragma: no cover - compiled
    root: int,
    p: np.ndarray,
    box: np.ndarray,
    link: np.ndarray,
    lpts: np.ndarray,
    lcnt: np.ndarray,
    stack: np.ndarray,
    mask: np.ndarray,
) -> tuple[np.ndarray, int]:
    """Drop the live rows under ``root`` that are <= p everywhere and not equal to it; boxes
    stay exact. Returns the stack (maybe grown) and how many rows went."""
    d = p.shape[0]
    cnt = 2 * d + 1
    total = 0
    stack[0] = root
    sp = 1
    while sp > 0:
        sp -= 1
        node = stack[sp]
        if box[node, cnt] == 0:
            continue
        above = False
        for k in range(d):
            if box[node, d + k] > p[k]:
                above = True
                break
        if above:
            continue
        if link[node, _LEFT] >= 0:
            if sp + 2 > stack.shape[0]:
                stack = _grown(stack, sp)
            stack[sp] = link[node, _LEFT]
            sp += 1
            if p[link[node, _AUX]] >= box[node, 2 * d]:
                stack[sp] = link[node, _RIGHT]
                sp += 1
            continue
        leaf = link[node, _AUX]
        rows = lpts[leaf]
        size = lcnt[leaf]
        for s in range(size):  # mask[s] = row s is <= p everywhere: one vector pass per objective
            mask[s] = 1
        for k in range(d):
            for s in range(size):
                mask[s] &= rows[k, s] <= p[k]
        kept = 0
        for s in range(size):
            if mask[s]:  # a row equal to p is not covered: it dominates p (see _sweep)
                for k in range(d):
                    if rows[k, s] != p[k]:
                        break
                else:
                    mask[s] = 0
            if not mask[s]:
                if kept != s:
                    for k in range(d):
                        rows[k, kept] = rows[k, s]
                kept += 1
        removed = size - kept
        if removed == 0:
            continue
        total += removed
        lcnt[leaf] = kept
        box[node, cnt] -= removed
        for k in range(d):
            box[node, k] = -np.inf
            box[node, d + k] = np.inf
        for s in range(lcnt[leaf]):
            for k in range(d):
                x = lpts[leaf, k, s]
                box[node, k] = max(box[node, k], x)
                box[node, d + k] = min(box[node, d + k], x)
        a = link[node, _PARENT]
        while a >= 0:
            box[a, cnt] -= removed
            b = link[a, _LEFT]
            c = link[a, _RIGHT]
            for k in range(d):
                top = -np.inf
                bottom = np.inf
                if box[b, cnt] > 0:
                    top = box[b, k]
                    bottom = box[b, d + k]
                if box[c, cnt] > 0:
                    top = max(top, box[c, k])
                    bottom = min(bottom, box[c, d + k])
                box[a, k] = top
                box[a, d + k] = bottom
            a = link[a, _PARENT]
    return stack, total


@njit(cache=True)
def _new_leaf(  # pragma: no cover - compiled
    box: np.ndarray, link: np.ndarray, lcnt: np.ndarray, pool: np.ndarray, free: np.ndarray
) -> int:
    """An empty leaf node from the pools (free lists first), or -1 when they are exhausted."""
    if pool[2] > 0:
        pool[2] -= 1
        node = free[0, pool[2]]
    elif pool[0] < box.shape[0]:
        node = pool[0]
        pool[0] += 1
    else:
        return -1
    if pool[3] > 0:
        pool[3] -= 1
        leaf = free[1, pool[3]]
    elif pool[1] < lcnt.shape[0]:
        leaf = pool[1]
        pool[1] += 1
    else:
        return -1
    d = (box.shape[1] - 2) // 2
    for k in range(d):
        box[node, k] = -np.inf
        box[node, d + k] = np.inf
    box[node, 2 * d + 1] = 0
    link[node, _LEFT] = -1
    link[node, _RIGHT] = -1
    link[node, _PARENT] = -1  # a recycled node must not lead back into its old tree
    link[node, _AUX] = leaf
    lcnt[leaf] = 0
    return node


@njit(cache=True)
def _free_leaf_slot(pool: np.ndarray, free: np.ndarray, leaf: int) -> None:  # pragma: no cover
    free[1, pool[3]] = leaf
    pool[3] += 1


@njit(cache=True)
def _insert(  # pragma: no cover - compiled
    root: int,
    p: np.ndarray,
    box: np.ndarray,
    link: np.ndarray,
    lpts: np.ndarray,
    lcnt: np.ndarray,
    pool: np.ndarray,
    free: np.ndarray,
) -> bool:
    """Add p under ``root``; a leaf that overflows splits. False when the pools run out."""
    d = p.shape[0]
    node = root
    while True:
        box[node, 2 * d + 1] += 1
        for k in range(d):
            box[node, k] = max(box[node, k], p[k])
            box[node, d + k] = min(box[node, d + k], p[k])
        if link[node, _LEFT] < 0:
            break
        upper = p[link[node, _AUX]] >= box[node, 2 * d]
        node = link[node, _RIGHT] if upper else link[node, _LEFT]
    leaf = link[node, _AUX]
    s = lcnt[leaf]
    for k in range(d):
        lpts[leaf, k, s] = p[k]
    lcnt[leaf] = s + 1
    if s + 1 <= _LEAF_CAP:
        return True
    # Split on the widest objective. The rows of one layer differ in objectives 2..M (a row
    # equal there to an earlier row of the layer would be dominated by it), so it is > 0.
    dim = 0
    for k in range(1, d):
        if box[node, k] - box[node, d + k] > box[node, dim] - box[node, d + dim]:
            dim = k
    values = np.sort(lpts[leaf, dim, : s + 1])
    cut = values[(s + 1) // 2]
    if cut == values[0]:  # rows >= cut go right: keep at least one on the left
        for t in range(s + 1):
            if values[t] > cut:
                cut = values[t]
                break
    a = _new_leaf(box, link, lcnt, pool, free)
    b = _new_leaf(box, link, lcnt, pool, free)
    if a < 0 or b < 0:
        return False
    for t in range(s + 1):
        tgt = b if lpts[leaf, dim, t] >= cut else a
        tl = link[tgt, _AUX]
        u = lcnt[tl]
        for k in range(d):
            x = lpts[leaf, k, t]
            lpts[tl, k, u] = x
            box[tgt, k] = max(box[tgt, k], x)
            box[tgt, d + k] = min(box[tgt, d + k], x)
        lcnt[tl] = u + 1
        box[tgt, 2 * d + 1] += 1
    _free_leaf_slot(pool, free, leaf)  # the node becomes internal
    link[node, _LEFT] = a
    link[node, _RIGHT] = b
    link[node, _AUX] = dim
    link[a, _PARENT] = node
    link[b, _PARENT] = node
    box[node, 2 * d] = cut
    return True


@njit(cache=True)
def _rebuild(  # pragma: no cover - compiled
    root: int,
    scratch: np.ndarray,
    box: np.ndarray,
    link: np.ndarray,
    lpts: np.ndarray,
    lcnt: np.ndarray,
    pool: np.ndarray,
    free: np.ndarray,
) -> int:
    """Rebuild the tree under ``root`` balanced from its live rows; the new root, or -1."""
    d = scratch.shape[1]
    # Collect the live rows and free every node and leaf slot of the old tree.
    count = 0
    todo = [root]
    while len(todo) > 0:
        node = todo.pop()
        if link[node, _LEFT] >= 0:
            todo.append(link[node, _LEFT])
            todo.append(link[node, _RIGHT])
        else:
            leaf = link[node, _AUX]
            for s in range(lcnt[leaf]):
                for k in range(d):
                    scratch[count, k] = lpts[leaf, k, s]
                count += 1
            _free_leaf_slot(pool, free, leaf)
        free[0, pool[2]] = node
        pool[2] += 1
    new_root = _new_leaf(box, link, lcnt, pool, free)
    if new_root < 0:
        return -1
    work = [(new_root, 0, count)]
    sample = np.empty(_SAMPLE, dtype=np.float64)
    while len(work) > 0:
        node, first, stop = work.pop()
        size = stop - first
        box[node, 2 * d + 1] = size
        for t in range(first, stop):
            for k in range(d):
                box[node, k] = max(box[node, k], scratch[t, k])
                box[node, d + k] = min(box[node, d + k], scratch[t, k])
        if size <= _LEAF_CAP // 2:
            leaf = link[node, _AUX]
            for t in range(size):
                for k in range(d):
                    lpts[leaf, k, t] = scratch[first + t, k]
            lcnt[leaf] = size
            continue
        dim = 0
        for k in range(1, d):
            if box[node, k] - box[node, d + k] > box[node, dim] - box[node, d + dim]:
                dim = k
        take = min(size, _SAMPLE)
        for t in range(take):
            sample[t] = scratch[first + (t * size) // take, dim]
        cut = np.sort(sample[:take])[take // 2]
        mid = _partition(scratch, first, stop, dim, cut)
        if mid == first:  # cut is the minimum: split above it (the rows differ, see _insert)
            cut = np.inf
            for t in range(first, stop):
                if scratch[t, dim] > box[node, d + dim]:
                    cut = min(cut, scratch[t, dim])
            mid = _partition(scratch, first, stop, dim, cut)
        a = _new_leaf(box, link, lcnt, pool, free)
        b = _new_leaf(box, link, lcnt, pool, free)
        if a < 0 or b < 0:
            return -1
        _free_leaf_slot(pool, free, link[node, _AUX])
        link[node, _LEFT] = a
        link[node, _RIGHT] = b
        link[node, _AUX] = dim
        link[a, _PARENT] = node
        link[b, _PARENT] = node
        box[node, 2 * d] = cut
        work.append((a, first, mid))
        work.append((b, mid, stop))
    return new_root


@njit(cache=True)
def _partition(  # pragma: no cover - compiled
    rows: np.ndarray, first: int, stop: int, dim: int, cut: float
) -> int:
    """Move the rows of ``rows[first:stop]`` below ``cut`` in ``dim`` to the front; their end."""
    j = first
    for t in range(first, stop):
        if rows[t, dim] < cut:
            if t != j:
                for k in range(rows.shape[1]):
                    rows[t, k], rows[j, k] = rows[j, k], rows[t, k]
            j += 1
    return j
