"""Pairwise methods (MODPO, RACO): their shared objective, and one adapter per preference.

:class:`PairwiseObjective` is what the pairwise methods share in the one training loop: each
micro-batch's pairs are encoded, the summed response log-probs of both responses are computed
under the policy and under the frozen reference (the same model, adapter disabled), and the
method turns their log-ratio difference into per-objective losses and gradients. A method
package subclasses it (``stages/modpo``, ``stages/raco``) and declares its stage with
:func:`~paretohqd.stages.kit.methods.pairwise_stage`, passing its objective and which pairs it
trains on.

:func:`run_pairwise_method` reads ``pairs.parquet`` joined with the samples' text, and makes one
adapter per preference of the select grid into ``adapters/<method>/<pref_id>/`` through the
engine's :meth:`~paretohqd.stage.StageContext.map_items`, which keeps adapters whose pairs and
settings did not change.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paretohqd.errors import DataError
from paretohqd.executor import Item
from paretohqd.stage import StageContext
from paretohqd.stages.kit.methods import MethodSpec
from paretohqd.stages.kit.tracking import adapter_run
from paretohqd.stages.kit.training.loop import FusableObjective, Step, StepLoss
from paretohqd.stages.kit.training.sft import IGNORE, SFTSettings

if TYPE_CHECKING:
    from paretohqd.stages.kit.training.fused import Done


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

    def subset(self, keep: np.ndarray) -> PairRows:
        """The pairs at indices ``keep``, in that order."""
        return PairRows(
            prompts=[self.prompts[i] for i in keep],
            a=[self.a[i] for i in keep],
            b=[self.b[i] for i in keep],
            signs=self.signs[keep],
            margins=self.margins[keep],
        )


@dataclass
class StepInputs:
    """What a method's losses see for one micro-batch."""

    delta: Any  # (B,) policy-minus-reference log-ratio difference, with grad
    signs: Any  # (B, M) tensor
    margins: Any  # (B, M) tensor


