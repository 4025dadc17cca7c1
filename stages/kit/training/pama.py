"""PAMA (docs/algorithms.md, "PAMA"): online multi-objective PPO with Noon clipping and Theorem 1.

Each iteration samples prompts, generates with the current policy (LoRA on the start model),
scores the responses with the configured reward scorers, estimates one advantage stream per
objective with its own value head (GAE, γ = 1, λ = 0.95 as in TRL), clips them at zero (Noon),
combines them with Theorem 1's closed form s* (per token by default, per batch as an option)
and takes the clipped PPO step.

PAMA itself has no preference vector; this is how the pipeline gets one model per preference w.
Theorem 1 follows the *smallest* advantage, so stream i's reward is scaled by
``max(w) / (w_i σ_i)`` (Tchebycheff-style, :func:`pama_stream_scales`): the most-wanted
objective has the smallest scaled advantage and drives the update, and ``σ_i``, the running
spread of objective i's rewards, makes w compare objectives in units of their spread.
Objectives with w_i = 0 are left out. The per-token KL penalty to the reference (the start
model, adapter disabled) is added *after* the weighting, identically to every stream, so the
combined advantage carries one KL penalty with coefficient ``kl_coef`` whatever w is.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.errors import DataError


def _gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
    """Generalised advantage estimates and returns over response tokens, per row (torch)."""
    import torch

    b, t = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    for j in reversed(range(t)):
        nxt = values[:, j + 1] * mask[:, j + 1] if j + 1 < t else torch.zeros_like(last)
        delta = rewards[:, j] + gamma * nxt - values[:, j]
        last = delta + gamma * lam * last * (mask[:, j + 1] if j + 1 < t else 0)
        adv[:, j] = last * mask[:, j]
    return adv, (adv + values) * mask


class RewardMoments:
    """Running mean and variance of each objective's rewards (Welford), for whitening."""

    def __init__(self, m: int) -> None:
        self.n = 0
        self.mean = np.zeros(m)
        self.m2 = np.zeros(m)

    def update(self, rewards: np.ndarray) -> None:
        """Add a batch ``(B, m)`` of rewards (Chan et al.'s parallel update)."""
        b = rewards.shape[0]
        if b == 0:
            return
        mean_b = rewards.mean(0)
        m2_b = ((rewards - mean_b) ** 2).sum(0)
        delta = mean_b - self.mean
        total = self.n + b
        self.mean = self.mean + delta * b / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * b / total
        self.n = total

    def std(self) -> np.ndarray:
        """The spread of each objective so far; 1 where it is not yet measurable (n < 2 or 0)."""
        if self.n < 2:
            return np.ones_like(self.mean)
        std = np.sqrt(self.m2 / (self.n - 1))
        return np.where(std > 1e-12, std, 1.0)


