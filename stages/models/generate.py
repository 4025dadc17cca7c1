"""Batched generation with the policy (base model, optionally a LoRA adapter).

Two backends with one output: ``transformers`` (left-padded batches sorted by prompt length,
so padding is minimal) and ``vllm`` (offline ``LLM`` with a ``LoRARequest`` per adapter, for
GPUs). Prompts longer than the context minus the generation budget follow an explicit policy:
``truncate`` keeps their last tokens (counted), ``skip`` drops them (counted), ``error`` fails
naming the row.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"


@dataclass
class GenerationResult:
    """Completions in input order (``None`` for skipped prompts) and the policy counters."""

    texts: list[str | None]
    truncated: int
    skipped: int
    new_tokens: int


def _fit_prompts(
    tok: Any, prompts: Sequence[str], limit: int, policy: str
) -> tuple[list[list[int] | None], int, int]:
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    out: list[list[int] | None] = []
    truncated = skipped = 0
    for i, text in enumerate(prompts):
        ids = bos + tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) > limit:
            if policy == "error":
                raise DataError(
                    f"generate: prompt {i} has {len(ids)} tokens but the context leaves {limit} "
                    "for the prompt; set long_prompt = 'truncate' or 'skip', or lower "
                    "max_new_tokens"
                )
            if policy == "skip":
                out.append(None)
                skipped += 1
                continue
            ids = bos + ids[len(ids) - (limit - len(bos)) :]
            truncated += 1
        out.append(ids)
    return out, truncated, skipped


def generate_transformers(
    base_model: str,
    prompts: Sequence[str],
    *,
    adapter: Path | None = None,
    settings: GenerationSettings,
) -> GenerationResult:
    """Generate one completion per prompt with transformers' ``generate``."""
    import torch
    from paretohqd.stages.models.loading import context_length, load_policy, load_tokenizer

    tok = load_tokenizer(base_model, padding_side="left")
    model = load_policy(base_model, adapter=adapter, device=settings.device, dtype=settings.dtype)
    if adapter is not None:
        model = model.merge_and_unload()
    model.eval()
    limit = context_length(model) - settings.max_new_tokens
    if limit < 1:
        raise ModelError(
            f"generate: max_new_tokens = {settings.max_new_tokens} leaves no room for a prompt "
            f"in a {context_length(model)}-token context"
        )
    fitted, truncated, skipped = _fit_prompts(tok, prompts, limit, settings.long_prompt)
    order = sorted(
        (i for i, ids in enumerate(fitted) if ids is not None), key=lambda i: len(fitted[i] or [])
    )
    texts: list[str | None] = [None] * len(prompts)
    new_tokens = 0
    torch.manual_seed(settings.seed)
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    if settings.do_sample:
        kwargs.update(
            do_sample=True,
            top_p=settings.top_p,
            top_k=settings.top_k,
            temperature=settings.temperature,
        )
    else:
        kwargs.update(do_sample=False)
    with torch.inference_mode():
        for start in range(0, len(order), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            width = max(len(fitted[i] or []) for i in idx)
            ids = torch.full((len(idx), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, i in enumerate(idx):
                row = fitted[i] or []
                ids[j, width - len(row) :] = torch.tensor(row)
                mask[j, width - len(row) :] = 1
            out = model.generate(
                input_ids=ids.to(model.device), attention_mask=mask.to(model.device), **kwargs
            )
            for j, i in enumerate(idx):
                new = out[j, width:].tolist()
                if tok.eos_token_id in new:
                    new = new[: new.index(tok.eos_token_id)]
                new = [t for t in new if t != tok.pad_token_id]
                new_tokens += len(new)
                texts[i] = tok.decode(new, skip_special_tokens=True)
    return GenerationResult(texts, truncated, skipped, new_tokens)


def generate_vllm(
    base_model: str,
    prompts: Sequence[str],
    *,
    adapter: Path | None = None,
    settings: GenerationSettings,
    lora_rank: int = 64,
) -> GenerationResult:
    """Generate with vLLM's offline engine (GPU); same output as the transformers backend."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise ModelError(
            "generation.backend = 'vllm' but vllm is not installed; `pip install "
            "paretohqd[vllm]` on a GPU machine, or use backend = 'transformers'"
        ) from None
    from paretohqd.stages.models.loading import load_tokenizer

    tok = load_tokenizer(base_model)
    llm = LLM(
        model=base_model,
        enable_lora=adapter is not None,
        max_lora_rank=lora_rank,
        seed=settings.seed,
    )
    limit = llm.llm_engine.model_config.max_model_len - settings.max_new_tokens
    fitted, truncated, skipped = _fit_prompts(tok, prompts, limit, settings.long_prompt)
    params = SamplingParams(
        max_tokens=settings.max_new_tokens,
        temperature=settings.temperature if settings.do_sample else 0.0,
        top_p=settings.top_p if settings.do_sample else 1.0,
        top_k=settings.top_k if settings.do_sample and settings.top_k > 0 else -1,
        seed=settings.seed,
    )
    lora = LoRARequest(adapter.name, 1, str(adapter)) if adapter is not None else None
    keep = [i for i, ids in enumerate(fitted) if ids is not None]
    outs = llm.generate([{"prompt_token_ids": fitted[i]} for i in keep], params, lora_request=lora)
    texts: list[str | None] = [None] * len(prompts)
    new_tokens = 0
    for i, out in zip(keep, outs, strict=True):
        texts[i] = out.outputs[0].text
        new_tokens += len(out.outputs[0].token_ids)
    return GenerationResult(texts, truncated, skipped, new_tokens)


def generate(
    base_model: str,
    prompts: Sequence[str],
    *,
    adapter: Path | None = None,
    settings: GenerationSettings,
    backend: Literal["transformers", "vllm"] = "transformers",
) -> GenerationResult:
    """Dispatch to the configured backend."""
    if backend == "vllm":
        return generate_vllm(base_model, prompts, adapter=adapter, settings=settings)
    return generate_transformers(base_model, prompts, adapter=adapter, settings=settings)
