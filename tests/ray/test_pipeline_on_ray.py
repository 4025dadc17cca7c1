"""Every stage of the tiny integration config on an embedded Ray cluster against a local run
(slow: two whole pipelines, about 4 minutes on 2 CPUs; `just test-ray`).

Every table and weight file must be byte-identical: parts and items share no computed state in
either executor (:func:`paretohqd.executor.on_unit`), workers use the driver's thread count, and
seeds belong to the units themselves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from paretohqd.config import load_config
from paretohqd.runner import Runner

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: Columns that measure time, not results.
TIMINGS = ("wall_s", "cpu_s", "scoring_s")


def _same(a: Path, b: Path) -> bool:
    """Byte-identical files, or (the methods table) identical apart from timings."""
    if a.read_bytes() == b.read_bytes():
        return True
    if a.name != "methods.parquet":
        return False
    import polars as pl

    return pl.read_parquet(a).drop(TIMINGS).equals(pl.read_parquet(b).drop(TIMINGS))


def test_every_stage_on_ray_matches_the_local_run(tiny_config: Path, tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))
    import test_pipeline as tp

    base = tiny_config.read_text() + tp.TAIL
    runs = {}
    for kind in ("local", "ray"):
        (tmp_path / kind).mkdir()
        config = tmp_path / kind / "paretohqd.toml"
        extra = '\n[executor]\nkind = "ray"\nnum_cpus = 2\n' if kind == "ray" else ""
        config.write_text(base + extra)
        Runner(load_config(config)).run()
        runs[kind] = tmp_path / kind / "runs" / "t"
    compared, differ = 0, []
    for local in sorted(runs["local"].rglob("*")):
        rel = local.relative_to(runs["local"]).as_posix()
        if local.suffix not in (".parquet", ".safetensors") or "/." in f"/{rel}":
            continue
        compared += 1
        if not _same(local, runs["ray"] / rel):
            differ.append(rel)
    assert compared > 50
    assert differ == []