def train_pama(
    base_model: str,
    prompts: Sequence[str],
    scorers: Sequence[Any],
    weights: Sequence[float],
    out_dir: Path,
    *,
    settings: Any,
    cfg: Any,
    extra_state: dict[str, Any] | None = None,
    generator: Any | None = None,
) -> dict[str, Any]:
    """Run ``cfg.steps`` PAMA iterations and save the adapter, value heads, log and card.

    Rollouts come from the training policy itself, or, with ``generator`` (a vLLM
    :class:`~paretohqd.stages.kit.policy.generate.VllmGenerator`), from a snapshot of the current
    adapter saved each iteration and served as a new ``LoRARequest``; the responses are then
    re-tokenised for the PPO log-probs.
    """
    import torch
    from safetensors.torch import save_file

    from paretohqd.stages.kit.policy.loading import bos_prefix, render_prompt
    from paretohqd.stages.kit.training.sft import base_checksum, lora_policy, save_adapter
    from paretohqd.stages.kit.training.solvers import pama_combined_advantage, pama_stream_scales

    active, _ = pama_stream_scales(weights)
    moments = RewardMoments(len(weights))
    if not prompts:
        raise DataError("pama: no prompts")
    tok, model, device = lora_policy(base_model, settings, padding_side="left")
    rng = np.random.default_rng(settings.seed)
    hidden = model.config.hidden_size
    heads = torch.nn.Linear(hidden, len(active)).to(device)
    torch.nn.init.zeros_(heads.weight)
    torch.nn.init.zeros_(heads.bias)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    vopt = torch.optim.AdamW(heads.parameters(), lr=cfg.value_lr)
    base_before = base_checksum(model)
    limit = max(8, settings.max_length - cfg.max_new_tokens)
    rollout_dir = out_dir.parent / f".rollout-{out_dir.name}"
    log: list[dict[str, Any]] = []
    t0, c0 = time.perf_counter(), time.process_time()
    tokens = generated = rollouts = 0
    scoring = 0.0
    for step in range(cfg.steps):
        pick = rng.choice(len(prompts), size=min(cfg.batch_size, len(prompts)), replace=False)
        texts = [render_prompt(tok, prompts[i], settings.template) for i in pick]
        raw_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        enc = [bos_prefix(tok, ids) + ids for ids in raw_ids]
        enc = [ids[-limit:] for ids in enc]
        width = max(map(len, enc))
        ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for j, row in enumerate(enc):
            ids[j, width - len(row) :] = torch.tensor(row)
            att[j, width - len(row) :] = 1
        ids, att = ids.to(device), att.to(device)
        model.eval()
        if generator is None:  # sample from the training policy in process
            with torch.no_grad():
                seq = model.generate(
                    input_ids=ids,
                    attention_mask=att,
                    do_sample=True,
                    top_p=cfg.top_p,
                    top_k=0,
                    max_new_tokens=cfg.max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            resp = seq[:, width:]
        else:  # the generation backend (vLLM) samples from a snapshot of the current adapter
            snapshot = rollout_dir / f"step-{step:05d}"
            model.save_pretrained(str(snapshot))
            result = generator.generate(
                [prompts[i] for i in pick], adapter=snapshot, seed=settings.seed + step
            )
            shutil.rmtree(snapshot, ignore_errors=True)
            budget = cfg.max_new_tokens - 1
            new = [
                [*tok(t or "", add_special_tokens=False)["input_ids"][:budget], tok.eos_token_id]
                for t in result.texts
            ]
            resp = torch.full((len(new), max(map(len, new))), tok.pad_token_id, dtype=torch.long)
            for j, row in enumerate(new):
                resp[j, : len(row)] = torch.tensor(row)
            resp = resp.to(device)
            seq = torch.cat([ids, resp], 1)
        rmask = torch.ones_like(resp, dtype=torch.float32)
        for j in range(resp.shape[0]):  # tokens after the first EOS are not part of the answer
            eos = (resp[j] == tok.eos_token_id).nonzero()
            if len(eos):
                rmask[j, int(eos[0]) + 1 :] = 0
        responses = [
            tok.decode(r[m.bool()].tolist(), skip_special_tokens=True)
            for r, m in zip(resp, rmask, strict=True)
        ]
        s0 = time.perf_counter()
        raw = np.stack([s.score([prompts[i] for i in pick], responses, None) for s in scorers], 1)
        scoring += time.perf_counter() - s0
        rollouts += len(pick)
        generated += int(rmask.sum())
        moments.update(raw)
        _, scale = pama_stream_scales(weights, moments.std() if cfg.whiten else None)
        rewards = raw[:, active] * scale
        full_att = torch.cat([att, (rmask > 0).long()], 1)

        def forward(
            with_grad: bool, *, seq: Any = seq, full_att: Any = full_att, width: int = width
        ) -> tuple[Any, Any]:
            ctx = torch.enable_grad() if with_grad else torch.no_grad()
            with ctx:
                out = model(input_ids=seq, attention_mask=full_att, output_hidden_states=True)
                logits = out.logits[:, width - 1 : -1].float()
                lp = torch.log_softmax(logits, -1).gather(-1, seq[:, width:, None]).squeeze(-1)
                return lp, out.hidden_states[-1][:, width - 1 : -1]

        old_lp, hid = forward(False)
        with torch.no_grad(), model.disable_adapter():
            ref_lp, _ = forward(False)
        with torch.no_grad():
            values = heads(hid.float()).permute(2, 0, 1)  # (N, B, T)
        kl = (old_lp - ref_lp) * rmask
        last = (rmask.sum(1) - 1).clamp(min=0).long()
        advs, rets = [], []
        for n in range(len(active)):
            r = -cfg.kl_coef * kl  # the same KL penalty in every (already weighted) stream
            r[torch.arange(r.shape[0]), last] += torch.tensor(
                rewards[:, n], dtype=r.dtype, device=r.device
            )
            a, ret = _gae(r, values[n], rmask, 1.0, cfg.lam)
            advs.append(a)
            rets.append(ret)
        adv = torch.stack(advs)
        model.train()
        for _ in range(cfg.ppo_epochs):
            tokens += int(full_att.sum())
            new_lp, hid = forward(True)
            ratio = torch.exp(new_lp - old_lp)
            ok = (ratio <= 1 + cfg.cliprange).detach().cpu().numpy()
            s_star = torch.tensor(
                pama_combined_advantage(
                    adv.detach().cpu().numpy(),
                    ok,
                    granularity=cfg.granularity,
                    valid_mask=rmask.bool().cpu().numpy(),
                ),
                dtype=torch.float32,
                device=device,
            )
            clipped = torch.clamp(ratio, 1 - cfg.cliprange, 1 + cfg.cliprange)
            pg = -(torch.minimum(ratio * s_star, clipped * s_star) * rmask).sum() / rmask.sum()
            v = heads(hid.detach().float()).permute(2, 0, 1)
            vloss = (((v - torch.stack(rets)) ** 2) * rmask).sum() / (rmask.sum() * len(active))
            opt.zero_grad(set_to_none=True)
            vopt.zero_grad(set_to_none=True)
            (pg + vloss).backward()
            opt.step()
            vopt.step()
        log.append(
            {
                "step": step,
                "loss": round(float(pg.item()), 6),
                "lr": settings.lr,
                "value_loss": round(float(vloss.item()), 6),
                "kl": round(float((kl.sum() / rmask.sum()).item()), 6),
                **{f"reward_{i}": round(float(raw[:, i].mean()), 6) for i in range(raw.shape[1])},
                "update_share": round(float((s_star > 0).float().mean().item()), 4),
                **{f"scale_{i}": round(float(x), 6) for i, x in zip(active, scale, strict=True)},
            }
        )
    shutil.rmtree(rollout_dir, ignore_errors=True)
    if base_checksum(model) != base_before:
        raise RuntimeError("pama: base weights changed; only the adapter may train")
    metrics = {
        "steps": cfg.steps * cfg.ppo_epochs,
        "iterations": cfg.steps,
        "examples": rollouts,
        "tokens": tokens,
        "generated_tokens": generated,
        "prompts": len(prompts),
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(time.process_time() - c0, 3),
        "scoring_seconds": round(scoring, 3),
        "first_reward": [log[0][f"reward_{i}"] for i in range(len(scorers))],
        "last_reward": [log[-1][f"reward_{i}"] for i in range(len(scorers))],
        "first_loss": log[0]["loss"],
        "last_loss": log[-1]["loss"],
        "device": device,
        "objectives_used": active,
    }
    state = {
        "method": "pama",
        "settings": asdict(settings),
        "options": cfg.model_dump(),
        "metrics": metrics,
        "weights": list(map(float, weights)),
        "base_model": base_model,
        **(extra_state or {}),
    }

    def value_heads_and_log(tmp: Path) -> None:
        import polars as pl

        from paretohqd.atomic import write_parquet

        weights = {"weight": heads.weight, "bias": heads.bias}
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in weights.items()},
            str(tmp / "value_heads.safetensors"),
        )
        write_parquet(tmp / "pama_log.parquet", pl.DataFrame(log))

    save_adapter(out_dir, model, log, state, pama_card(state), extra=value_heads_and_log)
    return metrics


