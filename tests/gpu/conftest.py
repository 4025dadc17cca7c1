"""The GPU checks (``just test-gpu``; on the device machine ``scripts/gpu-check.sh``).

Every test in this folder is marked ``gpu`` (the default addopts deselect it) and is skipped,
with the reason, when torch sees no CUDA device. Each check prints its figures (times,
agreement rates, throughput) through the ``figures`` fixture: at once (visible with ``-s``), in
the terminal summary, as junit properties, and into ``gpu-figures.json`` in
``$PARETOHQD_GPU_REPORT_DIR`` (else ``$OUT``, the device tool's folder) when one is set.

Environment:

- ``PARETOHQD_GPU_MODEL=DIR``: a larger Hugging Face causal LM (Llama-style, with
  ``q_proj``/``k_proj``/``v_proj``/``o_proj``) checked beside the bundled stories260K by the SFT,
  generation and vLLM checks. Never downloaded: a local directory only.
- ``PARETOHQD_GPU_DRY_RUN=1``: run the checks on the CPU, to test this folder's own code on a
  machine without a GPU. Its figures mean nothing.

Fused multi-adapter training is checked in ``test_fused_training.py``; the mixed-adapter
generation check goes here as ``test_mixed_generation.py`` when that lands, with the
``device``, ``policy``, ``hh_pairs`` and ``figures`` fixtures below.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from testpaths import DATA

HERE = Path(__file__).resolve().parent
DRY_RUN = os.environ.get("PARETOHQD_GPU_DRY_RUN", "") not in ("", "0")
#: Figures per test node id, written at the end of the session.
FIGURES: dict[str, dict[str, Any]] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``gpu`` (before ``-m`` deselects by marker)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="session")
def device() -> str:
    """``cuda``, or ``cpu`` on a dry run; skips the session's GPU tests without a GPU."""
    import torch

    if DRY_RUN:
        return "cpu"
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA: a CPU build"
        pytest.skip(
            f"needs a CUDA device: torch {torch.__version__} ({build}) sees none; "
            "run `just test-gpu` on a GPU machine"
        )
    return "cuda"


@pytest.fixture(autouse=True)
def _needs_cuda(device: str) -> None:
    """Every test here asks for the device, so every one is skipped without it."""


@dataclass(frozen=True)
class Policy:
    """A causal LM directory to check, and what to call it in figures."""

    name: str
    path: Path
    tiny: bool


def _policy_params() -> list[str]:
    return ["stories260K"] + (["gpu-model"] if os.environ.get("PARETOHQD_GPU_MODEL") else [])


@pytest.fixture(scope="session", params=_policy_params())
def policy(request: pytest.FixtureRequest, tiny_policy: Path) -> Policy:
    """The bundled stories260K (converted), then ``$PARETOHQD_GPU_MODEL`` when set."""
    if request.param == "stories260K":
        return Policy("stories260K", tiny_policy, tiny=True)
    path = Path(os.environ["PARETOHQD_GPU_MODEL"]).expanduser()
    if not (path / "config.json").is_file():
        pytest.fail(
            f"PARETOHQD_GPU_MODEL={path}: not a Hugging Face model directory (no config.json); "
            "point it at a local directory, nothing is downloaded"
        )
    return Policy(path.name, path, tiny=False)


@pytest.fixture(scope="session")
def hh_pairs() -> list[tuple[str, str]]:
    """(prompt, response) pairs from the bundled HH-RLHF harmless test split: the transcript
    up to its last ``Assistant:`` turn, and that turn's answer (the chosen one)."""
    pairs = []
    with gzip.open(DATA / "hh-rlhf/harmless-base/test.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["chosen"]
            cut = text.rfind("\n\nAssistant:") + len("\n\nAssistant:")
            answer = text[cut:]
            if cut > len("\n\nAssistant:") and answer.strip():
                pairs.append((text[:cut], answer))
    return pairs


@pytest.fixture
def figures(
    request: pytest.FixtureRequest, record_property: Callable[[str, Any], None]
) -> Iterator[Callable[..., None]]:
    """``figures(name=value, ...)``: print a test's figures and keep them for the report."""
    mine: dict[str, Any] = {}

    def record(**values: Any) -> None:
        mine.update(values)
        for key, value in values.items():
            record_property(key, value)
        print(f"\n[gpu figures] {request.node.nodeid}: {json.dumps(values, default=str)}")

    yield record
    if mine:
        FIGURES[request.node.nodeid] = mine


def _environment() -> dict[str, Any]:
    """Versions and the device the figures were measured on."""
    from importlib import metadata

    import torch

    env: dict[str, Any] = {"dry_run": DRY_RUN, "torch": torch.__version__}
    env["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(0)
    for dist in ("transformers", "peft", "vllm"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    return env


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures of the session, one line per test, after the results."""
    if not FIGURES:
        return
    terminalreporter.section("GPU figures")
    for nodeid, values in FIGURES.items():
        terminalreporter.write_line(f"{nodeid}: {json.dumps(values, default=str)}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """``gpu-figures.json`` in the report folder, when one is set and figures were taken."""
    folder = os.environ.get("PARETOHQD_GPU_REPORT_DIR") or os.environ.get("OUT")
    if not FIGURES or not folder:
        return
    path = Path(folder) / "gpu-figures.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"environment": _environment(), "figures": FIGURES}
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
