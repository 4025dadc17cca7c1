"""LoRA supervised fine-tuning on prompt/completion rows: the loss is NLL on the completion.

SFT is an :class:`~paretohqd.stages.kit.training.loop.Objective` of the one training loop. The
shards are ~100 rows and 200 steps, so what matters is determinism (the loop's seeding), exact
loss masking, and handling prompts longer than the context (left-truncated, counted). Round two
continues a round-one adapter with the same objective (``init_adapter`` of the loop). It lives
in the kit because several stages train it: sft, sft_linear, sft_round2 and sft_init.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paretohqd.errors import DataError
from paretohqd.stages.kit.training.loop import FusableObjective, Step, StepLoss

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
    #: Train the stage's adapters together (:mod:`~paretohqd.stages.kit.training.fused`).
    fused: bool = True


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


def upcast(logits: Any) -> Any:
    """Logits for the loss: half precision goes to float32 (its log-softmax would lose the
    small probabilities); float32 and float64 stay as they are (the equality tests run in
    float64)."""
    import torch

    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def completion_nll(model: Any, batch: dict[str, Any]) -> Any:
    """Mean NLL over completion tokens (labels != -100), shifted for next-token prediction."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = upcast(logits[:, :-1])
    target = batch["labels"][:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE
    )


class SftObjective(FusableObjective):
    """Completion NLL on prompt/completion rows (round one, the linear arm, round two, and the
    shared start of the baselines)."""

    name = "sft"
    data_parallel = True

    def __init__(self, rows: Sequence[tuple[str, str]], *, lr_option: str = "sft.lr") -> None:
        if not rows:
            raise DataError("sft: no training rows")
        self.rows = list(rows)
        self.lr_option = lr_option

    def prepare(self, tok: Any, model: Any, device: str, settings: SFTSettings) -> int:
        """Render the prompts with the settings' template and encode the rows."""
        from paretohqd.stages.kit.policy.loading import render_prompt

        rows = [(render_prompt(tok, p, settings.template), c) for p, c in self.rows]
        self.encoded = encode_rows(tok, rows, settings.max_length)
        self.model, self.device, self.pad_id = model, device, tok.pad_token_id
        return len(self.encoded)

    def gradients(self, step: Step) -> StepLoss:
        """Backward on each micro-batch's NLL, divided by the accumulation."""
        total, tokens = 0.0, 0
        for take in step.micro_batches():
            batch = collate([self.encoded[i] for i in take], self.pad_id, self.device)
            tokens += int(batch["attention_mask"].sum())
            loss = completion_nll(self.model, batch) / step.accum
            loss.backward()
            total += loss.item()
        return StepLoss(total, tokens)

    def fused_rows(self, take: list[int]) -> list[Encoded]:
        """The micro-batch's rows."""
        return [self.encoded[i] for i in take]

    def fused_losses(
        self, take: list[int], logps: Any, counts: Any, reference: Any, accum: int
    ) -> list[Any]:
        """The mean NLL over the micro-batch's completion tokens (:func:`completion_nll`)."""
        return [-logps.sum() / counts.sum()]

    def metrics(self, log: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Rows, rows whose prompt was cut, and the mean loss of the last ten steps."""
        return {
            "rows": len(self.rows),
            "truncated_rows": sum(e.truncated for e in self.encoded),
            "mean_loss_last10": round(float(np.mean([e["loss"] for e in log[-10:]])), 6),
        }

    def card(self, state: dict[str, Any]) -> str:
        """The card of an SFT adapter."""
        return adapter_card(state)


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
