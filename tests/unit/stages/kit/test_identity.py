"""Model and dataset identities for fingerprints: content hashes, or hub id + revision."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.config import config_from_dict
from paretohqd.hashing import FileHasher
from paretohqd.stages.kit.identity import hub_revision, source_identity


def _config(tmp_path: Path) -> object:
    return config_from_dict(
        {"ingest": {"sources": [{"kind": "table", "path": "x"}]}}, base_dir=tmp_path, source="t"
    )


def test_a_local_path_is_its_content(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"one")
    hasher = FileHasher(tmp_path / "h.json")
    first = source_identity(_config(tmp_path), "m", hasher)  # type: ignore[arg-type]
    (tmp_path / "m" / "w.bin").write_bytes(b"two")
    second = source_identity(_config(tmp_path), "m", FileHasher(tmp_path / "h2.json"))  # type: ignore[arg-type]
    assert first != second and not first.startswith("hub:")


def test_a_hub_id_carries_the_cached_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--org--tiny"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    hasher = FileHasher(tmp_path / "h.json")
    assert hub_revision("org/tiny") == commit
    assert source_identity(_config(tmp_path), "org/tiny", hasher) == f"hub:org/tiny@{commit}"  # type: ignore[arg-type]
    # Not cached: the configured revision, else an honest "unresolved".
    assert hub_revision("org/absent") == "unresolved"
    assert hub_revision("org/absent", "v1.2") == "v1.2"
