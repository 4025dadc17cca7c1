"""The stage graph: which stages exist, what they read, and in which order they run.

Every package under ``stages/`` (the kit excepted) exposes ``stages(config) -> list[Stage]``;
the registry finds the packages itself, so adding a stage or a method is adding a package.
Inputs by role (``Stage.reads_roles``) are resolved against what the other stages write, and
the order is a topological sort of the inputs: a stage runs after every stage it reads from,
ties broken by depth (longest path from a source) and then by name, so the order is stable.
Importing a stage package must stay cheap (heavy imports go inside the stage functions).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import cache
from typing import Any

from paretohqd.config import Config
from paretohqd.errors import StageError
from paretohqd.stage import Artifact, Stage, Tool

#: Packages under ``stages/`` that declare no stages.
NOT_STAGES = frozenset({"kit"})


@cache
def stage_modules() -> tuple[str, ...]:
    """Every stage package, by name (``paretohqd.stages.<name>``)."""
    import paretohqd.stages as root

    return tuple(
        f"{root.__name__}.{info.name}"
        for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name)
        if info.ispkg and info.name not in NOT_STAGES
    )


def declared_stages(config: Config, modules: Sequence[str] | None = None) -> list[Stage]:
    """The stages the packages declare for ``config``, in discovery order, unresolved."""
    out: list[Stage] = []
    for module_name in modules if modules is not None else stage_modules():
        out.extend(importlib.import_module(module_name).stages(config))
    return out


def build_graph(config: Config, modules: Sequence[str] | None = None) -> list[Stage]:
    """All stages the config enables, inputs by role resolved, in a valid execution order."""
    stages = declared_stages(config, modules)
    names = [s.name for s in stages]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise StageError(f"two stages are named {repeated[0]!r}")
    producer: dict[str, str] = {}
    for stage in stages:
        for art in stage.outputs:
            if art.name in producer:
                raise StageError(
                    f"stages {producer[art.name]!r} and {stage.name!r} both write {art.name!r}"
                )
            producer[art.name] = stage.name
    for stage in stages:
        for name in stage.inputs:
            if name not in producer:
                raise StageError(f"stage {stage.name!r} reads {name!r}, which no stage writes")
    checked: set[Any] = set()
    for stage in stages:  # what the config alone gets wrong, before any stage runs
        if stage.validate is not None and stage.validate not in checked:
            checked.add(stage.validate)
            stage.validate(config)
    return topological(resolve_roles(stages))


def resolve_roles(stages: Sequence[Stage]) -> list[Stage]:
    """Add to each stage's inputs the artifacts of the roles it reads (other stages' only)."""
    out = []
    for stage in stages:
        if not stage.reads_roles:
            out.append(stage)
            continue
        extra = [
            art.name
            for other in stages
            if other is not stage
            for art in other.outputs
            if art.role in stage.reads_roles and art.name not in stage.inputs
        ]
        out.append(replace(stage, inputs=(*stage.inputs, *extra)))
    return out


def topological(stages: Sequence[Stage]) -> list[Stage]:
    """``stages`` ordered so that each comes after the producers of its inputs.

    Among stages whose inputs are all available, the shallowest (shortest longest-path from a
    source) goes first, then by name: a stable, explainable order that no one keeps by hand.
    """
    producer = {art.name: s.name for s in stages for art in s.outputs}
    deps = {
        s.name: {producer[i] for i in s.inputs if producer.get(i, s.name) != s.name} for s in stages
    }
    depth: dict[str, int] = {}

    def depth_of(name: str, trail: tuple[str, ...] = ()) -> int:
        if name in trail:
            cycle = " → ".join((*trail[trail.index(name) :], name))
            raise StageError(f"the stages read each other in a cycle: {cycle}")
        if name not in depth:
            depth[name] = 1 + max((depth_of(d, (*trail, name)) for d in deps[name]), default=-1)
        return depth[name]

    return sorted(stages, key=lambda s: (depth_of(s.name), s.name))


def artifacts_of(stages: Sequence[Stage]) -> dict[str, Artifact]:
    """Every artifact the graph writes, by name."""
    return {art.name: art for stage in stages for art in stage.outputs}


def artifacts_with_role(stages: Iterable[Stage], role: str) -> list[Artifact]:
    """The artifacts of ``role`` the graph writes, in graph order."""
    return [art for stage in stages for art in stage.outputs if art.role == role]


def ancestors(stages: Sequence[Stage], name: str) -> set[str]:
    """``name`` and every stage it depends on, directly or not."""
    producer = {art.name: s.name for s in stages for art in s.outputs}
    by_name = {s.name: s for s in stages}
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [producer[i] for i in by_name[current].inputs if i in producer]
    return seen


def descendants(stages: Sequence[Stage], name: str) -> set[str]:
    """``name`` and every stage that depends on it, directly or not."""
    return {s.name for s in stages if name in ancestors(stages, s.name)}


def package_tool(name: str, modules: Sequence[str] | None = None) -> Tool:
    """The package-level tool ``name`` (a stage package's ``TOOLS``): no config, no run."""
    names = modules if modules is not None else stage_modules()
    found = [
        tool
        for module_name in names
        for tool in getattr(importlib.import_module(module_name), "TOOLS", ())
        if tool.name == name
    ]
    if len(found) != 1:
        raise StageError(f"{len(found)} stage packages offer the tool {name!r}; expected one")
    return found[0]


def stage_tools(stages: Sequence[Stage], name: str) -> list[tuple[Stage, Tool]]:
    """The stages that offer tool ``name``, in graph order, with their tool."""
    return [(s, t) for s in stages for t in s.tools if t.name == name]
