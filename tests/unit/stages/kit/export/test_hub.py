"""``export hub``: adapters and models as Hub model repos, shards as dataset repos, and no
absolute local path in any file written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hubrun import config_text, make_run
from testpaths import DATA

from paretohqd.config import load_config
from paretohqd.errors import ConfigError
from paretohqd.runner import Runner
from paretohqd.stages.kit.cards import read_front_matter
from paretohqd.stages.kit.export.hub import INDEX, export_hub


def _config(tmp_path: Path, **kwargs: Any) -> Any:
    path = tmp_path / "paretohqd.toml"
    path.write_text(config_text(DATA, **kwargs))
    return load_config(path)


def _export(config: Any, out: Path, **options: Any) -> Any:
    """The export over the artifacts evaluate reads, as the tool hands them over."""
    runner = Runner(config)
    stage = runner.stage("evaluate")
    roles = ("adapters", "model", "shards", "policy")
    arts = [a for n in stage.inputs if (a := runner.artifacts[n]).role in roles]
    return export_hub(run_dir=config.run_dir, config=config, artifacts=arts, out=out, **options)


def _files(root: Path) -> list[Path]:
    return [f for f in sorted(root.rglob("*")) if f.is_file()]


def test_repos_name_hub_ids_and_no_local_path(tmp_path: Path, tiny_policy: Path) -> None:
    config = _config(tmp_path)
    run = make_run(config, tiny_policy)
    out = tmp_path / "hub"
    result = _export(config, out, namespace="org")

    assert {(r.kind, r.repo_id) for r in result.repos} == {
        ("dataset", "org/t-shards-round1"),
        ("dataset", "org/t-shards-round2"),
        ("model", "org/t-base"),
        ("model", "org/t-paretohqd-round1-pref-000-100"),
        ("model", "org/t-paretohqd-pref-000-100"),
    }
    # Nothing written names the run, the config's directory or anything under tmp_path.
    for f in _files(out):
        assert str(tmp_path).encode() not in f.read_bytes(), f
    # ... while the run keeps the paths local loading uses.
    local = json.loads((run / "adapters/round2/pref-000-100/adapter_config.json").read_text())
    assert local["base_model_name_or_path"] == str(run / "models/base")

    two = out / "models/t-paretohqd-pref-000-100"
    assert json.loads((two / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "org/t-base"
    )
    state = json.loads((two / "train_state.json").read_text())
    assert state["base_model"] == "org/t-base"
    assert state["init_adapter"] == "org/t-paretohqd-round1-pref-000-100"
    card = read_front_matter(two / "README.md")
    assert card is not None
    assert card["base_model"] == "org/t-base"
    assert card["library_name"] == "peft"
    assert card["license"] == "mit"  # the one license of the sources
    assert card["datasets"] == ["org/t-shards-round2"]
    assert card["paretohqd"]["preference"] == {"harmless": 0.0, "helpful": 1.0}
    assert "org/t-paretohqd-round1-pref-000-100" in (two / "README.md").read_text()
    # The weights are the run's, byte for byte.
    assert (two / "adapter_model.safetensors").read_bytes() == (
        run / "adapters/round2/pref-000-100/adapter_model.safetensors"
    ).read_bytes()
    # The dataset repo keeps its configs; the index lists every repo.
    data = read_front_matter(out / "datasets/t-shards-round1/README.md")
    assert data is not None and data["configs"][0]["config_name"] == "pref-000-100"
    index = json.loads((out / INDEX).read_text())
    assert len(index["repos"]) == 5


def test_an_exported_adapter_loads_with_its_base_from_the_export(
    tmp_path: Path, tiny_policy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --namespace an id is a folder name: from OUT/models, PEFT finds the base."""
    import torch
    from peft import AutoPeftModelForCausalLM

    config = _config(tmp_path)
    make_run(config, tiny_policy)
    _export(config, tmp_path / "hub")
    monkeypatch.chdir(tmp_path / "hub/models")
    model = AutoPeftModelForCausalLM.from_pretrained("t-paretohqd-round1-pref-000-100")
    assert model.peft_config["default"].base_model_name_or_path == "t-base"
    ids = torch.tensor([[1, 5, 9]])
    with torch.no_grad():
        with_lora = model(ids).logits
        with model.disable_adapter():
            without = model(ids).logits
    assert not torch.allclose(with_lora, without)  # the adapter's weights were loaded


def test_base_model_option_names_a_converted_policy(tmp_path: Path, tiny_policy: Path) -> None:
    config = _config(tmp_path)
    make_run(config, tiny_policy)
    result = _export(config, tmp_path / "hub", base_model="karpathy/stories260K")
    assert "t-base" not in {r.name for r in result.repos}  # the base is not exported again
    adapter = tmp_path / "hub/models/t-paretohqd-round1-pref-000-100/adapter_config.json"
    assert json.loads(adapter.read_text())["base_model_name_or_path"] == "karpathy/stories260K"


def test_a_hub_policy_is_named_by_its_id(tmp_path: Path, tiny_policy: Path) -> None:
    config = _config(tmp_path, policy="HuggingFaceTB/SmolLM2-135M")
    make_run(config, tiny_policy, base="HuggingFaceTB/SmolLM2-135M")
    _export(config, tmp_path / "hub")
    card = read_front_matter(tmp_path / "hub/models/t-paretohqd-pref-000-100/README.md")
    assert card is not None and card["base_model"] == "HuggingFaceTB/SmolLM2-135M"


def test_a_local_policy_without_a_hub_id_is_refused(tmp_path: Path, tiny_policy: Path) -> None:
    config = _config(tmp_path, policy=str(tiny_policy))
    make_run(config, tiny_policy, base=str(tiny_policy))
    with pytest.raises(ConfigError, match=r"adapters/round1/pref-000-100 .*--base-model"):
        _export(config, tmp_path / "hub")
    assert not (tmp_path / "hub").exists()  # nothing half-written
    _export(config, tmp_path / "hub", base_model="me/stories260K")
    state = tmp_path / "hub/models/t-paretohqd-round1-pref-000-100/train_state.json"
    assert json.loads(state.read_text())["base_model"] == "me/stories260K"


def test_out_must_be_new_or_an_earlier_export(tmp_path: Path, tiny_policy: Path) -> None:
    config = _config(tmp_path)
    make_run(config, tiny_policy)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files"):
        _export(config, busy)
    assert (busy / "notes.txt").read_text() == "mine"
    _export(config, tmp_path / "hub")
    with pytest.raises(ConfigError, match="--force"):
        _export(config, tmp_path / "hub")
    assert len(_export(config, tmp_path / "hub", force=True).repos) == 5


def test_a_path_the_export_cannot_rename_stops_it(tmp_path: Path, tiny_policy: Path) -> None:
    """A card naming a local file outside the run (here, beside the config) is not rewritten:
    the final check finds it and the export writes nothing."""
    from paretohqd.errors import DataError

    config = _config(tmp_path)
    run = make_run(config, tiny_policy)
    card = run / "adapters/round1/pref-000-100/README.md"
    card.write_text(card.read_text() + f"\nNotes in {tmp_path / 'notes.txt'}.\n")
    with pytest.raises(DataError, match=r"README\.md still names the local path"):
        _export(config, tmp_path / "hub")
    assert not (tmp_path / "hub").exists()
