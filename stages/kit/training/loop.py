"""One training loop for every method; what differs between methods is an :class:`Objective`.

The loop owns what every method must do the same way, so that their adapters compare and their
runs reproduce: the policy (the start model with a fresh seeded LoRA adapter, or an adapter to
continue; the frozen reference is the same model with the adapter disabled), AdamW with linear
warm-up, the seeded sampler of micro-batches, gradient accumulation, the finite-loss check, the
checksum that proves the base weights did not move, the log, and the adapter directory with its
loss curve and card.

An objective supplies the rest: its rows and their encoding, the gradients of one optimiser step
(a loss and a backward pass, or gradients it writes itself: RACO's combination of per-objective
gradients, PAMA's rollout and PPO epochs), its metrics, card and files. SFT's objective is in
:mod:`~paretohqd.stages.kit.training.sft` (several stages train SFT adapters), the pairwise base
in :mod:`~paretohqd.stages.kit.training.pairwise`, and each method's own in its stage package.

Randomness is drawn in one order for every method, so a run reproduces bit for bit:
``torch.manual_seed(seed)`` before the model loads, the LoRA initialisation, the objective's own
set-up (PAMA's value heads and its numpy generator), then the sampler's own generator.
"""

from __future__ import annotations

import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import DataError
from paretohqd.stages.kit.tracking import AdapterRun, NullTracker, Tracker, numeric, open_tracker

if TYPE_CHECKING:
    from paretohqd.stages.kit.training.sft import SFTSettings


@dataclass(frozen=True)
class OptimiserOptions:
    """AdamW's learning rate and weight decay, and the steps of linear warm-up (0: none)."""

    lr: float
    weight_decay: float
    warmup_steps: int


@dataclass
class StepLoss:
    """What one optimiser step's gradients cost: the logged loss (which must be finite), the
    tokens forwarded, and the method's own log columns."""

    loss: float
    tokens: int
    columns: dict[str, Any] = field(default_factory=dict)


class Sampler:
    """Seeded micro-batches of row indices: shuffled passes over the rows (``randperm`` from a
    generator of its own, so nothing else draws from it), ``batch_size`` at a time, refilled
    when fewer than a batch remain (an epoch's tail joins the next one's head)."""

    def __init__(self, rows: int, batch_size: int, seed: int) -> None:
        import torch

        self.rows, self.batch_size = rows, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []
        self.draws = 0

    def take(self) -> list[int]:
        """The next micro-batch."""
        import torch

        if len(self.order) < self.batch_size:
            self.order += torch.randperm(self.rows, generator=self.generator).tolist()
        take, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        self.draws += 1
        return take


@dataclass
class Step:
    """One optimiser step as the loop hands it to an objective."""

    #: The training step (one log row), and which of its ``Objective.updates`` this is.
    index: int
    epoch: int
    #: The adapter's trainable parameters, in the optimiser's order.
    params: list[Any]
    #: Micro-batches to accumulate over; losses are divided by it.
    accum: int
    sampler: Sampler
    #: This worker's rank among ``world`` data-parallel workers (see :func:`data_parallel`).
    rank: int = 0
    world: int = 1

    def micro_batches(self) -> Iterator[list[int]]:
        """The step's micro-batches this worker computes, drawn lazily from the loop's sampler:
        all ``accum`` of them alone, every ``world``-th from ``rank`` on under data parallelism
        (every worker draws all of them, so the samplers stay in step)."""
        for k in range(self.accum):
            take = self.sampler.take()
            if k % self.world == self.rank:
                yield take


@dataclass(frozen=True)
class DataParallel:
    """This process's place among the workers that train one adapter together."""

    rank: int
    world: int


_DATA_PARALLEL = DataParallel(0, 1)


@contextmanager
def data_parallel(rank: int, world: int) -> Iterator[None]:
    """Train adapters in this block as worker ``rank`` of ``world`` (``torch.distributed`` is
    initialised by the caller: Ray Train's ``TorchTrainer``).

    Each step's ``grad_accum`` micro-batches are shared out (worker ``r`` computes micro-batches
    ``r, r + world, ...``), the gradients are summed across workers, and every worker takes the
    same optimiser step, so the adapter is the one a single process trains from the same micro-
    batches, up to the order of float sums. Rank 0 alone saves it.
    """
    global _DATA_PARALLEL
    before = _DATA_PARALLEL
    _DATA_PARALLEL = DataParallel(rank, world)
    try:
        yield
    finally:
        _DATA_PARALLEL = before


