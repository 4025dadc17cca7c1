"""Generation with the real tiny policy: batching, long-prompt policies, adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def two_adapters(tiny_policy: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two adapters trained to answer differently (and unlike the base model)."""
    root = tmp_path_factory.mktemp("adapters")
    settings = SFTSettings(steps=40, batch_size=4, lr=1e-2, warmup_steps=0, max_length=32)
    out = []
    for name, answer in (("end", " the end. The end."), ("dog", " there was a big dog.")):
        rows = [(p, answer) for p in PROMPTS]
        train_adapter(str(tiny_policy), SftObjective(rows), settings, root / name)
        out.append(root / name)
    return out


def _units(adapters: list[Path], seed: int = 3) -> list[Any]:
    from paretohqd.stages.kit.policy.generate import GenerationUnit

    return [
        GenerationUnit(tuple(PROMPTS), adapter, seed + k)
        for k, adapter in enumerate([None, *adapters, adapters[0]])
    ]


def test_mixed_adapter_batches_equal_each_adapter_alone_greedy(
    tiny_policy: Path, two_adapters: list[Path]
) -> None:
    """Rows of several adapters (and the base model) share batches; every row answers what
    its adapter answers alone through peft's standard path (set_adapter/disable_adapter)."""
    from paretohqd.stages.kit.policy.generate import TransformersGenerator

    gen = TransformersGenerator(str(tiny_policy), GREEDY)
    units = _units(two_adapters)
    mixed = [r.texts for r in gen.generate_units(units)]
    alone = [gen.generate(list(u.prompts), adapter=u.adapter).texts for u in units]
    assert mixed == alone
    assert len({tuple(t) for t in mixed}) == 3  # base and two adapters really differ
    one_by_one = GenerationSettings(**{**GREEDY.__dict__, "batch_size": 1})
    single = TransformersGenerator(str(tiny_policy), one_by_one).generate_units(units)
    assert [r.texts for r in single] == mixed


def test_sampled_rows_do_not_depend_on_their_batch(
    tiny_policy: Path, two_adapters: list[Path]
) -> None:
    """Each row samples from its own generator: alone, in a mixed batch or one row a batch,
    a unit samples the same tokens (float64, so no rounding near a boundary decides)."""
    from paretohqd.stages.kit.policy.generate import TransformersGenerator

    sampled = GenerationSettings(
        max_new_tokens=16, do_sample=True, top_p=0.9, batch_size=16, dtype="float64"
    )
    gen = TransformersGenerator(str(tiny_policy), sampled)
    units = _units(two_adapters)
    mixed = [r.texts for r in gen.generate_units(units)]
    alone = [gen.generate(list(u.prompts), adapter=u.adapter, seed=u.seed).texts for u in units]
    assert mixed == alone
    rowwise = GenerationSettings(**{**sampled.__dict__, "batch_size": 1})
    assert [
        r.texts for r in TransformersGenerator(str(tiny_policy), rowwise).generate_units(units)
    ] == mixed
    # each row has its own stream: the same prompt four times samples four answers
    same = gen.generate(["Once upon a time"] * 4, seed=5).texts
    assert len(set(same)) > 1
    # and the unit's seed matters
    assert gen.generate(list(PROMPTS), seed=6).texts != gen.generate(list(PROMPTS), seed=5).texts


def test_row_sampler_applies_the_sampling_warpers(tiny_policy: Path) -> None:
    """top_p so small that one token survives is greedy decoding; top_k = 1 likewise."""
    from paretohqd.stages.kit.policy.generate import TransformersGenerator

    greedy = generate_transformers(str(tiny_policy), PROMPTS, settings=GREEDY).texts
    for options in ({"top_p": 1e-9}, {"top_k": 1, "top_p": 1.0}):
        narrow = GenerationSettings(**{**GREEDY.__dict__, "do_sample": True, **options})
        assert TransformersGenerator(str(tiny_policy), narrow).generate(PROMPTS).texts == greedy
    wide = GenerationSettings(**{**GREEDY.__dict__, "do_sample": True, "temperature": 5.0})
    assert TransformersGenerator(str(tiny_policy), wide).generate(PROMPTS).texts != greedy


def test_mixed_groups_partition_parts_by_content_defined_sets() -> None:
    from paretohqd.stages.kit.policy.generate import mixed_groups

    models = [(f"m{i}", "base") for i in range(40)] + [(f"s{i}", "sft") for i in range(10)]
    groups = mixed_groups(models, 2, 4)
    assert sorted(i for g in groups for i in g) == list(range(100))
    for g in groups:
        assert len({i % 2 for i in g}) == 1  # one chunk
        assert len({models[i // 2][1] for i in g}) == 1  # one start model
        assert len(g) <= 8
    sizes = [len(g) for g in groups if g[0] % 2 == 0]
    assert 2 <= sum(sizes) / len(sizes) <= 8
    assert mixed_groups(models, 3, 1) == [(i,) for i in range(150)]
    # adding a model regroups its own set and no other
    sets = {tuple(models[i // 2][0] for i in g) for g in groups}
    grown = [*models[:17], ("new", "base"), *models[17:]]
    sets2 = {tuple(grown[i // 2][0] for i in g) for g in mixed_groups(grown, 2, 4)}
    assert len(sets - sets2) <= 2 and len(sets2 - sets) <= 2
    assert any("new" in s for s in sets2 - sets)
