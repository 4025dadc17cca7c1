"""Every stage of the tiny integration config on an embedded Ray cluster against a local run
(slow: two whole pipelines, about 3 minutes on 2 CPUs; `just test-slow`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from paretohqd.config import load_config
from paretohqd.runner import Runner

pytestmark = [pytest.mark.ray, pytest.mark.slow]

#: Outputs that differ in the last bits today: a local process shares the sentence encoder's
#: embedding cache across parts and items (#15 lists it); everything else must be identical.
KNOWN = ("eval/", "value_heads.safetensors")


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
    compared = 0
    for local in sorted(runs["local"].rglob("*")):
        rel = local.relative_to(runs["local"]).as_posix()
        if local.suffix not in (".parquet", ".safetensors") or "/." in f"/{rel}":
            continue
        if any(k in rel for k in KNOWN):
            continue
        compared += 1
        assert (runs["ray"] / rel).read_bytes() == local.read_bytes(), rel
    assert compared > 50
