"""One training loop for every pairwise method (MODPO, RACO).

The policy is the base model with a fresh LoRA adapter (peft); the frozen reference is the same
model with the adapter disabled. Each step draws seeded micro-batches of pairs, computes summed
response log-probs of both responses under policy and reference, and hands them to the method,
which either returns a loss (a standard backward pass) or writes the combined gradient itself
(RACO's clipped CAGrad through the Gram matrix of per-objective gradients). Logging, adapter,
loss curve and card are shared with SFT.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.errors import DataError
from paretohqd.stages.kit.training.sft import IGNORE, SFTSettings, encode_rows, save_adapter


@dataclass
class PairRows:
    """Training pairs: texts, per-objective signs (+1 a preferred, −1 b, 0 tie) and margins."""

    prompts: list[str]
    a: list[str]
    b: list[str]
    signs: np.ndarray  # (n, M)
    margins: np.ndarray  # (n, M), normalised score margins a − b

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class StepInputs:
    """What a method sees for one micro-batch."""

    delta: Any  # (B,) policy-minus-reference log-ratio difference, with grad
    signs: Any  # (B, M) tensor
    margins: Any  # (B, M) tensor


@dataclass
class Method:
    """A method: per-objective losses, and how to turn them into one update.

    ``losses(inputs) -> (B-mean) tensor per objective``; ``combine`` is either ``"weighted"``
    (backward on ``Σ w_i L_i``, or a method-specific scalar from ``scalar``) or ``"raco"``.
    """

    name: str
    losses: Callable[[StepInputs], list[Any]]
    combine: str = "scalar"
    scalar: Callable[[StepInputs], Any] | None = None
    weights: Sequence[float] = ()
    options: dict[str, Any] = field(default_factory=dict)


def _logps(model: Any, batch: dict[str, Any]) -> Any:
    """Summed log-prob of the labelled (response) tokens, per row."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    safe = torch.where(mask, labels, torch.zeros_like(labels))
    lp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(-1)


