"""The score stage over the runner: schema, counters, NaN → sample_id, a real kill and resume."""

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
import pytest

from paretohqd.config import load_config
from paretohqd.errors import DataError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner

PLUGIN = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import numpy as np

    class Plugin:
        def __init__(self, options):
            self.options = options

        def identity(self):
            return {"kind": "test-plugin", "options": self.options}

        def score(self, prompts, responses, extras):
            log = self.options.get("log")
            if log:
                with open(log, "a") as fh:
                    fh.write(f"{len(prompts)}\\n")
                time.sleep(self.options.get("sleep", 0))
            out = np.array([float(len(r)) for r in responses])
            bad = self.options.get("nan_for")
            if bad is not None:
                out[[i for i, r in enumerate(responses) if r == bad]] = np.nan
            return out

    def build(name, model, options):
        return Plugin(dict(options))
    """
)


def _config(tmp_path: Path, tiny_config: Path, objectives: str, part_size: int = 2048) -> Path:
    (tmp_path / "scoreplugin.py").write_text(PLUGIN)
    body = tiny_config.read_text() + f"\n[score]\npart_size = {part_size}\n" + objectives
    tiny_config.write_text(body)
    return tiny_config


def test_scores_every_sample_with_counters(
    tmp_path: Path, tiny_config: Path, heuristics: str
) -> None:
    config = load_config(_config(tmp_path, tiny_config, heuristics, part_size=16))
    Runner(config).run(until="score")
    samples = pl.read_parquet(config.run_dir / "samples.parquet")
    scores = pl.read_parquet(config.run_dir / "scores.parquet")
    assert scores.columns == ["sample_id", "concise", "varied"]
    assert scores["sample_id"].to_list() == samples["sample_id"].to_list()
    assert scores.schema["concise"] == pl.Float64
    expected = [-abs(len(r.split()) - 30) / 30 for r in samples["response"].to_list()]
    assert scores["concise"].to_list() == pytest.approx(expected, abs=1e-12)
    meta = Manifest(config.run_dir).stages["score"]["metadata"]
    assert meta["counts"]["concise"]["rows"] == samples.height
    assert meta["parts"] == -(-samples.height // 16)
    assert meta["scorers"]["varied"]["kind"] == "heuristic"
    assert not list((config.run_dir / ".parts").rglob("*.parquet"))  # parts cleared


def test_nan_score_names_sample_and_objective(
    tmp_path: Path, tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _config(tmp_path, tiny_config, "")
    config = load_config(path)
    Runner(config).run(until="ingest")
    samples = pl.read_parquet(config.run_dir / "samples.parquet")
    victim = samples.row(3, named=True)
    objective = f"""
[[objectives]]
name = "plug"
scorer = "scoreplugin:build"
options = {{ nan_for = {json.dumps(victim["response"])} }}
"""
    path.write_text(path.read_text() + objective)
    with pytest.raises(
        DataError, match=rf"objective 'plug' gave nan for sample {victim['sample_id']}"
    ):
        Runner(load_config(path)).run(until="score")
    assert not (config.run_dir / "scores.parquet").exists()


def test_sigkill_mid_score_resumes_without_loss_or_duplicates(
    tmp_path: Path, tiny_config: Path
) -> None:
    log = tmp_path / "calls.log"
    objective = f"""
[[objectives]]
name = "plug"
scorer = "scoreplugin:build"
options = {{ log = "{log}", sleep = 0.3 }}
"""
    path = _config(tmp_path, tiny_config, objective, part_size=4)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "paretohqd.cli", "run", "--config", str(path), "--until", "score"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and len(log.read_text().split()) >= 4):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    config = load_config(path)
    assert not (config.run_dir / "scores.parquet").exists()
    before = len(list((config.run_dir / ".parts/score").rglob("part-*.parquet")))
    assert before >= 2

    subprocess.run(cmd, env=env, check=True, timeout=300, capture_output=True)
    samples = pl.read_parquet(config.run_dir / "samples.parquet")
    scores = pl.read_parquet(config.run_dir / "scores.parquet")
    assert scores["sample_id"].to_list() == samples["sample_id"].to_list()  # none lost or twice
    assert (scores["plug"] == samples["response"].str.len_chars().cast(pl.Float64)).all()
    meta = Manifest(config.run_dir).stages["score"]["metadata"]
    assert meta["resumed_parts"] == before
    calls = len(log.read_text().split())
    assert calls <= meta["parts"] + 1  # the rerun only scored the missing parts


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("objectives.0.scorer=nope", "scorer 'nope' is neither a built-in kind"),
        ("objectives.0.options.metric=brevity", "option 'metric'"),
        ("objectives.0.scorer=hf-classifier", "unknown option 'metric'"),
        ("objectives.0.scorer=os:path", "names the standard library"),
        ("select.grid=[[0.5,0.6]]", "select.grid[0] = [0.5, 0.6]: weights sum to 1.1"),
        ("select.grid=[[-0.5,1.5]]", "must be finite and non-negative"),
        ("select.grid=[[0.5,0.5,0.0]]", "has 3 weights but there are 2 objectives"),
    ],
)
def test_config_mistakes_are_caught_before_any_stage_runs(
    tiny_config: Path, override: str, says: str
) -> None:
    """What the config alone gets wrong fails ``status`` and ``run --dry-run`` (exit 3), not a
    stage after ingest and scoring have run."""
    from typer.testing import CliRunner

    from paretohqd.cli import app

    for name, target in (("short", 3), ("long", 30)):
        tiny_config.write_text(
            tiny_config.read_text() + f'\n[[objectives]]\nname = "{name}"\nscorer = "heuristic"\n'
            f"options = {{ metric = 'conciseness', target = {target} }}\n"
        )
    for args in (["status"], ["run", "--dry-run"]):
        result = CliRunner().invoke(app, [*args, "-c", str(tiny_config), "--set", override])
        assert result.exit_code == 3, result.output
        assert says in result.stderr, result.stderr
    assert not (tiny_config.parent / "runs").exists()  # nothing ran
