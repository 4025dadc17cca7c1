"""bf16 LoRA SFT on the GPU through the project's one training loop (``train_adapter``)."""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def _timed_sft(rows: list[tuple[str, str]]) -> Any:
    """``SftObjective`` that notes when each optimiser step starts. The loss's ``.item()``
    waits for the GPU, so the gap between two starts is one whole step."""
    from paretohqd.stages.kit.training.sft import SftObjective

    class TimedSft(SftObjective):
        def __init__(self) -> None:
            super().__init__(rows)
            self.starts: list[float] = []

        def gradients(self, step: Any) -> Any:
            self.starts.append(time.perf_counter())
            return super().gradients(step)

    return TimedSft()


def test_bf16_lora_sft(
    policy: Any, device: str, hh_pairs: list[tuple[str, str]], tmp_path: Path, figures: Any
) -> None:
    import pyarrow.parquet as pq
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from paretohqd.stages.kit.training.loop import train_adapter
    from paretohqd.stages.kit.training.sft import SFTSettings

    # 32 rows, 8 a step: 40 steps see each row 10 times, so the loss must fall.
    settings = SFTSettings(
        steps=40,
        batch_size=8,
        lr=3e-3 if policy.tiny else 1e-3,
        warmup_steps=2,
        max_length=128 if policy.tiny else 256,
        device=device,
        dtype="bfloat16",
        seed=0,
    )
    objective = _timed_sft(hh_pairs[:32])
    out = tmp_path / "adapter"
    metrics = train_adapter(str(policy.path), objective, settings, out)

    losses = pq.read_table(out / "training_log.parquet").column("loss").to_pylist()
    assert len(losses) == settings.steps
    assert all(math.isfinite(x) for x in losses), losses
    first, last = statistics.mean(losses[:5]), statistics.mean(losses[-5:])
    assert last < 0.9 * first, f"loss did not fall: first five {first:.4f}, last five {last:.4f}"

    # A peft adapter directory that loads back on the device, with trained (non-zero) B.
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == settings.lora_r and config["peft_type"] == "LORA"
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert any(float(w.abs().sum()) > 0 for k, w in weights.items() if "lora_B" in k)
    state = json.loads((out / "train_state.json").read_text())
    assert state["settings"]["dtype"] == "bfloat16" and state["metrics"]["device"] == device
    base = AutoModelForCausalLM.from_pretrained(str(policy.path), dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(base.to(device), str(out))
    assert next(model.parameters()).device.type == device

    steps = [b - a for a, b in zip(objective.starts, objective.starts[1:], strict=False)]
    figures(
        model=policy.name,
        steps=metrics["steps"],
        tokens=metrics["tokens"],
        seconds=metrics["seconds"],
        seconds_per_step=round(metrics["seconds"] / metrics["steps"], 4),
        # the first step pays CUDA's start-up (kernels, allocator); the median is steady state
        median_step_ms_after_first=round(1000 * statistics.median(steps[1:]), 2),
        tokens_per_s=round(metrics["tokens"] / metrics["seconds"], 1),
        first_loss=losses[0],
        last_loss=losses[-1],
    )
