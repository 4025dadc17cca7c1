"""LoRA supervised fine-tuning on prompt/completion rows: the loss is NLL on the completion.

A small, explicit loop instead of a trainer framework: the shards are ~100 rows and 200 steps,
so what matters is determinism (seeded sampling, seeded init), exact loss masking, and
handling prompts longer than the context (left-truncated, counted). The same loop continues
training from a round-1 adapter for round two.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.errors import DataError

IGNORE = -100


@dataclass(frozen=True)
class SFTSettings:
    """Training hyper-parameters (the ``[sft]`` config table)."""

    steps: int = 200
    batch_size: int = 8
    lr: float = 1.414e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: Sequence[str] = field(
        default_factory=lambda: ("q_proj", "k_proj", "v_proj", "o_proj")
    )
    max_length: int = 512
    grad_accum: int = 1
    template: str = "plain"
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    threads: int | None = None


@dataclass
class Encoded:
    """Token ids and labels of one row, and whether its prompt was cut."""

    ids: list[int]
    labels: list[int]
    truncated: bool


def encode_rows(tok: Any, rows: Sequence[tuple[str, str]], max_length: int) -> list[Encoded]:
    """BOS + prompt + completion + EOS, labels masked on the prompt.

    When a row does not fit ``max_length``, the prompt loses tokens from the left (its most
    recent turns matter most); a completion alone longer than the budget is cut on the right.
    """
    from paretohqd.stages.kit.policy.loading import bos_prefix

    out = []
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    for i, (prompt, completion) in enumerate(rows):
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        bos = bos_prefix(tok, p)
        c = tok(completion, add_special_tokens=False)["input_ids"] + eos
        if not c or c == eos:
            raise DataError(f"sft: row {i} has an empty completion; drop it from the shard")
        budget = max_length - len(bos)
        truncated = False
        if len(p) + len(c) > budget:
            truncated = True
            c = c[: min(len(c), max(budget // 2, budget - len(p)))]
            keep = budget - len(c)
            p = p[len(p) - keep :] if keep > 0 else []
        ids = bos + p + c
        labels = [IGNORE] * (len(bos) + len(p)) + c
        out.append(Encoded(ids, labels, truncated))
    return out


def collate(rows: Sequence[Encoded], pad_id: int, device: str) -> dict[str, Any]:
    import torch

    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, r in enumerate(rows):
        ids[j, : len(r.ids)] = torch.tensor(r.ids)
        labels[j, : len(r.labels)] = torch.tensor(r.labels)
        mask[j, : len(r.ids)] = 1
    return {
        "input_ids": ids.to(device),
        "labels": labels.to(device),
        "attention_mask": mask.to(device),
    }


def completion_nll(model: Any, batch: dict[str, Any]) -> Any:
    """Mean NLL over completion tokens (labels != -100), shifted for next-token prediction."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE
    )


def lora_policy(
    base_model: str,
    settings: SFTSettings,
    *,
    padding_side: str = "right",
    init_adapter: Path | None = None,
) -> tuple[Any, Any, str]:
    """Tokenizer, policy with a trainable LoRA adapter (fresh, seeded, or ``init_adapter``), device.

    Every trainer (SFT, the pairwise methods, PAMA) starts here, so LoRA settings, seeding and
    devices agree; the frozen reference is the same model with the adapter disabled.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from paretohqd.stages.kit.policy.loading import load_policy, load_tokenizer, pick_device

    device = pick_device(settings.device)
    torch.manual_seed(settings.seed)
    tok = load_tokenizer(base_model, padding_side=padding_side)
    model = load_policy(
        base_model, adapter=init_adapter, trainable=True, device=device, dtype=settings.dtype
    )
    if init_adapter is None:
        model = get_peft_model(
            model,
            LoraConfig(
                r=settings.lora_r,
                lora_alpha=settings.lora_alpha,
                lora_dropout=settings.lora_dropout,
                target_modules=list(settings.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    return tok, model, device


def train_lora(
    base_model: str,
    rows: Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    settings: SFTSettings,
    init_adapter: Path | None = None,
    extra_state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune a LoRA adapter on ``rows`` and save it atomically to ``out_dir``.

    Returns metrics (first/last loss, truncated rows, seconds). ``init_adapter`` continues from
    an existing adapter (round two); otherwise a fresh LoRA is initialised with ``settings.seed``.
    Runs on ``settings.threads`` torch threads when set.
    """
    from paretohqd.stages.kit.policy.loading import torch_threads

    with torch_threads(settings.threads):
        return _train_lora(
            base_model,
            rows,
            out_dir,
            settings=settings,
            init_adapter=init_adapter,
            extra_state=extra_state,
        )


