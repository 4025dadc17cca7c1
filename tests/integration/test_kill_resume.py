"""A real kill -9 in the middle of a part-writing stage: nothing looks complete, rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import polars as pl
    from paretohqd.atomic import write_parquet
    from paretohqd.config import config_from_dict
    from paretohqd.runner import Runner
    from paretohqd.stage import Artifact, Stage

    base = Path(sys.argv[1])
    log = base / "work.log"

    def slow(ctx):
        parts = ctx.parts()
        parts.drop_stale()
        for i in range(10):
            if parts.done(i):
                continue
            with log.open("a") as fh:
                fh.write(f"{i}\\n")
            time.sleep(0.15)
            parts.write(i, pl.DataFrame({"id": list(range(i * 100, (i + 1) * 100))}))
        write_parquet(ctx.path("out"), pl.from_arrow(parts.read_all()))
        parts.clear()
        return {}

    cfg = config_from_dict({"run": {"name": "k"}, "ingest": {"sources": [{"kind": "table",
                            "path": "x"}]}}, base_dir=base, source="t")
    stage = Stage(name="slow", fn=slow, outputs=(Artifact("out", "out.parquet"),))
    print(Runner(cfg, [stage]).run(), flush=True)
    """
)


def test_sigkill_mid_stage_then_resume(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    log = tmp_path / "work.log"
    deadline = time.time() + 60
    while time.time() < deadline:
        if log.exists() and len(log.read_text().split()) >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    run_dir = tmp_path / "runs/k"
    assert not (run_dir / "out.parquet").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "slow" not in manifest["stages"] and "slow" in manifest["running"]
    done_before = len(list((run_dir / ".parts/slow/parts").rglob("part-*.parquet")))
    assert 2 <= done_before < 10

    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, timeout=120)
    out = pl.read_parquet(run_dir / "out.parquet")
    assert sorted(out["id"].to_list()) == list(range(1000))  # nothing lost, nothing twice
    attempts = [int(x) for x in log.read_text().split()]
    # the second run only did the parts the first had not finished
    assert len(attempts) <= 10 + 1
    assert sorted(set(attempts)) == list(range(10))
    assert "slow" in json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert not list(run_dir.rglob(".*.tmp-*"))
