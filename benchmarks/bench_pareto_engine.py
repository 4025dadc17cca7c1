"""Where ``pareto.engine = "auto"`` should switch from moocore to the numba kernels.

Run ``python benchmarks/bench_pareto_engine.py`` (a few minutes) or ``--quick``. For every
(M, n) case, on the bench's ``tied`` shape (rounded scores, like real reward scores) and
``uniform``, it times, each in a **fresh process** as the pareto stage runs:

- ``moocore``: import moocore, ``pareto_rank``;
- ``numba``: import the kernels and load them from numba's warm disk cache, then sort (the
  cache is warmed first by one untimed process);

checks that both give the same layers, and prints both times, ``numba / moocore`` and the
engine ``auto`` picks (``engine.AUTO_MOOCORE_MAX_ROWS``), marking a case where ``auto`` picks
the slower one. A cold numba cache (a new install) adds its compile time once:
``--cold`` times that too, with a throwaway ``NUMBA_CACHE_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, {bench!r})
from bench_pareto import make_scores
x = make_scores({shape!r}, {m}, {n}, seed=0)
t1 = time.perf_counter()
from paretohqd.stages.kit.pareto.engine import pareto_layers
layers, used = pareto_layers(x, engine={engine!r})
t2 = time.perf_counter()
print(json.dumps({{"seconds": t2 - t1, "layers": int(layers.max()),
                   "checksum": int((layers.astype(np.int64) * np.arange(len(layers))).sum())}}))
"""


def run(engine: str, shape: str, m: int, n: int, env: dict[str, str]) -> dict[str, float]:
    code = CHILD.format(
        bench=os.path.dirname(os.path.abspath(__file__)), shape=shape, m=m, n=n, engine=engine
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    from paretohqd.stages.kit.pareto.engine import choose_engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    ap.add_argument("--cold", action="store_true", help="also time numba with an empty cache")
    ap.add_argument(
        "--objectives", nargs="+", type=int, default=[2, 3, 4, 5], metavar="M", help="values of M"
    )
    ap.add_argument("--sizes", nargs="+", type=float, metavar="N", help="row counts")
    args = ap.parse_args()
    sizes = [1_000, 10_000] if args.quick else [3_000, 30_000, 100_000, 300_000, 1_000_000]
    if args.sizes:
        sizes = [int(n) for n in args.sizes]
    env = dict(os.environ)
    print(
        f"{'shape':8} {'M':>2} {'n':>9} {'layers':>6} {'moocore s':>10} {'numba s':>8} "
        f"{'numba/moocore':>13} {'auto':>8}" + ("  numba cold s" if args.cold else "")
    )
    for shape in ("tied", "uniform"):
        for m in args.objectives:
            for n in sizes:
                run("numba", shape, m, min(n, 2000), env)  # warm the disk cache
                moo = run("moocore", shape, m, n, env)
                nb = run("numba", shape, m, n, env)
                assert moo["checksum"] == nb["checksum"], (shape, m, n)
                auto = choose_engine("auto", n, m)
                best = "moocore" if moo["seconds"] <= nb["seconds"] else "numba"
                flag = "" if auto == best else " (slower)"
                line = (
                    f"{shape:8} {m:>2} {n:>9} {nb['layers']:>6} {moo['seconds']:>10.3f} "
                    f"{nb['seconds']:>8.3f} {nb['seconds'] / moo['seconds']:>13.2f} "
                    f"{auto + flag:>8}"
                )
                if args.cold:
                    with tempfile.TemporaryDirectory() as cache:
                        cold = run("numba", shape, m, n, {**env, "NUMBA_CACHE_DIR": cache})
                    line += f"  {cold['seconds']:>12.1f}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
