"""Greedy generation with the transformers backend on the GPU against the CPU.

The same ``TransformersGenerator`` settings (batches, padding, prompt budget) on both devices, so
only the kernels differ. In float32 greedy completions must be identical for at least 90% of the
prompts: a near-tie between the two best tokens may still fall the other way on other kernels,
and the completion then goes its own way. bfloat16 on the GPU (what a GPU run uses) against
float32 on the CPU is a figure with a floor that catches a different model, not rounding (on
average 30% of each completion matched from the start): bfloat16 moves stories260K's greedy
paths a long way (bfloat16 on the CPU kept 28% of the completions identical, and 56% of each
from the start).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
from gpukit import agreement

pytestmark = pytest.mark.gpu


def _generate(model: str, settings: Any, prompts: list[str]) -> tuple[Any, float]:
    from paretohqd.stages.kit.policy.generate import TransformersGenerator

    gen = TransformersGenerator(model, settings)
    gen.generate(prompts[:2])  # warm-up
    t0 = time.perf_counter()
    result = gen.generate(prompts)
    return result, time.perf_counter() - t0


def test_greedy_generation_on_the_gpu_equals_the_cpu(
    policy: Any, device: str, hh_pairs: list[tuple[str, str]], figures: Any
) -> None:
    from paretohqd.stages.kit.policy.generate import GenerationSettings

    # A larger model generates on the CPU too: fewer prompts keep that part short.
    prompts = [p for p, _ in hh_pairs[: 32 if policy.tiny else 8]]
    settings = GenerationSettings(
        max_new_tokens=48,
        do_sample=False,
        batch_size=16,
        max_prompt_tokens=128,
        device="cpu",
        dtype="float32",
    )
    cpu, cpu_s = _generate(str(policy.path), settings, prompts)
    gpu, gpu_s = _generate(str(policy.path), replace(settings, device=device), prompts)
    bf16, bf16_s = _generate(
        str(policy.path), replace(settings, device=device, dtype="bfloat16"), prompts
    )
    assert cpu.new_tokens > len(prompts) * 5, "too few tokens for the comparison to mean much"
    same32, same16 = agreement(gpu.texts, cpu.texts), agreement(bf16.texts, cpu.texts)
    figures(
        model=policy.name,
        prompts=len(prompts),
        new_tokens_cpu=cpu.new_tokens,
        identical_float32=same32["identical"],
        mean_prefix_float32=round(same32["mean_prefix"], 4),
        identical_bfloat16_vs_cpu_float32=same16["identical"],
        mean_prefix_bfloat16=round(same16["mean_prefix"], 4),
        prompts_per_s_cpu_float32=round(len(prompts) / cpu_s, 2),
        prompts_per_s_gpu_float32=round(len(prompts) / gpu_s, 2),
        prompts_per_s_gpu_bfloat16=round(len(prompts) / bf16_s, 2),
    )
    assert same32["identical"] >= 0.9, list(zip(gpu.texts, cpu.texts, strict=True))
    assert (gpu.truncated, gpu.skipped) == (cpu.truncated, cpu.skipped)
    assert same16["mean_prefix"] >= 0.3, same16
