"""Benchmark: per-preference top-k nearest the preference rays, DuckDB (the select stage's SQL)
against a vectorised numpy implementation a user might write instead.

    python benchmarks/bench_select.py                # 1e6 pooled rows, M=3, 66 preferences
    python benchmarks/bench_select.py --n 200000 --m 2 --step 0.1

Both return the exact top-k by (distance, sample_id); the script checks that the k distances
agree (to 1e-12: the two round the same formula differently in the last bit), then prints
seconds and the ratio. Not a timed test.
"""

from __future__ import annotations

import argparse
import time

import duckdb
import numpy as np
import pyarrow as pa

from paretohqd.stages.kit.preferences import build_grid
from paretohqd.stages.select.stage import top_k


def numpy_top_k(norm: np.ndarray, ids: np.ndarray, prefs: list, k: int) -> dict[str, np.ndarray]:
    """Distances for all rows per preference, argpartition, then exact ties by sample_id."""
    out = {}
    # The same arithmetic as sql/select_ray.sql (t = r·v − Σv), so ties compare equal.
    zz = ((norm - 1.0) ** 2).sum(1)
    for p in prefs:
        d = np.asarray(p.weights) - 1.0
        v = d / np.linalg.norm(d)
        t = norm @ v - v.sum()
        key = np.where(t >= 0, np.maximum(zz - t * t, 0), zz)
        cut = np.partition(key, k - 1)[k - 1]
        cand = np.flatnonzero(key <= cut)
        order = np.lexsort((ids[cand], key[cand]))[:k]
        out[p.pref_id] = key[cand[order]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=3)
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    norm = rng.random((args.n, args.m)).round(3)  # rounded: ties cross the cut
    ids = np.array([f"{i:016x}" for i in rng.permutation(args.n)])
    prefs = build_grid("simplex", args.m, step=args.step)
    con = duckdb.connect()
    con.execute(f"set threads = {args.threads}")
    pool = pa.table(
        {
            "sample_id": ids,
            "layer": pa.array(np.ones(args.n, dtype=np.int32)),
            "norm": pa.FixedSizeListArray.from_arrays(pa.array(norm.ravel()), args.m).cast(
                pa.list_(pa.float64())
            ),
        }
    )
    con.register("pool", pool)
    con.execute("create table layers as select * from pool")
    t0 = time.perf_counter()
    ours = top_k(con, "select_ray.sql", prefs=prefs, k=args.k, max_layer=1, pool_size=args.n)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = numpy_top_k(norm, ids, prefs, args.k)
    t_ref = time.perf_counter() - t0
    # BLAS and DuckDB round the same formula differently in the last bit, which can swap two
    # rows whose distances differ by ~1e-16; compare the k distances, not the ids.
    differ = [
        p.pref_id
        for p in prefs
        if np.abs(np.array([key for _, key in ours[p.pref_id]]) - ref[p.pref_id]).max() > 1e-12
    ]
    same = not differ
    print(f"{len(prefs)} preferences x {args.n:,} pooled rows, M={args.m}, k={args.k}")
    print(f"duckdb (select stage SQL, {args.threads} threads): {t_ours:.2f} s")
    print(f"numpy (vectorised, argpartition):      {t_ref:.2f} s")
    print(f"ratio numpy / duckdb: {t_ref / t_ours:.2f}x   same k distances: {same}")
    if not same:
        print("preferences whose k distances differ:", differ[:5])
        raise SystemExit(1)


if __name__ == "__main__":
    main()
