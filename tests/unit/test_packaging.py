"""The distribution lists every package directory, so a non-editable install is complete."""

from __future__ import annotations

import tomllib

from testpaths import REPO


def test_every_package_dir_is_listed() -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = meta["package-dir"]
    listed = set(meta["packages"])
    found = set()
    for name, directory in mapping.items():
        root = REPO / directory
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found == listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_cli_help_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from typer.testing import CliRunner; from paretohqd.cli import app; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'duckdb', 'polars') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _requirements() -> list[tuple[str, str]]:
    """Every requirement in pyproject.toml as (where, requirement string): the dependencies,
    then each optional extra."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = [("dependencies", r) for r in project["dependencies"]]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        found += [(f"extra {extra}", r) for r in reqs]
    return found


def _floor(requirement: str) -> str | None:
    """The ``>=`` version of a requirement, or None."""
    from packaging.requirements import Requirement

    floors = [s.version for s in Requirement(requirement).specifier if s.operator == ">="]
    return floors[0] if floors else None


def test_installed_packages_meet_their_floors() -> None:
    """A floor above what this environment installed fails here, not in a user's install: every
    installed requirement's version satisfies its specifier. Dependencies must be installed;
    an extra's package that is not (vllm on a CPU machine) is skipped."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import Requirement

    problems = []
    for where, text in _requirements():
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        try:
            got = version(req.name)
        except PackageNotFoundError:
            if where == "dependencies":
                problems.append(f"{req.name}: a dependency, not installed")
            continue
        if not req.specifier.contains(got, prereleases=True):
            problems.append(f"{req.name} {got} installed, {where} declares {req.specifier}")
    assert not problems, "; ".join(problems)


def test_floors_table_matches_pyproject() -> None:
    """docs/architecture.md's 'Dependency floors' table names each requirement with the floor
    pyproject.toml declares (and so the API behind it): raising a floor means saying why."""
    import re

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    text = (REPO / "docs" / "architecture.md").read_text()
    section = text.split("## Dependency floors", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and line.startswith("| ") and not set(cells[1]) <= {"-"}:
            name = re.split(r"[\s\[(]", cells[0], maxsplit=1)[0]
            table[canonicalize_name(name)] = cells[1]
    table.pop("package", None)  # the header row
    declared = [
        (where, canonicalize_name(Requirement(req).name), _floor(req) or "none")
        for where, req in _requirements()
    ]
    names = {name for _, name, _ in declared}
    assert set(table) == names, (
        f"not in the table: {sorted(names - set(table))}; "
        f"not in pyproject.toml: {sorted(set(table) - names)}"
    )
    differ = [f"{n} ({w}): {f}, table {table[n]}" for w, n, f in declared if table[n] != f]
    assert not differ, f"pyproject floor != the table's: {differ}"