def _train_lora(
    base_model: str,
    rows: Sequence[tuple[str, str]],
    out_dir: Path,
    *,
    settings: SFTSettings,
    init_adapter: Path | None,
    extra_state: dict[str, Any] | None,
) -> dict[str, Any]:
    import torch

    if not rows:
        raise DataError("sft: no training rows")
    tok, model, device = lora_policy(base_model, settings, init_adapter=init_adapter)
    from paretohqd.stages.kit.policy.loading import render_prompt

    rows = [(render_prompt(tok, p, settings.template), c) for p, c in rows]
    encoded = encode_rows(tok, rows, settings.max_length)
    base_before = base_checksum(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(settings.warmup_steps, 1))
    )
    gen = torch.Generator().manual_seed(settings.seed)
    order: list[int] = []
    log = []
    tokens = 0
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(settings.steps):
        total = 0.0
        opt.zero_grad(set_to_none=True)
        for _ in range(settings.grad_accum):
            if len(order) < settings.batch_size:
                order += torch.randperm(len(encoded), generator=gen).tolist()
            take, order = order[: settings.batch_size], order[settings.batch_size :]
            batch = collate([encoded[i] for i in take], tok.pad_token_id, device)
            tokens += int(batch["attention_mask"].sum())
            loss = completion_nll(model, batch) / settings.grad_accum
            loss.backward()
            total += loss.item()
        if not math.isfinite(total):
            raise DataError(f"sft: loss became {total} at step {step}; lower sft.lr")
        opt.step()
        sched.step()
        log.append({"step": step, "loss": round(total, 6), "lr": sched.get_last_lr()[0]})
    seconds = time.perf_counter() - t0
    metrics = {
        "rows": len(rows),
        "steps": settings.steps,
        "examples": settings.steps * settings.batch_size * settings.grad_accum,
        "tokens": tokens,
        "cpu_seconds": round(time.process_time() - c0, 3),
        "truncated_rows": sum(e.truncated for e in encoded),
        "first_loss": log[0]["loss"],
        "last_loss": log[-1]["loss"],
        "mean_loss_last10": round(float(np.mean([e["loss"] for e in log[-10:]])), 6),
        "seconds": round(seconds, 3),
        "device": device,
    }
    if base_checksum(model) != base_before:
        raise RuntimeError("sft: base model weights changed; only the adapter may train")
    state = {
        "settings": asdict(settings),
        "metrics": metrics,
        "base_model": base_model,
        "init_adapter": str(init_adapter or ""),
        **(extra_state or {}),
    }
    save_adapter(out_dir, model, log, state, adapter_card(state))
    return metrics


def save_adapter(
    out_dir: Path,
    model: Any,
    log: Sequence[dict[str, Any]],
    state: dict[str, Any],
    card: str,
    extra: Any = None,
) -> None:
    """Write an adapter directory atomically: peft weights, loss log (Parquet + PNG),
    ``train_state.json`` and the card; ``extra(tmp)`` adds method-specific files first."""
    from paretohqd.atomic import atomic_path, write_text

    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        if extra is not None:
            extra(tmp)
        write_training_log(tmp, [{k: e[k] for k in ("step", "loss", "lr")} for e in log])
        write_text(tmp / "train_state.json", json.dumps(state, indent=2, default=list))
        write_text(tmp / "README.md", card)


def base_checksum(model: Any) -> float:
    """A cheap fingerprint of the frozen (non-LoRA) weights, checked before and after."""
    import torch

    with torch.no_grad():
        return float(
            sum(p.double().sum().item() for n, p in model.named_parameters() if "lora_" not in n)
        )


def write_training_log(directory: Path, log: Sequence[dict[str, Any]]) -> None:
    """``training_log.parquet`` (step, loss, lr) and ``loss.png`` beside the adapter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    from paretohqd.atomic import write_parquet

    frame = pl.DataFrame(list(log), schema={"step": pl.Int32, "loss": pl.Float64, "lr": pl.Float64})
    write_parquet(directory / "training_log.parquet", frame)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(frame["step"], frame["loss"], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("completion NLL")
    ax.set_title(directory.name.split(".")[0] or "loss")
    fig.tight_layout()
    fig.savefig(directory / "loss.png", dpi=100)
    plt.close(fig)


def adapter_card(state: dict[str, Any]) -> str:
    """A model card for one adapter: what it was trained on, how, and how to load it."""
    s, m = state["settings"], state["metrics"]
    pref = state.get("shard_card") or {}
    weights = ", ".join(f"{k} {v}" for k, v in pref.items()) or "n/a"
    return f"""---
library_name: peft
base_model: {state["base_model"]}
tags: [paretohqd, lora, sft]
---
# {state.get("pref_id", "adapter")}: LoRA SFT adapter

Preference: {weights}. Trained by paretohqd on the preference's shard ({m["rows"]} rows,
{m["truncated_rows"]} with the prompt cut to fit {s["max_length"]} tokens) for {m["steps"]} steps
of batch {s["batch_size"]} × {s["grad_accum"]} accumulation, AdamW lr {s["lr"]}, LoRA r
{s["lora_r"]} / alpha {s["lora_alpha"]} on {", ".join(s["target_modules"])}, seed {s["seed"]},
prompt template `{s["template"]}`{
        ", continuing " + state["init_adapter"] if state["init_adapter"] else ""
    }. Loss {m["first_loss"]:.4f} → {m["last_loss"]:.4f} (`training_log.parquet`,
`loss.png`).

```python
from peft import PeftModel
from transformers import AutoModelForCausalLM
model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), ADAPTER_DIR)
```

Limits: trained on ~100 automatically selected samples scored by the configured reward models;
it inherits their biases and the base model's limits.
"""
