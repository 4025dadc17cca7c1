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
