"""Shared fixtures: offline hub, the repo's bundled data, tiny configs in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from testpaths import DATA


@pytest.fixture
def repo_data() -> Path:
    """The bundled data directory of the repository."""
    return DATA


def write_config(directory: Path, body: str) -> Path:
    """Write ``paretohqd.toml`` into ``directory`` and return its path."""
    path = directory / "paretohqd.toml"
    path.write_text(body)
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A config over small slices of the bundled datasets, in a fresh directory."""
    return write_config(
        tmp_path,
        f"""
[run]
name = "t"

[ingest]
heldout_fraction = 0.2

[[ingest.sources]]
kind = "hh-rlhf"
name = "hh"
path = "{DATA / "hh-rlhf/harmless-base/test.jsonl.gz"}"
limit = 40

[[ingest.sources]]
kind = "oasst"
path = "{DATA / "oasst-en100/en_100_tree.jsonl"}"
limit = 5
""",
    )


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled stories260K checkpoint converted once per session to a Hugging Face Llama."""
    from paretohqd.stages.kit.policy.llama2c import convert_llama2c

    out = tmp_path_factory.mktemp("policy") / "stories260K"
    return convert_llama2c(
        DATA / "stories260K/stories260K.bin", DATA / "stories260K/tok512.bin", out
    )


@pytest.fixture
def heuristics() -> str:
    """Two ``[[objectives]]`` tables that load no model: conciseness and repetition."""
    return """
[[objectives]]
name = "concise"
scorer = "heuristic"
options = { metric = "conciseness", target = 30 }

[[objectives]]
name = "varied"
scorer = "heuristic"
options = { metric = "repetition", n = 2 }
"""