def train_pairwise(
    base_model: str,
    rows: PairRows,
    method: Method,
    out_dir: Path,
    *,
    settings: SFTSettings,
    extra_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter with ``method`` on ``rows``; save it with its log and card.

    Runs on ``settings.threads`` torch threads when set."""
    from paretohqd.stages.kit.policy.loading import torch_threads

    with torch_threads(settings.threads):
        return _train_pairwise(
            base_model, rows, method, out_dir, settings=settings, extra_state=extra_state
        )


def _train_pairwise(
    base_model: str,
    rows: PairRows,
    method: Method,
    out_dir: Path,
    *,
    settings: SFTSettings,
    extra_state: dict[str, Any] | None,
) -> dict[str, Any]:
    import torch

    from paretohqd.stages.kit.policy.loading import render_prompt
    from paretohqd.stages.kit.training.sft import (
        base_checksum,
        collate,
        lora_policy,
    )
    from paretohqd.stages.kit.training.solvers import raco_direction

    if len(rows) == 0:
        raise DataError(f"{method.name}: no training pairs")
    tok, model, device = lora_policy(base_model, settings)
    prompts = [render_prompt(tok, p, settings.template) for p in rows.prompts]
    enc_a = encode_rows(tok, list(zip(prompts, rows.a, strict=True)), settings.max_length)
    enc_b = encode_rows(tok, list(zip(prompts, rows.b, strict=True)), settings.max_length)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(settings.warmup_steps, 1))
    )
    gen = torch.Generator().manual_seed(settings.seed)
    signs_all = torch.tensor(rows.signs, dtype=torch.float32)
    margins_all = torch.tensor(rows.margins, dtype=torch.float32)
    w = np.asarray(method.weights, dtype=np.float64)
    base_before = base_checksum(model)
    order: list[int] = []
    log: list[dict[str, Any]] = []
    tokens = 0
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(settings.steps):
        per_obj = np.zeros(len(w))
        total = 0.0
        grads: list[list[Any]] | None = None
        opt.zero_grad(set_to_none=True)
        for _ in range(settings.grad_accum):
            if len(order) < settings.batch_size:
                order += torch.randperm(len(rows), generator=gen).tolist()
            take, order = order[: settings.batch_size], order[settings.batch_size :]
            ba = collate([enc_a[i] for i in take], tok.pad_token_id, device)
            bb = collate([enc_b[i] for i in take], tok.pad_token_id, device)
            tokens += int(ba["attention_mask"].sum() + bb["attention_mask"].sum())
            pol_a, pol_b = _logps(model, ba), _logps(model, bb)
            with torch.no_grad(), model.disable_adapter():
                ref_a, ref_b = _logps(model, ba), _logps(model, bb)
            from paretohqd.stages.kit.training.losses import dpo_delta

            inputs = StepInputs(
                dpo_delta(pol_a, pol_b, ref_a, ref_b),
                signs_all[take].to(device),
                margins_all[take].to(device),
            )
            losses = method.losses(inputs)
            per_obj += np.array([float(x.item()) for x in losses]) / settings.grad_accum
            if method.combine == "raco":
                # One gradient per objective over the adapter's parameters, accumulated.
                step_grads = [
                    torch.autograd.grad(
                        loss / settings.grad_accum, params, retain_graph=True, allow_unused=True
                    )
                    for loss in losses
                ]
                if grads is None:
                    grads = [
                        [
                            g if g is not None else torch.zeros_like(p)
                            for g, p in zip(gs, params, strict=True)
                        ]
                        for gs in step_grads
                    ]
                else:
                    for acc, gs in zip(grads, step_grads, strict=True):
                        for j, g in enumerate(gs):
                            if g is not None:
                                acc[j] = acc[j] + g
                total += float(sum(wi * x.item() for wi, x in zip(w, losses, strict=True)))
            else:
                assert method.scalar is not None
                loss = method.scalar(inputs) / settings.grad_accum
                loss.backward()
                total += loss.item()
        extra: dict[str, Any] = {}
        if method.combine == "raco" and grads is not None:
            m = len(grads)
            gram = np.zeros((m, m))
            for i in range(m):
                for j in range(i, m):
                    gram[i, j] = gram[j, i] = float(
                        sum(
                            (gi.double() * gj.double()).sum().item()
                            for gi, gj in zip(grads[i], grads[j], strict=True)
                        )
                    )
            direction = raco_direction(gram, w, c=method.options["c"], clip=method.options["clip"])
            coeffs = direction.coeffs
            for j, p in enumerate(params):
                p.grad = sum(float(coeffs[i]) * grads[i][j] for i in range(m)).to(p.dtype)
            extra = {"g0_norm": float(direction.g0_norm), "skipped": bool(direction.skipped)}
        if not math.isfinite(total):
            raise DataError(f"{method.name}: loss became {total} at step {step}; lower the lr")
        opt.step()
        sched.step()
        entry = {"step": step, "loss": round(total, 6), "lr": sched.get_last_lr()[0]}
        entry.update({f"loss_{i}": round(float(x), 6) for i, x in enumerate(per_obj)})
        entry.update(extra)
        log.append(entry)
    if base_checksum(model) != base_before:
        raise RuntimeError(f"{method.name}: base weights changed; only the adapter may train")
    metrics = {
        "pairs": len(rows),
        "steps": settings.steps,
        "examples": settings.steps * settings.batch_size * settings.grad_accum,
        "tokens": tokens,
        "cpu_seconds": round(time.process_time() - c0, 3),
        "first_loss": log[0]["loss"],
        "last_loss": log[-1]["loss"],
        "seconds": round(time.perf_counter() - t0, 3),
        "device": device,
    }
    state = {
        "method": method.name,
        "settings": asdict(settings),
        "metrics": metrics,
        "options": method.options,
        "weights": list(map(float, w)),
        "base_model": base_model,
        **(extra_state or {}),
    }
    save_adapter(out_dir, model, log, state, method_card(state))
    return metrics


def method_card(state: dict[str, Any]) -> str:
    """Model card of a method adapter."""
    s, m = state["settings"], state["metrics"]
    start = "the shared SFT model" if state.get("start") == "sft" else "the base model"
    return f"""---
library_name: peft
base_model: {state["base_model"]}
tags: [paretohqd, lora, {state["method"]}]
---
# {state.get("pref_id", "adapter")}: {state["method"].upper()} LoRA adapter

Preference weights {state["weights"]} over {state.get("objectives")}. Trained by paretohqd on
{m["pairs"]} preference pairs (the same pool as the ParetoHqD shards) for {m["steps"]} steps of
batch {s["batch_size"]} × {s["grad_accum"]}, AdamW lr {s["lr"]}, LoRA r {s["lora_r"]} / alpha
{s["lora_alpha"]}, seed {s["seed"]}; options {state["options"]}. Start and frozen reference
(adapter disabled): {start} (`{state["base_model"]}`). Loss {m["first_loss"]:.4f} →
{m["last_loss"]:.4f} (`training_log.parquet`, `loss.png`).
"""
