"""The part workers of score, regenerate and evaluate are what a distributed executor ships:
a module-level function of (spec, index) and a picklable spec, enough to work in another
process."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import pyarrow as pa

from paretohqd.config import load_config
from paretohqd.executor import release_worker_state
from paretohqd.runner import Runner
from paretohqd.stages.evaluate.stage import EvaluateSpec
from paretohqd.stages.kit.policy.generate import GenerationSettings, generation_part
from paretohqd.stages.kit.scoring.run import ScoringSpec
from paretohqd.stages.regenerate.stage import RegenerateSpec
from paretohqd.stages.score.stage import ScoreSpec, score_samples_part

#: Both processes compute (no score cache), so their counters must agree too.
SCORE = """
[score]
part_size = 16
cache = false
"""


def _specs(tiny_config: Path, heuristics: str) -> list[tuple[Any, Any]]:
    """One (worker, spec) per stage, with the values a stage would put there."""
    tiny_config.write_text(tiny_config.read_text() + SCORE + heuristics)
    config = load_config(tiny_config)
    scoring = ScoringSpec(config=config, hashes=config.run_dir / "hashes.json", key="f" * 64)
    settings = GenerationSettings(max_new_tokens=4, seed=3)
    prompts = (("p1", "Once upon a time"), ("p2", "Lily"))
    return [
        (score_samples_part, ScoreSpec(config.run_dir / "samples.parquet", 16, scoring)),
        (
            generation_part,
            RegenerateSpec(
                base="policy",
                settings=settings,
                backend="transformers",
                adapters=config.run_dir / "adapters",
                representatives=("pref-000-100", "pref-100-000"),
                prompts=prompts,
                part_size=1,
                key="f" * 64,
            ),
        ),
        (
            generation_part,
            EvaluateSpec(
                models=(("base", "base", None, "policy"), ("x", "p", Path("a/p"), "policy")),
                prompts=prompts,
                part_size=2,
                seed=0,
                settings=settings,
                backend="transformers",
                scoring=scoring,
            ),
        ),
    ]


def test_workers_and_specs_pickle(tiny_config: Path, heuristics: str) -> None:
    for worker, spec in _specs(tiny_config, heuristics):
        assert pickle.loads(pickle.dumps(worker)) is worker
        back = pickle.loads(pickle.dumps(spec))
        assert back == spec, type(spec).__name__
        if hasattr(spec, "scoring"):  # the config's private base directory travels too
            assert back.scoring.config.base_dir == spec.scoring.config.base_dir
            assert back.scoring.config.run_dir == spec.scoring.config.run_dir


def test_a_score_part_made_in_a_fresh_process_equals_the_local_one(
    tiny_config: Path, heuristics: str
) -> None:
    worker, spec = _specs(tiny_config, heuristics)[0]
    Runner(spec.scoring.config).run(until="ingest")
    local = [worker(spec, i) for i in range(2)]
    release_worker_state()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        remote = pool.starmap(worker, [(spec, i) for i in range(2)])
    for mine, theirs in zip(local, remote, strict=True):
        assert isinstance(theirs, pa.Table) and theirs.num_rows == 16
        assert theirs.equals(mine, check_metadata=True)  # scores and per-part counters