def _start_words(state: dict[str, Any]) -> str:
    if state.get("start") == "sft":
        return "the shared SFT model (also the frozen reference)"
    return "the base model (also the frozen reference)"


def pama_card(state: dict[str, Any]) -> str:
    """Model card of a PAMA adapter."""
    m, o, s = state["metrics"], state["options"], state["settings"]
    return f"""---
library_name: peft
base_model: {state["base_model"]}
tags: [paretohqd, lora, pama, ppo]
---
# {state.get("pref_id", "adapter")}: PAMA LoRA adapter

Preference weights {state["weights"]} over {state.get("objectives")}. Online PPO with Noon
clipping and Theorem 1 ({o["granularity"]} granularity), {m["iterations"]} iterations of
{o["batch_size"]} sampled prompts, lr {s["lr"]:.3g} (LoRA r {s["lora_r"]} / alpha
{s["lora_alpha"]}), from {_start_words(state)}, KL coefficient {o["kl_coef"]}, cliprange
{o["cliprange"]}. Stream i's reward is scaled by max(w) / (w_i σ_i) (Tchebycheff-style, so the
most-wanted objective drives Theorem 1's min; σ_i = running reward spread when whitening is on:
{o.get("whiten", False)}); the KL penalty enters every stream after the weighting. Mean rewards
{m["first_reward"]} → {m["last_reward"]} (`pama_log.parquet`); value heads in
`value_heads.safetensors`.
"""
