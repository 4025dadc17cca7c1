"""Generation with the real tiny policy: batching, long-prompt policies, adapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.errors import DataError
from paretohqd.stages.kit.policy.generate import GenerationSettings, generate_transformers
from paretohqd.stages.kit.training.loop import train_adapter
from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings

PROMPTS = ["Once upon a time", "The cat sat on the mat and", "Lily"]
GREEDY = GenerationSettings(max_new_tokens=12, do_sample=False, batch_size=8)


def test_batched_greedy_equals_one_by_one(tiny_policy: Path) -> None:
    batched = generate_transformers(str(tiny_policy), PROMPTS, settings=GREEDY).texts
    single = [
        generate_transformers(str(tiny_policy), [p], settings=GREEDY).texts[0] for p in PROMPTS
    ]
    assert batched == single
    assert all(t for t in batched)


def test_long_prompt_policies(tiny_policy: Path) -> None:
    long = "Once upon a time " * 300  # far past the 512-token context
    out = generate_transformers(str(tiny_policy), [long, "Lily"], settings=GREEDY)
    assert out.truncated == 1 and out.skipped == 0 and all(out.texts)
    skip = GenerationSettings(**{**GREEDY.__dict__, "long_prompt": "skip"})
    out = generate_transformers(str(tiny_policy), [long, "Lily"], settings=skip)
    assert out.skipped == 1 and out.texts[0] is None and out.texts[1]
    error = GenerationSettings(**{**GREEDY.__dict__, "long_prompt": "error"})
    with pytest.raises(DataError, match="prompt 0 has"):
        generate_transformers(str(tiny_policy), [long], settings=error)


def test_max_prompt_tokens_caps_the_prompt(tiny_policy: Path) -> None:
    prompt = "Once upon a time there was a little girl named Lily. " * 4  # ~60 tokens
    capped = GenerationSettings(**{**GREEDY.__dict__, "max_prompt_tokens": 12})
    out = generate_transformers(str(tiny_policy), [prompt], settings=capped)
    assert out.truncated == 1 and out.texts[0]
    # truncation keeps the prompt's end: the same as generating from its last tokens
    assert GREEDY.prompt_limit(512) == 512 - GREEDY.max_new_tokens
    assert capped.prompt_limit(512) == 12 and capped.prompt_limit(20) == 20 - GREEDY.max_new_tokens
    error = GenerationSettings(**{**capped.__dict__, "long_prompt": "error"})
    with pytest.raises(DataError, match="prompt 0 has"):
        generate_transformers(str(tiny_policy), [prompt], settings=error)


def test_adapter_changes_generation(tiny_policy: Path, tmp_path: Path) -> None:
    rows = [("Once upon a time", " the end. The end. The end.")] * 4
    train_adapter(
        str(tiny_policy),
        SftObjective(rows),
        SFTSettings(steps=60, batch_size=4, lr=1e-2, warmup_steps=0, max_length=32),
        tmp_path / "z",
    )
    base = generate_transformers(str(tiny_policy), ["Once upon a time"], settings=GREEDY)
    tuned = generate_transformers(
        str(tiny_policy), ["Once upon a time"], adapter=tmp_path / "z", settings=GREEDY
    )
    assert "The end" in (tuned.texts[0] or "") and "The end" not in (base.texts[0] or "")


def test_a_part_samples_the_same_whatever_the_process_loaded_before(
    tiny_policy: Path, tmp_path: Path
) -> None:
    """Resume and distribution: a part's seeded samples must not depend on history."""
    from paretohqd.stages.kit.policy.generate import make_generator

    rows = [("Once upon a time", " there was a dog.")] * 4
    settings = SFTSettings(steps=2, batch_size=4, lr=1e-3, warmup_steps=0, max_length=32)
    train_adapter(str(tiny_policy), SftObjective(rows), settings, tmp_path / "a")
    sampled = GenerationSettings(max_new_tokens=12, do_sample=True, top_p=0.9, batch_size=8)
    fresh = make_generator(str(tiny_policy), sampled, "transformers")
    first = fresh.generate(PROMPTS, adapter=tmp_path / "a", seed=7).texts
    warm = make_generator(str(tiny_policy), sampled, "transformers")
    warm.generate(["Lily"], adapter=tmp_path / "a", seed=1)  # the adapter is loaded already
    assert warm.generate(PROMPTS, adapter=tmp_path / "a", seed=7).texts == first
