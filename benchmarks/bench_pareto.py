"""Benchmark the non-dominated sorting kernel against moocore and pymoo.

Run ``python benchmarks/bench_pareto.py`` (full sizes, minutes) or ``--quick`` (seconds, the CI
smoke run). For every (shape, M, n) case it times ``nondominated_layers`` (maximising), moocore's
``pareto_rank`` and pymoo's ``NonDominatedSorting`` (both minimise, so they get ``-x``) on the
same seeded array, checks that all three return identical layers, and prints the ratio
``min(moocore, pymoo) / ours`` next to the target from issue 4 or 16, PASS or MISS. numba
compile time is excluded: the kernels are warmed up on small arrays first. Each timing is the
best of ``--repeat`` calls (default 3), the usual timeit practice: a first call also pays the
kernel for fresh memory, which on this VM varied from 0.1 to 0.6 s for 320 MB with huge pages.
pymoo is skipped where its estimated time for one call exceeds ``--pymoo-limit`` seconds (it
calls moocore, then loops over the fronts).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from paretohqd.stages.kit.pareto.nds import nondominated_layers

# (M, n) -> minimum ratio, from issue 4 (M = 2..4 at 1e5..1e7) and issue 16 (M = 4 at 1e6, M = 5)
TARGETS: dict[tuple[int, int], float] = {
    (2, 1_000_000): 2.0,
    (2, 10_000_000): 3.0,
    (3, 1_000_000): 5.0,
    (4, 100_000): 1.0,
    (4, 1_000_000): 3.0,
    (5, 100_000): 1.5,
}
FULL_SIZES = [
    (2, 1_000_000),
    (2, 10_000_000),
    (3, 1_000_000),
    (4, 100_000),
    (4, 1_000_000),
    (5, 100_000),
]
QUICK_SIZES = [(2, 20_000), (3, 20_000), (4, 5_000), (5, 5_000)]
SHAPES = ("uniform", "tied", "anti")


def make_scores(shape: str, m: int, n: int, *, seed: int) -> np.ndarray:
    """Seeded test arrays for the three shapes that stress different parts of the kernels.

    uniform: few points per layer at M=2, many at M>=3. tied: rounded to 2 decimals, so most
    rows have exact duplicates (like real reward scores). anti: points close to the simplex
    plane sum(x) = 1, so layers are huge and few.
    """
    rng = np.random.default_rng(seed)
    if shape == "uniform":
        return rng.random((n, m))
    if shape == "tied":
        return np.round(rng.random((n, m)), 2)
    if shape == "anti":
        u = rng.random((n, m))
        u /= u.sum(axis=1, keepdims=True)
        return u + 1e-3 * rng.standard_normal((n, m))
    raise ValueError(f"unknown shape {shape!r}; choose one of {', '.join(SHAPES)}")


def _moocore(x: np.ndarray) -> np.ndarray:
    import moocore

    r = np.asarray(moocore.pareto_rank(-x), dtype=np.int64)
    return r - r.min() + 1


def _pymoo(x: np.ndarray) -> np.ndarray:
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    _, rank = NonDominatedSorting().do(-x, return_rank=True)
    return np.asarray(rank, dtype=np.int64) + 1


def _timed(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeat: int) -> tuple:
    best = float("inf")
    out = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn(x)
        best = min(best, time.perf_counter() - t0)
    return best, out


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@dataclass
class Row:
    shape: str
    m: int
    n: int
    layers: int
    ours: float
    moocore: float
    pymoo: float | None
    target: float | None
    rss_mib: float

    @property
    def ratio(self) -> float:
        lib = self.moocore if self.pymoo is None else min(self.moocore, self.pymoo)
        return lib / self.ours


def run_case(shape: str, m: int, n: int, *, repeat: int, seed: int, pymoo_limit: float) -> Row:
    """Time the three implementations on one array and check that they agree."""
    x = make_scores(shape, m, n, seed=seed)
    ours_t, ours = _timed(nondominated_layers, x, repeat)
    rss = _peak_rss_mib()
    moo_t, moo = _timed(_moocore, x, repeat)
    if not np.array_equal(ours, moo):
        raise SystemExit(f"MISMATCH ours vs moocore on {shape} M={m} n={n}")
    # pymoo = moocore + one np.where per front: estimate that before running it
    est = moo_t + int(moo.max()) * n * 2e-9
    pymoo_t: float | None = None
    if est <= pymoo_limit:
        pymoo_t, pym = _timed(_pymoo, x, 1)
        if not np.array_equal(ours, pym):
            raise SystemExit(f"MISMATCH ours vs pymoo on {shape} M={m} n={n}")
    else:
        print(f"  note: pymoo skipped for {shape} M={m} n={n} (estimated {est:.0f} s > limit)")
    return Row(shape, m, n, int(ours.max()), ours_t, moo_t, pymoo_t, TARGETS.get((m, n)), rss)


def _warm_up() -> None:
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 4, 5):
        nondominated_layers(np.round(rng.random((2000, m)), 1))
        nondominated_layers(rng.random((2000, m)))
        nondominated_layers(make_scores("anti", m, 2000, seed=0))  # the few-layer kernels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI smoke run)")
    parser.add_argument(
        "--sizes",
        nargs="+",
        metavar="MxN",
        help="cases as M x n, e.g. 2x1000000 3x1e6 (default: the issue-4 and -16 targets)",
    )
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="best of this many timed calls, for ours and moocore alike (pymoo: one call)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pymoo-limit", type=float, default=60.0, metavar="SECONDS")
    args = parser.parse_args(argv)

    if args.sizes:
        sizes = []
        for spec in args.sizes:
            m_s, _, n_s = spec.lower().partition("x")
            sizes.append((int(m_s), int(float(n_s))))
    else:
        sizes = QUICK_SIZES if args.quick else FULL_SIZES

    t0 = time.perf_counter()
    _warm_up()
    print(
        f"numba warm-up (compile or cache load, excluded from timings): "
        f"{time.perf_counter() - t0:.1f} s"
    )
    rows = []
    for m, n in sizes:
        for shape in args.shapes:
            rows.append(
                run_case(
                    shape, m, n, repeat=args.repeat, seed=args.seed, pymoo_limit=args.pymoo_limit
                )
            )
            r = rows[-1]
            print(f"  done {shape} M={m} n={n}: ours {r.ours:.3f} s, moocore {r.moocore:.3f} s")

    header = (
        f"{'shape':<8} {'M':>2} {'n':>9} {'layers':>7} {'ours s':>8} {'moocore s':>10} "
        f"{'pymoo s':>9} {'ratio':>7} {'target':>6} {'result':>6} {'peak RSS MiB':>12}"
    )
    print()
    print("all three implementations returned identical layers on every array")
    print(header)
    print("-" * len(header))
    missed = 0
    for r in rows:
        pym = "skipped" if r.pymoo is None else f"{r.pymoo:.3f}"
        target = "-" if r.target is None else f">={r.target:g}x"
        if r.target is None:
            verdict = "-"
        elif r.ratio >= r.target:
            verdict = "PASS"
        else:
            verdict = "MISS"
            missed += 1
        print(
            f"{r.shape:<8} {r.m:>2} {r.n:>9} {r.layers:>7} {r.ours:>8.3f} {r.moocore:>10.3f} "
            f"{pym:>9} {r.ratio:>6.1f}x {target:>6} {verdict:>6} {r.rss_mib:>12.0f}"
        )
    print("ratio = min(moocore, pymoo) / ours; peak RSS is the process maximum so far")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