def response_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Summed log-prob of the labelled (response) tokens, per row."""
    import torch

    from paretohqd.stages.kit.training.sft import upcast

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = upcast(logits[:, :-1])
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    safe = torch.where(mask, labels, torch.zeros_like(labels))
    lp = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(-1)


class PairwiseObjective(FusableObjective):
    """A pairwise method for one preference ``weights``: per-objective losses over
    :class:`StepInputs`, and how they become gradients (:meth:`Objective.gradients`, built on
    :meth:`micro_losses`)."""

    def __init__(self, rows: PairRows, weights: Sequence[float], options: dict[str, Any]) -> None:
        if len(rows) == 0:
            raise DataError(f"{self.name}: no training pairs")
        self.rows = rows
        self.weights = np.asarray(weights, dtype=np.float64)
        self.options = options
        self.lr_option = f"{self.name}.lr"

    @abstractmethod
    def losses(self, inputs: StepInputs) -> list[Any]:
        """The method's losses on one micro-batch (batch means, one per objective it trains)."""

    def prepare(self, tok: Any, model: Any, device: str, settings: SFTSettings) -> int:
        """Encode both responses of every pair after the rendered prompt."""
        import torch

        from paretohqd.stages.kit.policy.loading import render_prompt
        from paretohqd.stages.kit.training.sft import encode_rows

        prompts = [render_prompt(tok, p, settings.template) for p in self.rows.prompts]
        self.enc_a = encode_rows(
            tok, list(zip(prompts, self.rows.a, strict=True)), settings.max_length
        )
        self.enc_b = encode_rows(
            tok, list(zip(prompts, self.rows.b, strict=True)), settings.max_length
        )
        self.signs = torch.tensor(self.rows.signs, dtype=torch.float32)
        self.margins = torch.tensor(self.rows.margins, dtype=torch.float32)
        self.model, self.device, self.pad_id = model, device, tok.pad_token_id
        return len(self.rows)

    def micro_losses(self, step: Step) -> Iterator[list[Any]]:
        """The losses of each of the step's micro-batches; counts tokens and keeps each
        objective's loss (averaged over the accumulation) for the log."""
        import torch

        from paretohqd.stages.kit.training.losses import dpo_delta
        from paretohqd.stages.kit.training.sft import collate

        self.begin_step()
        for take in step.micro_batches():
            ba = collate([self.enc_a[i] for i in take], self.pad_id, self.device)
            bb = collate([self.enc_b[i] for i in take], self.pad_id, self.device)
            self.tokens += int(ba["attention_mask"].sum() + bb["attention_mask"].sum())
            pol_a, pol_b = response_logps(self.model, ba), response_logps(self.model, bb)
            with torch.no_grad(), self.model.disable_adapter():
                ref_a, ref_b = response_logps(self.model, ba), response_logps(self.model, bb)
            yield self._losses(take, dpo_delta(pol_a, pol_b, ref_a, ref_b), step.accum)

    def begin_step(self) -> None:
        """No objective's loss and no token counted yet this step."""
        self.per_objective: np.ndarray | None = None
        self.tokens = 0

    def _losses(self, take: list[int], delta: Any, accum: int) -> list[Any]:
        """The method's losses on micro-batch ``take`` from its log-ratio difference; each
        objective's loss (averaged over the accumulation) is kept for the log."""
        inputs = StepInputs(
            delta, self.signs[take].to(self.device), self.margins[take].to(self.device)
        )
        losses = self.losses(inputs)
        if self.per_objective is None:
            self.per_objective = np.zeros(len(losses))
        self.per_objective += np.array([float(x.item()) for x in losses]) / accum
        return losses

    fused_reference = True

    def fused_rows(self, take: list[int]) -> list[Any]:
        """Both responses of the micro-batch's pairs: every a, then every b."""
        return [self.enc_a[i] for i in take] + [self.enc_b[i] for i in take]

    def fused_losses(
        self, take: list[int], logps: Any, counts: Any, reference: Any, accum: int
    ) -> list[Any]:
        """The method's losses from the policy's and the reference's response log-probs."""
        from paretohqd.stages.kit.training.losses import dpo_delta

        n = len(take)
        delta = dpo_delta(logps[:n], logps[n:], reference[:n], reference[n:])
        return self._losses(take, delta, accum)

    def fused_step(self, loss: float, tokens: int, columns: dict[str, Any]) -> StepLoss:
        """The step's loss with each objective's (see :meth:`step_loss`)."""
        self.tokens = tokens
        return self.step_loss(loss, **columns)

    def step_loss(self, total: float, **columns: Any) -> StepLoss:
        """The step's loss with each objective's loss (``loss_<i>``) and ``columns`` logged."""
        per_objective = [] if self.per_objective is None else self.per_objective.tolist()
        losses = {f"loss_{i}": round(float(x), 6) for i, x in enumerate(per_objective)}
        return StepLoss(total, self.tokens, losses | columns)

    def metrics(self, log: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """How many pairs the adapter trained on."""
        return {"pairs": len(self.rows)}

    def state(self) -> dict[str, Any]:
        """The method's options and the preference."""
        return {"options": self.options, "weights": list(map(float, self.weights))}

    def card(self, state: dict[str, Any]) -> str:
        """The card of a pairwise method's adapter."""
        return method_card(state)


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


#: A method's objective for one preference: ``objective(rows, weights, config table)``.
ObjectiveFactory = Callable[[PairRows, Sequence[float], Any], PairwiseObjective]
#: Which pairs a method trains on for one preference: ``keep(signs, weights) -> indices``.
KeepPairs = Callable[[np.ndarray, Sequence[float]], np.ndarray]


def pair_rows(ctx: StageContext, objectives: list[str]) -> tuple[Any, PairRows]:
    """The pairs joined with their text, in a stable order, as a frame and as :class:`PairRows`."""
    import polars as pl

    pairs = pl.read_parquet(ctx.path("pairs"))
    samples = pl.read_parquet(ctx.path("samples"), columns=["sample_id", "prompt", "response"])
    text = samples.rename({"sample_id": "a_id", "response": "a"})
    frame = (
        pairs.join(text, on="a_id")
        .join(
            samples.select(pl.col("sample_id").alias("b_id"), pl.col("response").alias("b")),
            on="b_id",
        )
        .sort("prompt_id", "a_id", "b_id")
    )
    return frame, PairRows(
        prompts=frame["prompt"].to_list(),
        a=frame["a"].to_list(),
        b=frame["b"].to_list(),
        signs=frame.select([f"sign_{n}" for n in objectives]).to_numpy().astype(np.float32),
        margins=frame.select([f"norm_margin_{n}" for n in objectives]).to_numpy(),
    )


@dataclass(frozen=True)
class PairwiseSpec(MethodSpec):
    """What every preference's worker needs (picklable): the method's start and settings, the
    pairs, its config table and its objective class."""

    rows: PairRows
    method: Any
    objective: ObjectiveFactory


@dataclass(frozen=True)
class PreferencePairs:
    """One preference's item payload: its weights and the pairs it trains on."""

    weights: list[float]
    keep: np.ndarray


def _objective(spec: PairwiseSpec, item: Item) -> PairwiseObjective:
    """Preference ``item``'s objective on the pairs it keeps."""
    pref: PreferencePairs = item.payload
    return spec.objective(spec.rows.subset(pref.keep), pref.weights, spec.method)


def train_preference(spec: PairwiseSpec, item: Item, key: str, target: Path) -> Mapping[str, Any]:
    """The item worker: train preference ``item`` of a pairwise method into ``target``."""
    return spec.train(_objective(spec, item), item, key, target, item.payload.weights)


def train_preferences(
    spec: PairwiseSpec, units: Sequence[tuple[Item, str, Path]], done: Done
) -> None:
    """The group worker: every stale preference's adapter in one fused pass."""
    from paretohqd.stages.kit.training.fused import FusedJob, train_fused

    jobs = [
        FusedJob(
            _objective(spec, item),
            target,
            item.id,
            spec.extra_state(item, key),
            run=spec.adapter_run(item, item.payload.weights),
        )
        for item, key, target in units
    ]
    train_fused(spec.start_model, jobs, spec.settings, done)


def run_pairwise_method(
    ctx: StageContext, *, method: str, output: str, objective: ObjectiveFactory, keep: KeepPairs
) -> Mapping[str, Any]:
    """Train one adapter of pairwise method ``method`` (its table ``config.<method>``) per
    preference of the select grid, on the pairs ``keep`` chooses, with ``objective``."""
    from paretohqd.stages.kit.policy.identity import start_model
    from paretohqd.stages.kit.preferences import build_grid
    from paretohqd.stages.kit.training.recipes import method_shape
    from paretohqd.stages.kit.training.settings import sft_settings

    cfg = getattr(ctx.config, method)
    assert cfg is not None and ctx.config.policy is not None
    objectives = ctx.config.pareto_objectives
    prefs = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    frame, rows = pair_rows(ctx, objectives)
    pairs_hash = ctx.hasher.path(ctx.path("pairs"))
    settings = sft_settings(
        ctx.config,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        grad_accum=cfg.grad_accum,
        fused=cfg.fused,
        **method_shape(ctx.config, method),
    )
    items = []
    rng = np.random.default_rng(ctx.config.run.seed)
    for pref in prefs:
        kept = keep(rows.signs, pref.weights)
        if cfg.max_pairs is not None and len(kept) > cfg.max_pairs:
            kept = np.sort(rng.choice(kept, cfg.max_pairs, replace=False))
        if len(kept) == 0:
            raise DataError(f"{method}: no non-tied pairs for {pref.pref_id}")
        definition = {
            "pairs": pairs_hash,
            "settings": asdict(settings),
            "method": cfg.model_dump(mode="json"),
            "weights": pref.weights,
            "keep": kept.tolist(),
            "start": cfg.init,
        }
        items.append(Item(pref.pref_id, definition, PreferencePairs(list(pref.weights), kept)))
    start = start_model(ctx.config, cfg.init)
    spec = PairwiseSpec(
        start, settings, objectives, cfg.init, rows, cfg, objective, run=adapter_run(ctx, output)
    )
    group = train_preferences if settings.fused else None
    run = ctx.map_items(
        train_preference, spec, items, ctx.path(output), unit="adapter", group=group
    )
    return {
        "trained": run.made,
        "kept": run.kept,
        "fused": sum(1 for m in run.metrics.values() if m.get("fused")),
        "metrics": run.metrics,
        "pairs": frame.height,
        "start": cfg.init,
        "start_model": start,
        **{k: v for k, v in asdict(settings).items() if k in ("lr", "lora_r", "lora_alpha")},
    }
