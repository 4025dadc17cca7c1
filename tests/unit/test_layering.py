"""The layers hold: engine (pipeline/) → kit (stages/kit/) → stage packages → CLI.

A stage package imports only the engine and the kit; the kit imports no stage package; round
two is the one exception, declaring the round-one stages again through their public factories.
The engine and the CLI import no stage module at module level (``paretohqd --help`` stays
instant, and the engine learns stages only through the registry). Nobody imports another
module's ``_private`` name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from testpaths import REPO

STAGES = REPO / "stages"
#: Round two reuses round one's stage factories: the one sanctioned cross-stage import.
ALLOWED = {("round2", "score"), ("round2", "pareto"), ("round2", "select"), ("round2", "sft")}


def _imports(path: Path, *, top_level_only: bool = False) -> Iterator[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _package(path: Path) -> str:
    return path.relative_to(STAGES).parts[0]


def test_no_stage_package_imports_another() -> None:
    bad = []
    for path in STAGES.rglob("*.py"):
        if len(path.relative_to(STAGES).parts) < 2:
            continue
        mine = _package(path)
        for module, _ in _imports(path):
            if not module.startswith("paretohqd.stages."):
                continue
            other = module.split(".")[2]
            if mine == "kit" and other != "kit":
                bad.append(f"{path.relative_to(REPO)}: the kit imports stage {module}")
            elif mine != "kit" and other not in (mine, "kit") and (mine, other) not in ALLOWED:
                bad.append(f"{path.relative_to(REPO)}: stage {mine!r} imports {module}")
    assert not bad, "\n".join(bad)


def test_engine_and_cli_import_no_stage_at_module_level() -> None:
    bad = [
        f"{path.relative_to(REPO)}: {module}"
        for path in (REPO / "pipeline").glob("*.py")
        for module, _ in _imports(path, top_level_only=True)
        if module.startswith("paretohqd.stages")
    ]
    assert not bad, "\n".join(bad)


def test_no_private_names_across_modules() -> None:
    bad = []
    for root in (STAGES, REPO / "pipeline"):
        for path in root.rglob("*.py"):
            for module, names in _imports(path):
                if not module.startswith("paretohqd"):
                    continue
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    bad.append(f"{path.relative_to(REPO)}: {module} {private}")
    assert not bad, "\n".join(bad)


def test_the_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from paretohqd.stages.score.stage import run_score\n")
    assert [m for m, _ in _imports(sample)] == ["paretohqd.stages.score.stage"]


def test_the_cli_reaches_stages_only_through_the_engine() -> None:
    """Commands load the config, ask the engine (runner, registry tools) and render."""
    bad = [
        module
        for module, _ in _imports(REPO / "pipeline" / "cli.py")
        if module.startswith("paretohqd.stages")
    ]
    assert not bad, bad


def test_no_stage_builds_a_runner() -> None:
    bad = [
        str(path.relative_to(REPO))
        for path in STAGES.rglob("*.py")
        for module, names in _imports(path)
        if module == "paretohqd.runner" and "Runner" in names
    ]
    assert not bad, bad
