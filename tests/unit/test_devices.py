"""``"auto"`` devices and dtypes are resolved on the driver, per stage, into the fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from paretohqd import devices
from paretohqd.config import config_from_dict
from paretohqd.devices import resolve_config, stage_device


def _config(tmp_path: Path, **extra: Any) -> Any:
    return config_from_dict(
        {
            "run": {"name": "r"},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "policy": {"model": "m"},
            "objectives": [
                {"name": "rm", "scorer": "hf-classifier", "model": "rm"},
                {"name": "head", "scorer": "embedding-head", "model": "h"},
                {"name": "len", "scorer": "heuristic", "options": {"metric": "verbosity"}},
            ],
            **extra,
        },
        base_dir=tmp_path,
        source="test",
    )


def test_on_ray_a_stage_runs_where_its_resources_say(tmp_path: Path) -> None:
    cfg = _config(tmp_path, executor={"kind": "ray", "stages": {"sft": {"gpus": 1}}})
    assert stage_device(cfg, "sft") == "cuda"
    assert stage_device(cfg, "score") == "cpu"  # the driver's own hardware does not matter
    sft = resolve_config(cfg, "sft")
    assert sft.policy is not None and (sft.policy.device, sft.policy.dtype) == ("cuda", "bfloat16")
    score = resolve_config(cfg, "score")
    assert score.policy is not None and (score.policy.device, score.policy.dtype) == (
        "cpu",
        "float32",
    )
    rm, head, length = score.objectives
    assert rm.options == {"device": "cpu", "dtype": "float32"}
    assert head.options == {"device": "cpu"}
    assert length.options == {"metric": "verbosity"}  # a kind without a device is left alone
    assert cfg.policy is not None and cfg.policy.device == "auto"  # the original is untouched


def test_explicit_values_are_kept(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        policy={"model": "m", "device": "cpu", "dtype": "bfloat16"},
        executor={"kind": "ray", "stages": {"sft": {"gpus": 1}}},
    )
    sft = resolve_config(cfg, "sft")
    assert sft.policy is not None and (sft.policy.device, sft.policy.dtype) == ("cpu", "bfloat16")


def test_the_local_probe_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    devices.local_accelerator.cache_clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    try:
        assert devices.local_accelerator() == "cpu"
    finally:
        devices.local_accelerator.cache_clear()


def test_resolved_devices_enter_the_fingerprint_executor_settings_do_not(tmp_path: Path) -> None:
    from paretohqd.runner import Runner

    def fingerprints(**executor: Any) -> dict[str, str]:
        cfg = _config(tmp_path, executor={"kind": "ray", **executor})
        return {i.stage.name: i.fingerprint for i in Runner(cfg).plan()}

    base = fingerprints()
    assert fingerprints(address="auto", num_cpus=8) == base  # speed only
    gpu = fingerprints(stages={"score": {"gpus": 1}})
    assert gpu["score"] != base["score"]  # auto now means cuda + bfloat16 there
    assert gpu["ingest"] == base["ingest"]