def _all_reduce(params: list[Any], result: StepLoss) -> StepLoss:
    """Sum the adapter's gradients, the logged loss and the tokens over the data-parallel
    workers (a worker without a micro-batch this step contributes zeros)."""
    import torch
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
    totals = torch.tensor([result.loss, float(result.tokens)], dtype=torch.float64)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return StepLoss(float(totals[0]), int(totals[1]), result.columns)


class Objective(ABC):
    """What a method supplies to :func:`train_adapter`.

    A subclass sets ``name`` and implements :meth:`prepare`, :meth:`gradients` and :meth:`card`;
    the other members have the defaults of a supervised method (SFT, MODPO, RACO).
    """

    #: The method: in errors, the adapter's ``train_state.json`` and its card.
    name: str = "objective"
    #: The tokenizer's padding side: right for teacher forcing, left for generation (PAMA).
    padding_side: str = "right"
    #: The setting to lower when the loss diverges, named in the error.
    lr_option: str = "the lr"
    #: Optimiser steps per training step (PAMA: PPO epochs per rollout).
    updates: int = 1
    #: Whether the gradients are a sum over :meth:`Step.micro_batches`, so several workers can
    #: share a step's micro-batches (:func:`data_parallel`): SFT's are.
    data_parallel: bool = False

    @abstractmethod
    def prepare(self, tok: Any, model: Any, device: str, settings: SFTSettings) -> int:
        """Encode the rows for the loaded policy (and set up the method's own state); return
        how many rows the sampler draws from."""

    @abstractmethod
    def gradients(self, step: Step) -> StepLoss:
        """Fill the adapter's ``.grad`` for one optimiser step (the loop zeroes them before and
        steps the optimiser after)."""

    @abstractmethod
    def card(self, state: dict[str, Any]) -> str:
        """The adapter's model card, from its ``train_state.json``."""

    def steps(self, settings: SFTSettings) -> int:
        """Training steps (log rows)."""
        return settings.steps

    def optimiser(self, settings: SFTSettings) -> OptimiserOptions:
        """The policy optimiser's options: the settings' by default."""
        return OptimiserOptions(settings.lr, settings.weight_decay, settings.warmup_steps)

    def metrics(self, log: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Method-specific metrics; they override the loop's of the same name."""
        return {}

    def state(self) -> dict[str, Any]:
        """Method-specific entries of ``train_state.json`` (options, weights)."""
        return {}

    def write_files(self, directory: Path, log: Sequence[dict[str, Any]]) -> None:
        """Write method-specific files beside the adapter (PAMA's value heads); none here."""
        return None


class FusableObjective(Objective):
    """An objective the fused trainer (:mod:`~paretohqd.stages.kit.training.fused`) can train
    beside others of its kind: it computes its losses from row log-probs the trainer supplies,
    so the adapters of a stage share one forward and backward per micro-batch (SFT, the
    pairwise methods)."""

    #: Whether :meth:`fused_losses` needs the frozen reference's row log-probs.
    fused_reference: bool = False

    def begin_step(self) -> None:
        """Reset what the objective accumulates over one step's micro-batches (its log)."""
        return None

    @abstractmethod
    def fused_rows(self, take: list[int]) -> list[Any]:
        """The encoded rows (:class:`~paretohqd.stages.kit.training.sft.Encoded`) of
        micro-batch ``take``, in the order :meth:`fused_losses` reads them."""

    @abstractmethod
    def fused_losses(
        self, take: list[int], logps: Any, counts: Any, reference: Any, accum: int
    ) -> list[Any]:
        """The method's losses (one per objective it trains) on micro-batch ``take``, from its
        rows' summed label log-probs and label counts (and the reference's log-probs)."""

    def logged_loss(self, losses: Sequence[Any], accum: int) -> float:
        """What one micro-batch adds to the step's logged loss."""
        return float(sum(x.item() for x in losses)) / accum

    def combine(self, grads: list[list[Any]]) -> tuple[list[Any], dict[str, Any]]:
        """The adapter's gradient from one gradient per loss (over its parameters), and log
        columns: the single loss's gradient, unless the method combines several (RACO)."""
        return grads[0], {}

    def fused_step(self, loss: float, tokens: int, columns: dict[str, Any]) -> StepLoss:
        """The step's :class:`StepLoss` from the fused trainer's totals."""
        return StepLoss(loss, tokens, columns)


def lora_policy(
    base_model: str,
    settings: SFTSettings,
    *,
    padding_side: str = "right",
    init_adapter: Path | None = None,
) -> tuple[Any, Any, str]:
    """Tokenizer, policy with a trainable LoRA adapter (fresh, seeded, or ``init_adapter``), device.

    Seeding happens here, before the model loads, so the LoRA initialisation (and anything an
    objective draws after it) is the same on every run.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from paretohqd.stages.kit.policy.loading import (
        check_lora_targets,
        load_policy,
        load_tokenizer,
        pick_device,
    )

    device = pick_device(settings.device)
    torch.manual_seed(settings.seed)
    tok = load_tokenizer(base_model, padding_side=padding_side)
    model = load_policy(
        base_model, adapter=init_adapter, trainable=True, device=device, dtype=settings.dtype
    )
    if init_adapter is None:
        check_lora_targets(model, settings.target_modules, model_name=base_model)
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


def train_adapter(
    base_model: str,
    objective: Objective,
    settings: SFTSettings,
    out_dir: Path,
    *,
    init_adapter: Path | None = None,
    extra_state: dict[str, Any] | None = None,
    run: AdapterRun | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on ``base_model`` with ``objective``; save it atomically to
    ``out_dir`` with its log, ``train_state.json`` (settings, metrics, ``extra_state``) and card.

    ``init_adapter`` continues an existing adapter (round two); otherwise a fresh LoRA is
    initialised with ``settings.seed``. Runs on ``settings.threads`` torch threads when set.
    ``run`` names the adapter (its loss plot's title) and streams each step to its tracker.
    Returns the metrics: steps, examples, tokens, first and last loss, seconds, and the
    objective's own.
    """
    from paretohqd.stages.kit.policy.loading import torch_threads

    with torch_threads(settings.threads):
        tok, model, device = lora_policy(
            base_model, settings, padding_side=objective.padding_side, init_adapter=init_adapter
        )
        rows = objective.prepare(tok, model, device, settings)
        params = [p for p in model.parameters() if p.requires_grad]
        sampler = Sampler(rows, settings.batch_size, settings.seed)
        base_before = base_checksum(model)
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        tracked = run if _DATA_PARALLEL.rank == 0 else None  # one worker reports the steps
        # the report's name for the adapter (sft_init, modpo/pref-030-070), else the method's
        desc = run.name.replace("/", " ") if run else f"{objective.name} {out_dir.name}"
        with open_tracker(tracked, asdict(settings) | {"method": objective.name}) as tracker:
            log, counts = _train_steps(objective, settings, params, sampler, tracker, desc=desc)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        if base_checksum(model) != base_before:
            raise RuntimeError(
                f"{objective.name}: base weights changed; only the adapter may train"
            )
    metrics, state = adapter_record(
        base_model,
        objective,
        settings,
        log,
        **counts,
        examples=sampler.draws * settings.batch_size,
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        device=device,
        init_adapter=init_adapter,
        extra_state=extra_state,
    )
    if _DATA_PARALLEL.rank == 0:  # the others hold the same weights
        save_adapter(
            out_dir,
            model,
            log,
            state,
            objective.card(state),
            extra=lambda tmp: objective.write_files(tmp, log),
            title=loss_title(run, state),
        )
    return metrics


def loss_title(run: AdapterRun | None, state: dict[str, Any]) -> str:
    """The title of an adapter's loss plot: its run's (method and preference), else the
    method and preference its state records."""
    if run is not None:
        return run.title
    return AdapterRun(state["method"], str(state.get("pref_id") or "")).title


def adapter_record(
    base_model: str,
    objective: Objective,
    settings: SFTSettings,
    log: Sequence[dict[str, Any]],
    *,
    steps: int,
    tokens: int,
    examples: int,
    seconds: float,
    cpu_seconds: float,
    device: str,
    init_adapter: Path | None,
    extra_state: dict[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An adapter's metrics and its ``train_state.json``, the same for sequential and fused
    training: the loop's counts and times, the first and last loss, and the objective's own."""
    metrics = {
        "steps": steps,
        "tokens": tokens,
        "examples": examples,
        "first_loss": log[0]["loss"],
        "last_loss": log[-1]["loss"],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "device": device,
        **objective.metrics(log),
    }
    state = {
        "method": objective.name,
        "settings": asdict(settings),
        "metrics": metrics,
        "base_model": base_model,
        "init_adapter": str(init_adapter or ""),
        **objective.state(),
        **(extra_state or {}),
    }
    return metrics, state


def _train_steps(
    objective: Objective,
    settings: SFTSettings,
    params: list[Any],
    sampler: Sampler,
    tracker: Tracker | None = None,
    *,
    desc: str = "train",
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The optimiser loop: per training step, ``objective.updates`` zero-grad → gradients →
    finite check → AdamW and warm-up steps; one log row per training step, also sent to
    ``tracker`` as soon as it is written and reported to :mod:`paretohqd.progress` as ``desc``
    with the step's loss."""
    import torch

    from paretohqd.progress import progress

    tracker = tracker or NullTracker()
    dp = _DATA_PARALLEL
    if dp.world > 1 and not objective.data_parallel:
        raise DataError(
            f"{objective.name}: only SFT trains one adapter on several workers; set the stage's "
            "[executor.stages.<stage>] workers = 1"
        )
    if dp.world > settings.grad_accum:
        raise DataError(
            f"{objective.name}: {dp.world} workers share each step's micro-batches but "
            f"grad_accum = {settings.grad_accum} gives only {settings.grad_accum}; raise "
            "sft.grad_accum to a multiple of the workers (the batch is batch_size × grad_accum)"
        )
    options = objective.optimiser(settings)
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(options.warmup_steps, 1))
    )
    log: list[dict[str, Any]] = []
    updates = tokens = 0
    total = objective.steps(settings)
    bar = progress(total, desc=desc, unit="step", bar=dp.rank == 0, lines=dp.rank == 0)
    for index in range(total):
        for epoch in range(objective.updates):
            opt.zero_grad(set_to_none=True)
            step = Step(index, epoch, params, settings.grad_accum, sampler, dp.rank, dp.world)
            result = objective.gradients(step)
            if dp.world > 1:
                result = _all_reduce(params, result)
            if not math.isfinite(result.loss):
                raise DataError(
                    f"{objective.name}: loss became {result.loss} at step {index}; "
                    f"lower {objective.lr_option}"
                )
            opt.step()
            sched.step()
            updates += 1
            tokens += result.tokens
        entry = {"step": index, "loss": round(result.loss, 6), "lr": sched.get_last_lr()[0]}
        log.append(entry | result.columns)
        tracker.log(index, numeric(log[-1]))
        bar.note(f"loss {result.loss:.4f}")
        bar.update()
    bar.close()
    return log, {"steps": updates, "tokens": tokens}


def save_adapter(
    out_dir: Path,
    model: Any,
    log: Sequence[dict[str, Any]],
    state: dict[str, Any],
    card: str,
    extra: Any = None,
    title: str = "loss",
) -> None:
    """Write an adapter directory atomically: peft weights, loss log (Parquet + PNG titled
    ``title``), ``train_state.json`` and the card; ``extra(tmp)`` adds method-specific files
    first."""
    from paretohqd.atomic import atomic_path, write_text

    with atomic_path(out_dir) as tmp:
        model.save_pretrained(str(tmp))
        if extra is not None:
            extra(tmp)
        write_training_log(tmp, [{k: e[k] for k in ("step", "loss", "lr")} for e in log], title)
        write_text(tmp / "train_state.json", json.dumps(state, indent=2, default=list))
        write_text(tmp / "README.md", card)


def base_checksum(model: Any) -> float:
    """A cheap fingerprint of the frozen (non-LoRA) weights, checked before and after."""
    import torch

    with torch.no_grad():
        return float(
            sum(p.double().sum().item() for n, p in model.named_parameters() if "lora_" not in n)
        )


def write_training_log(directory: Path, log: Sequence[dict[str, Any]], title: str = "loss") -> None:
    """``training_log.parquet`` (step, loss, lr) and ``loss.png`` beside the adapter (raw and
    smoothed loss, titled ``title``: the temporary directory it is written in has no name
    worth showing).

    Built with pyarrow, not polars (the same bytes): the loop then needs no polars, so it runs
    on a GPU image that has torch, peft and pyarrow but not the pipeline's table stack.
    """
    import pyarrow as pa

    from paretohqd.atomic import write_parquet
    from paretohqd.stages.kit.training.curves import write_loss_plot

    schema = pa.schema([("step", pa.int32()), ("loss", pa.float64()), ("lr", pa.float64())])
    table = pa.Table.from_pylist([dict(e) for e in log], schema=schema)
    write_parquet(directory / "training_log.parquet", table)
    write_loss_plot(directory / "loss.png", log, title)
