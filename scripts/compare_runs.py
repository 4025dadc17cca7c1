"""Compare two run directories: every Parquet table and every safetensors tensor.

Usage: ``python scripts/compare_runs.py RUN_A RUN_B``. Timing columns are ignored (they are the
only values a rerun may change). Exits 1 when anything differs. This is how a refactor shows
that it left the demo's outputs unchanged: snapshot ``runs/demo``, change the code, run
``paretohqd run --force``, compare.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
import torch
from safetensors.torch import load_file

VOLATILE = {"seconds", "cpu_seconds", "wall_s", "cpu_s", "scoring_s"}


def same_table(a: Path, b: Path) -> bool:
    """Equal tables, timing columns aside."""
    fa, fb = pl.read_parquet(a), pl.read_parquet(b)
    return fa.drop([c for c in fa.columns if c in VOLATILE]).equals(
        fb.drop([c for c in fb.columns if c in VOLATILE])
    )


def same_tensors(a: Path, b: Path) -> bool:
    """The same tensor names with bit-identical values."""
    ta, tb = load_file(str(a)), load_file(str(b))
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def main(a: Path, b: Path) -> int:
    """Print what differs and a count; 0 when nothing does."""
    same = different = 0
    for pattern, check in (("*.parquet", same_table), ("*.safetensors", same_tensors)):
        for pa in sorted(a.rglob(pattern)):
            rel = pa.relative_to(a)
            if ".parts" in rel.parts:
                continue
            pb = b / rel
            if pb.exists() and check(pa, pb):
                same += 1
            else:
                different += 1
                print(f"differs: {rel}" if pb.exists() else f"missing: {rel}")
    print(f"identical: {same}, different: {different}")
    return 1 if different else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
