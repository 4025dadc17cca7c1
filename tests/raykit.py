"""Shared by the Ray suites (``tests/ray/``): a stage context on a minimal config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from paretohqd.config import config_from_dict
from paretohqd.hashing import FileHasher
from paretohqd.stage import Artifact, Stage, StageContext


def stage_context(tmp_path: Path, *, stage: str = "toy", **tables: Any) -> StageContext:
    """The context of a do-nothing stage named ``stage`` whose config is a minimal run plus
    ``tables`` (``executor={...}``, ``generation={...}``, ``run={...}``)."""
    config = config_from_dict(
        {"run": {"name": "r"}, "ingest": {"sources": [{"kind": "table", "path": "x"}]}, **tables},
        base_dir=tmp_path,
        source="test",
    )
    return StageContext(
        stage=Stage(name=stage, fn=lambda ctx: None),
        config=config,
        run_dir=tmp_path / "run",
        fingerprint="f" * 64,
        artifacts={"a": Artifact("a", "a.parquet")},
        hasher=FileHasher(tmp_path / "hashes.json"),
    )
