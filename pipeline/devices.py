"""Where ``"auto"`` devices and dtypes resolve: on the driver, per stage, before fingerprints.

A stage's numbers depend on the device and dtype its work runs with (bfloat16 on a GPU,
float32 on a CPU), so ``device = "auto"`` and ``dtype = "auto"`` must not reach the workers
as they are: a Ray worker with a GPU would resolve them one way and the driver another, while
the fingerprint held the literal ``"auto"``. The runner therefore gives every stage a config
in which they are already resolved (:func:`resolve_config`), for where that stage's work runs:

- **local executor**: this machine, ``cuda`` when it has a CUDA (or ROCm) device that the
  installed torch can use;
- **Ray**: the stage's workers, ``cuda`` when ``[executor.stages.<stage>] gpus > 0``, else
  ``cpu`` (the driver's own hardware does not matter);

and ``dtype = "auto"`` becomes ``bfloat16`` on ``cuda`` and ``float32`` elsewhere (the rule the
loaders already follow). The resolved values enter the stage's fingerprint, so moving a run
from a CPU to a GPU (or giving a Ray stage GPUs) remakes what the device changes, and the
workers use exactly the values the driver recorded. Executor settings stay out of
fingerprints otherwise.

The local probe reads torch's build info and the device files without importing torch, so
``paretohqd status`` stays quick; if it is wrong (a driver that torch cannot use), the stage
fails with an error naming the key to set, never with silently different numbers.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paretohqd.config import Config

#: Built-in scorer kinds whose options take ``device`` (and ``dtype``, where listed).
DEVICE_SCORERS = {"hf-classifier": ("device", "dtype"), "embedding-head": ("device",)}


@functools.cache
def local_accelerator() -> str:
    """``cuda`` when this machine has a GPU the installed torch is built for, else ``cpu``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return "cpu"
    try:
        build = (Path(spec.origin).parent / "version.py").read_text()
    except OSError:
        return "cpu"
    cuda = re.search(r"^cuda\b.*=\s*'[^']+'", build, re.M)
    hip = re.search(r"^hip\b.*=\s*'[^']+'", build, re.M)
    nvidia = Path("/dev/nvidia0").exists() or any(Path("/proc/driver/nvidia/gpus").glob("*"))
    amd = Path("/dev/kfd").exists()
    return "cuda" if (cuda and nvidia) or (hip and amd) else "cpu"


def stage_device(config: Config, stage: str) -> str:
    """What ``device = "auto"`` means for ``stage``'s work (see the module docstring)."""
    if config.executor.kind == "ray":
        res = config.executor.stages.get(stage)
        return "cuda" if res is not None and res.gpus > 0 else "cpu"
    return local_accelerator()


def _dtype(dtype: str, device: str) -> str:
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def resolve_config(config: Config, stage: str) -> Config:
    """``config`` with every ``"auto"`` device and dtype resolved for ``stage`` (the policy's,
    and the options of built-in scorers that take them); ``config`` itself when none is auto."""
    device = stage_device(config, stage)
    update: dict[str, Any] = {}
    policy = config.policy
    if policy is not None and "auto" in (policy.device, policy.dtype):
        pdev = device if policy.device == "auto" else policy.device
        update["policy"] = policy.model_copy(
            update={"device": pdev, "dtype": _dtype(policy.dtype, pdev)}
        )
    objectives, changed = [], False
    for obj in config.objectives:
        keys = DEVICE_SCORERS.get(obj.scorer, ())
        options = dict(obj.options)
        odev = options.get("device", "auto")
        if "device" in keys and odev == "auto":
            odev = options["device"] = device
        if "dtype" in keys and options.get("dtype", "auto") == "auto":
            options["dtype"] = _dtype("auto", odev)
        changed |= options != obj.options
        objectives.append(obj.model_copy(update={"options": options}))
    if changed:
        update["objectives"] = objectives
    return config.model_copy(update=update) if update else config
