"""The stage graph: which stages exist and in which order.

Stage modules expose ``stages(config) -> list[Stage]``; the registry collects them in pipeline
order and checks that every input is produced by an earlier stage. Importing a stage module
must stay cheap (heavy imports go inside the stage functions).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from paretohqd.config import Config
from paretohqd.errors import StageError
from paretohqd.stage import Artifact, Stage

STAGE_MODULES: tuple[str, ...] = (
    "paretohqd.stages.ingest",
    "paretohqd.stages.score",
    "paretohqd.stages.pareto",
    "paretohqd.stages.select",
    "paretohqd.stages.base_model",
    "paretohqd.stages.sft",
    "paretohqd.stages.sft_init",
    "paretohqd.stages.regenerate",
    "paretohqd.stages.round2",
    "paretohqd.stages.pama",
    "paretohqd.stages.pairs",
    "paretohqd.stages.modpo",
    "paretohqd.stages.raco",
    "paretohqd.stages.evaluate",
)


def build_graph(config: Config, modules: Sequence[str] = STAGE_MODULES) -> list[Stage]:
    """All stages the config enables, in a valid execution order."""
    stages: list[Stage] = []
    for module_name in modules:
        module = importlib.import_module(module_name)
        stages.extend(module.stages(config))
    produced: dict[str, str] = {}
    names: set[str] = set()
    for stage in stages:
        if stage.name in names:
            raise StageError(f"two stages are named {stage.name!r}")
        names.add(stage.name)
        for name in stage.inputs:
            if name not in produced:
                raise StageError(
                    f"stage {stage.name!r} reads {name!r}, which no earlier stage writes"
                )
        for art in stage.outputs:
            produced[art.name] = stage.name
    return stages


def artifacts_of(stages: Sequence[Stage]) -> dict[str, Artifact]:
    """Every artifact the graph writes, by name."""
    return {art.name: art for stage in stages for art in stage.outputs}
