"""Which exact implementation sorts a pool into Pareto layers: moocore or the numba kernels.

Both give the same layers (``tests/unit/stages/kit/pareto/test_engine.py``); they differ in
cost. The numba kernels (:mod:`~paretohqd.stages.kit.pareto.nds`) are the fastest on large
pools, but a fresh process first loads their compiled code from numba's disk cache, or compiles
them when there is none (a new install, a new numba). moocore's C code peels one front at a
time: nothing to compile and instant on a small pool, slower as the pool and its layers grow.
``engine = "auto"`` takes moocore up to a row count measured per number of objectives
(:data:`AUTO_MOOCORE_MAX_ROWS`, from ``benchmarks/bench_pareto_engine.py``: where moocore's time
reaches the numba kernels' time in a fresh process with a warm disk cache), and the numba
kernels above it. Importing this module imports neither.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Engine = Literal["auto", "numba", "moocore"]

#: The most rows ``auto`` gives moocore, by number of objectives; M >= 7 (not measured) always
#: goes to moocore. Measured in fresh processes on the 2-core development machine
#: (``bench_pareto_engine.py``, tied and uniform scores): M = 2 moocore is faster up to 1e6 rows
#: (0.57 vs 1.0 s) and the kernels win from a few 1e6 on; M = 3 moocore 0.23-0.65 s vs
#: 0.8-1.1 s at 1e5, 2.3-2.7 s vs 0.9-1.2 s at 3e5. M = 4..6 with the k-d tree sweep
#: (``bench_pareto_engine.py --objectives 4 5 6 --sizes 3e4 1e5 3e5``, the machine shared with
#: other work): M = 4 moocore 0.75-0.91 s vs 0.89-1.17 s at 1e5, 3.0-3.2 s vs 1.7-2.5 s at
#: 3e5; M = 5 0.82-1.03 s vs 0.91-1.49 s at 1e5, 3.4-5.2 s vs 2.1-3.1 s at 3e5; M = 6
#: 1.08-1.22 s vs 1.26-1.55 s at 1e5, 4.2-5.4 s vs 2.9-3.8 s at 3e5. At 1e5 the kernels'
#: time is mostly loading them from numba's cache (about 0.7 s).
AUTO_MOOCORE_MAX_ROWS: dict[int, int] = {
    1: 2_000_000,
    2: 2_000_000,
    3: 150_000,
    4: 200_000,
    5: 150_000,
    6: 150_000,
}


class NonFiniteScoreError(ValueError):
    """A NaN or infinite score; ``row`` and ``column`` say where (0-based)."""

    def __init__(self, row: int, column: int, value: float) -> None:
        super().__init__(
            f"score at row {row}, column {column} is {value}; non-dominated sorting needs "
            "finite scores (drop or rescore that row)"
        )
        self.row = row
        self.column = column
        self.value = value


def choose_engine(engine: Engine, rows: int, objectives: int) -> Literal["numba", "moocore"]:
    """The implementation ``engine`` means for a pool of ``rows`` × ``objectives``."""
    if engine != "auto":
        return engine
    limit = AUTO_MOOCORE_MAX_ROWS.get(objectives)
    return "moocore" if limit is None or rows <= limit else "numba"


def moocore_layers(scores: np.ndarray) -> np.ndarray:
    """Layers from ``moocore.pareto_rank`` (maximising every column), 1-based int32."""
    import moocore

    if scores.shape[0] == 0:
        return np.zeros(0, dtype=np.int32)
    ranks = np.asarray(moocore.pareto_rank(scores, maximise=True), dtype=np.int32)
    return ranks + (1 - int(ranks.min()))


def pareto_layers(scores: np.ndarray, *, engine: Engine = "auto") -> tuple[np.ndarray, str]:
    """Every row's Pareto layer (1 = non-dominated, maximising every column) and the
    implementation that computed it.

    Raises :class:`NonFiniteScoreError` for a NaN or infinite score and ``ValueError`` for a
    shape that is not ``(n, M >= 1)``, whichever implementation runs.
    """
    x = np.ascontiguousarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"scores must be a 2-D (n, M) array, got shape {x.shape}")
    n, m = x.shape
    if m == 0:
        raise ValueError("scores has no objective columns")
    bad = np.flatnonzero(~np.isfinite(x.ravel()))
    if bad.size:
        row, col = divmod(int(bad[0]), m)
        raise NonFiniteScoreError(row, col, float(x[row, col]))
    chosen = choose_engine(engine, n, m)
    if chosen == "moocore":
        return moocore_layers(x + 0.0), chosen  # + 0.0: -0.0 equals 0.0, as in the kernels
    from paretohqd.stages.kit.pareto.nds import nondominated_layers

    return nondominated_layers(x), chosen
