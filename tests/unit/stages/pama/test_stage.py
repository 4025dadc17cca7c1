"""The pama stage's worker spec: plain values another process can receive."""

from __future__ import annotations

import pickle
from pathlib import Path

from paretohqd.config import config_from_dict
from paretohqd.stages.kit.policy.generate import GenerationSettings
from paretohqd.stages.kit.training.sft import SFTSettings
from paretohqd.stages.pama.config import PamaConfig
from paretohqd.stages.pama.stage import PamaSpec, train_pama_item


def test_the_worker_and_its_spec_pickle(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "objectives": [{"name": "a", "scorer": "heuristic"}],
            "policy": {"model": "some/model"},
            "pama": {"steps": 2},
        },
        base_dir=tmp_path,
        source="paretohqd.toml",
    )
    spec = PamaSpec(
        "m", SFTSettings(), ["a"], "sft", ["q"], PamaConfig(), config, GenerationSettings()
    )
    worker, again = pickle.loads(pickle.dumps((train_pama_item, spec)))
    assert worker is train_pama_item and again == spec
