"""PAMA (docs/algorithms.md, "PAMA"): online multi-objective PPO with Noon clipping and Theorem 1.

Each training step samples prompts, generates with the current policy (LoRA on the start model),
scores the responses with the configured reward scorers, estimates one advantage stream per
objective with its own value head (GAE, γ = 1, λ = 0.95 as in TRL), clips them at zero (Noon),
combines them with Theorem 1's closed form s* (per token by default, per batch as an option)
and takes ``ppo_epochs`` clipped PPO steps of the one training loop.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.errors import DataError
from paretohqd.stages.kit.training.loop import Objective, OptimiserOptions, Step, StepLoss
from paretohqd.stages.kit.training.sft import SFTSettings
from paretohqd.stages.kit.training.solvers import pama_combined_advantage, pama_stream_scales


def gae(rewards: Any, values: Any, mask: Any, gamma: float, lam: float) -> tuple[Any, Any]:
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


@dataclass
class Rollout:
    """One step's rollout: sequences, masks, the old policy's log-probs, per-stream advantages
    and returns, and its log columns (KL, mean rewards, stream scales)."""

    seq: Any
    attention: Any
    width: int
    mask: Any
    old_lp: Any
    adv: Any
    returns: Any
    kl: float
    rewards: dict[str, float]
    scales: dict[str, float]


class PamaObjective(Objective):
    """PAMA for one preference: rollouts, value heads with their own optimiser, PPO epochs.

    Rollouts come from the training policy itself, or, with ``generator`` (a vLLM
    :class:`~paretohqd.stages.kit.policy.generate.VllmGenerator`), from a snapshot of the
    current adapter saved under ``snapshots`` each step and served as a new ``LoRARequest``;
    the responses are then re-tokenised for the PPO log-probs.
    """

    name = "pama"
    padding_side = "left"
    lr_option = "pama.lr"

    def __init__(
        self,
        prompts: Sequence[str],
        scorers: Sequence[Any],
        weights: Sequence[float],
        cfg: Any,
        *,
        snapshots: Path,
        generator: Any | None = None,
    ) -> None:
        self.active, _ = pama_stream_scales(weights)
        if not prompts:
            raise DataError("pama: no prompts")
        self.prompts, self.scorers, self.weights, self.cfg = list(prompts), scorers, weights, cfg
        self.snapshots, self.generator = snapshots, generator
        self.moments = RewardMoments(len(weights))
        self.updates = cfg.ppo_epochs
        self.generated = self.rollouts = 0
        self.scoring = 0.0

    def steps(self, settings: SFTSettings) -> int:
        """PPO iterations: ``pama.steps``."""
        return int(self.cfg.steps)

    def optimiser(self, settings: SFTSettings) -> OptimiserOptions:
        """AdamW at ``lr`` with torch's default weight decay (0.01) and a constant rate."""
        return OptimiserOptions(settings.lr, weight_decay=0.01, warmup_steps=0)

    def prepare(self, tok: Any, model: Any, device: str, settings: SFTSettings) -> int:
        """The numpy generator of prompt picks, and zero-initialised value heads (one per
        active objective) with their own optimiser. Nothing is drawn from the loop's sampler."""
        import torch

        self.rng = np.random.default_rng(settings.seed)
        self.heads = torch.nn.Linear(model.config.hidden_size, len(self.active)).to(device)
        torch.nn.init.zeros_(self.heads.weight)
        torch.nn.init.zeros_(self.heads.bias)
        self.value_opt = torch.optim.AdamW(self.heads.parameters(), lr=self.cfg.value_lr)
        self.tok, self.model, self.device = tok, model, device
        self.limit = max(8, settings.max_length - self.cfg.max_new_tokens)
        self.seed, self.template = settings.seed, settings.template
        return 0

    def gradients(self, step: Step) -> StepLoss:
        """One PPO epoch on this step's rollout (made on its first epoch): the clipped policy
        loss on Theorem 1's s*, plus the value heads' loss, which their optimiser steps."""
        import torch

        if step.epoch == 0:
            self.rollout = self.roll_out(step.index)
        r, cfg = self.rollout, self.cfg
        new_lp, hid = self.forward(r.seq, r.attention, r.width, with_grad=True)
        ratio = torch.exp(new_lp - r.old_lp)
        ok = (ratio <= 1 + cfg.cliprange).detach().cpu().numpy()
        s_star = torch.tensor(
            pama_combined_advantage(
                r.adv.detach().cpu().numpy(),
                ok,
                granularity=cfg.granularity,
                valid_mask=r.mask.bool().cpu().numpy(),
            ),
            dtype=torch.float32,
            device=self.device,
        )
        clipped = torch.clamp(ratio, 1 - cfg.cliprange, 1 + cfg.cliprange)
        pg = -(torch.minimum(ratio * s_star, clipped * s_star) * r.mask).sum() / r.mask.sum()
        v = self.heads(hid.detach().float()).permute(2, 0, 1)
        streams = len(self.active)
        vloss = (((v - r.returns) ** 2) * r.mask).sum() / (r.mask.sum() * streams)
        self.value_opt.zero_grad(set_to_none=True)
        (pg + vloss).backward()
        self.value_opt.step()
        columns = {
            "value_loss": round(float(vloss.item()), 6),
            "kl": r.kl,
            **r.rewards,
            "update_share": round(float((s_star > 0).float().mean().item()), 4),
            **r.scales,
        }
        return StepLoss(float(pg.item()), int(r.attention.sum()), columns)

    def forward(self, seq: Any, attention: Any, width: int, *, with_grad: bool) -> Any:
        """Per-token log-probs of the responses and the last hidden states before them."""
        import torch

        with torch.enable_grad() if with_grad else torch.no_grad():
            out = self.model(input_ids=seq, attention_mask=attention, output_hidden_states=True)
            logits = out.logits[:, width - 1 : -1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, seq[:, width:, None]).squeeze(-1)
            return lp, out.hidden_states[-1][:, width - 1 : -1]

    def roll_out(self, step: int) -> Rollout:
        """Sample prompts, generate, score, and estimate each stream's advantages."""
        import torch

        pick = self.rng.choice(
            len(self.prompts), size=min(self.cfg.batch_size, len(self.prompts)), replace=False
        )
        ids, att = self.encode_prompts(pick)
        width = ids.shape[1]
        self.model.eval()
        seq, resp = self.generate(ids, att, pick, step)
        mask = torch.ones_like(resp, dtype=torch.float32)
        for j in range(resp.shape[0]):  # tokens after the first EOS are not part of the answer
            eos = (resp[j] == self.tok.eos_token_id).nonzero()
            if len(eos):
                mask[j, int(eos[0]) + 1 :] = 0
        responses = [
            self.tok.decode(r[m.bool()].tolist(), skip_special_tokens=True)
            for r, m in zip(resp, mask, strict=True)
        ]
        s0 = time.perf_counter()
        texts = [self.prompts[i] for i in pick]
        raw = np.stack([s.score(texts, responses, None) for s in self.scorers], 1)
        self.scoring += time.perf_counter() - s0
        self.rollouts += len(pick)
        self.generated += int(mask.sum())
        self.moments.update(raw)
        _, scale = pama_stream_scales(self.weights, self.moments.std() if self.cfg.whiten else None)
        attention = torch.cat([att, (mask > 0).long()], 1)
        old_lp, hid = self.forward(seq, attention, width, with_grad=False)
        with torch.no_grad(), self.model.disable_adapter():
            ref_lp, _ = self.forward(seq, attention, width, with_grad=False)
        with torch.no_grad():
            values = self.heads(hid.float()).permute(2, 0, 1)  # (N, B, T)
        kl = (old_lp - ref_lp) * mask
        adv, returns = self.advantages(raw[:, self.active] * scale, kl, values, mask)
        self.model.train()
        return Rollout(
            seq,
            attention,
            width,
            mask,
            old_lp,
            adv,
            returns,
            kl=round(float((kl.sum() / mask.sum()).item()), 6),
            rewards={f"reward_{i}": round(float(raw[:, i].mean()), 6) for i in range(raw.shape[1])},
            scales={
                f"scale_{i}": round(float(x), 6) for i, x in zip(self.active, scale, strict=True)
            },
        )

    def encode_prompts(self, pick: np.ndarray) -> tuple[Any, Any]:
        """The picked prompts rendered, BOS-prefixed, cut to the context left for the answer
        and padded on the left: ids and attention mask."""
        import torch

        from paretohqd.stages.kit.policy.loading import bos_prefix, render_prompt

        tok = self.tok
        texts = [render_prompt(tok, self.prompts[i], self.template) for i in pick]
        raw_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        enc = [(bos_prefix(tok, ids) + ids)[-self.limit :] for ids in raw_ids]
        width = max(map(len, enc))
        ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
        att = torch.zeros_like(ids)
        for j, row in enumerate(enc):
            ids[j, width - len(row) :] = torch.tensor(row)
            att[j, width - len(row) :] = 1
        return ids.to(self.device), att.to(self.device)

    def generate(self, ids: Any, att: Any, pick: np.ndarray, step: int) -> tuple[Any, Any]:
        """Prompt-and-response and response token ids: sampled from the training policy in
        process, or by the generation backend (vLLM) from a snapshot of the current adapter."""
        import torch

        tok, cfg = self.tok, self.cfg
        if self.generator is None:
            with torch.no_grad():
                seq = self.model.generate(
                    input_ids=ids,
                    attention_mask=att,
                    do_sample=True,
                    top_p=cfg.top_p,
                    top_k=0,
                    max_new_tokens=cfg.max_new_tokens,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                )
            return seq, seq[:, ids.shape[1] :]
        snapshot = self.snapshots / f"step-{step:05d}"
        self.model.save_pretrained(str(snapshot))
        result = self.generator.generate(
            [self.prompts[i] for i in pick], adapter=snapshot, seed=self.seed + step
        )
        shutil.rmtree(self.snapshots, ignore_errors=True)
        budget = cfg.max_new_tokens - 1
        new = [
            [*tok(t or "", add_special_tokens=False)["input_ids"][:budget], tok.eos_token_id]
            for t in result.texts
        ]
        resp = torch.full((len(new), max(map(len, new))), tok.pad_token_id, dtype=torch.long)
        for j, row in enumerate(new):
            resp[j, : len(row)] = torch.tensor(row)
        resp = resp.to(self.device)
        return torch.cat([ids, resp], 1), resp

    def advantages(self, rewards: np.ndarray, kl: Any, values: Any, mask: Any) -> tuple[Any, Any]:
        """Per-stream GAE advantages and returns: each stream's scaled reward at its last
        token, the same KL penalty on every token of every stream."""
        import torch

        last = (mask.sum(1) - 1).clamp(min=0).long()
        advs, rets = [], []
        for n in range(len(self.active)):
            r = -self.cfg.kl_coef * kl  # the same KL penalty in every (already weighted) stream
            r[torch.arange(r.shape[0]), last] += torch.tensor(
                rewards[:, n], dtype=r.dtype, device=r.device
            )
            a, ret = gae(r, values[n], mask, 1.0, self.cfg.lam)
            advs.append(a)
            rets.append(ret)
        return torch.stack(advs), torch.stack(rets)

    def metrics(self, log: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Iterations, rollouts (PAMA's examples), generated tokens, scoring time, rewards."""
        m = len(self.scorers)
        return {
            "iterations": self.cfg.steps,
            "examples": self.rollouts,
            "generated_tokens": self.generated,
            "prompts": len(self.prompts),
            "scoring_seconds": round(self.scoring, 3),
            "first_reward": [log[0][f"reward_{i}"] for i in range(m)],
            "last_reward": [log[-1][f"reward_{i}"] for i in range(m)],
            "objectives_used": self.active,
        }

    def state(self) -> dict[str, Any]:
        """PAMA's options and the preference."""
        return {"options": self.cfg.model_dump(), "weights": list(map(float, self.weights))}

    def write_files(self, directory: Path, log: Sequence[dict[str, Any]]) -> None:
        """The value heads (``value_heads.safetensors``) and the full log (``pama_log.parquet``)."""
        import polars as pl
        from safetensors.torch import save_file

        from paretohqd.atomic import write_parquet

        heads = {"weight": self.heads.weight, "bias": self.heads.bias}
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in heads.items()},
            str(directory / "value_heads.safetensors"),
        )
        write_parquet(directory / "pama_log.parquet", pl.DataFrame(log))

    def card(self, state: dict[str, Any]) -> str:
        """The card of a PAMA adapter."""
        return pama_card(state)


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
