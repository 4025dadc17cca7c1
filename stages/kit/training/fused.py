"""Fused multi-adapter training: the adapters of one training stage learn together over one
frozen base, each exactly as it would alone.

Every training stage trains one LoRA adapter per preference from the same start, with the same
settings: 11 adapters of a tiny model on a CPU spend most of their time in per-forward overhead
(Python, kernel launches, small matrices), and each loads the model again. Here the model loads
once, every LoRA layer holds the adapters' weights stacked (``A``: P × r × in, ``B``: P × out
× r), and each batch row carries the index of its adapter, so one forward and one backward per
micro-batch serve all P adapters.

What keeps each adapter's result equal to training it alone (the sequential
:func:`~paretohqd.stages.kit.training.loop.train_adapter`):

- **the same start**: the stack starts from the adapter the sequential loop initialises (seeded
  once, copied P times: every preference's fresh LoRA draws from the same seed) or from each
  preference's own round-one adapter;
- **the same batches**: each adapter keeps its own seeded :class:`Sampler`, so it draws the
  micro-batches the sequential loop draws, in the same order; a fused micro-batch is the
  adapters' k-th micro-batches side by side;
- **the same loss**: a row's log-probs depend only on its own tokens and its own adapter (causal
  attention, right padding), and each adapter's loss is computed over its own rows
  (:meth:`Objective.fused_losses`), so adapter p's gradient is the gradient of its own loss;
  objectives that combine per-objective gradients (RACO's CAGrad) combine adapter p's slice
  (:meth:`Objective.combine`);
- **the same update**: AdamW is element-wise, so one optimiser over the stacked tensors takes
  each adapter's own step (its own moments, its own weight decay); the learning-rate schedule
  is the stage's, shared by construction. There is no gradient clipping in the loop; were one
  added, it would have to be per slice.

What differs is float rounding: a fused batch is padded to its longest row across adapters and
its matrices have other shapes, so sums run in another order. The test trains in float64 and
finds the loss curves and weights equal to ~1e-9; in float32 they agree to the last few digits,
and a saved adapter's bytes can depend on which other adapters shared its pass.

Not fused (the stage falls back to one adapter at a time, and says so): randomness inside the
forward (LoRA or model dropout would draw differently), LoRA variants (DoRA) and LoRA biases,
round-one adapters of different shapes, objectives whose step is not a plain loss over
micro-batches (PAMA: its rollouts generate per adapter), and data-parallel workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from paretohqd.errors import DataError
from paretohqd.stages.kit.tracking import AdapterRun, Tracker, numeric, open_tracker
from paretohqd.stages.kit.training.loop import (
    FusableObjective,
    Objective,
    Sampler,
    adapter_record,
    base_checksum,
    lora_policy,
    loss_title,
    save_adapter,
    train_adapter,
)
from paretohqd.stages.kit.training.sft import IGNORE, SFTSettings, collate, upcast


@dataclass
class FusedJob:
    """One adapter of a fused group: its objective, where it goes, what its state records, the
    round-one adapter it continues, its name in messages (the preference), and its run (plot
    title and tracker)."""

    objective: Objective
    out_dir: Path
    label: str
    extra_state: dict[str, Any] = field(default_factory=dict)
    init_adapter: Path | None = None
    run: AdapterRun | None = None


#: Called once per adapter as soon as it is saved: ``done(label, metrics)``.
Done = Callable[[str, Mapping[str, Any]], None]


class Router:
    """Which adapter each batch row belongs to, shared by every stacked layer; ``disabled``
    turns the adapters off (the frozen reference)."""

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None
        #: When each present adapter owns one contiguous block of equally many rows (the
        #: usual micro-batch): the adapters in block order (None: all P, in order) and the
        #: rows of a block. The stacked layers then multiply block by block.
        self.blocks: tuple[torch.Tensor | None, int] | None = None
        self.disabled = False

    def route(self, owner: Sequence[int], adapters: int, device: Any) -> None:
        """Rows ``i`` of the next batches belong to adapter ``owner[i]``."""
        owner = list(owner)
        self.rows = torch.tensor(owner, device=device)
        self.blocks = None
        present = list(dict.fromkeys(owner))
        n = len(owner) // len(present) if present else 0
        blocked = (
            n > 0
            and n * len(present) == len(owner)
            and all(owner[k * n : (k + 1) * n] == [p] * n for k, p in enumerate(present))
        )
        if blocked:
            order = None if present == list(range(adapters)) else torch.tensor(present)
            self.blocks = (None if order is None else order.to(device), n)

    def clear(self) -> None:
        """No batch is routed."""
        self.rows, self.blocks = None, None

    @contextmanager
    def reference(self) -> Iterator[None]:
        """The start model: every adapter off."""
        self.disabled = True
        try:
            yield
        finally:
            self.disabled = False


class StackedLoraLinear(nn.Module):
    """A LoRA layer holding P adapters: ``base(x) + scaling · B[p] A[p] x`` for a row of adapter
    p, the computation of peft's ``lora.Linear`` (input cast to the adapter's dtype, result
    cast back) with a per-row choice of adapter."""

    def __init__(
        self, base: nn.Module, a: torch.Tensor, b: torch.Tensor, scaling: float, router: Router
    ) -> None:
        super().__init__()
        self.base_layer = base
        self.lora_a = nn.Parameter(a)  # (P, r, in)
        self.lora_b = nn.Parameter(b)  # (P, out, r)
        self.scaling = scaling
        self.router = router

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result: torch.Tensor = self.base_layer(x, *args, **kwargs)
        rows, blocks = self.router.rows, self.router.blocks
        if self.router.disabled or rows is None:
            return result
        if blocks is not None:
            # One (block rows x T, in) product per adapter in a single batched matmul: 1.6x
            # faster than per-row weights (measured per layer, forward and backward, 11
            # adapters x 8 rows x 128 tokens), and the gradients land densely.
            order, _ = blocks
            a = self.lora_a if order is None else self.lora_a[order]  # (P', r, in)
            b = self.lora_b if order is None else self.lora_b[order]  # (P', out, r)
            xb = x.to(a.dtype).reshape(a.shape[0], -1, x.shape[-1])  # (P', n * T, in)
            h = torch.matmul(torch.matmul(xb, a.transpose(1, 2)), b.transpose(1, 2))
            delta = h.reshape(*x.shape[:-1], h.shape[-1])
        else:
            a, b = self.lora_a[rows], self.lora_b[rows]  # (N, r, in), (N, out, r)
            h = torch.matmul(x.to(a.dtype), a.transpose(1, 2))  # (N, T, r)
            delta = torch.matmul(h, b.transpose(1, 2))
        return result + (delta * self.scaling).to(result.dtype)


@dataclass
class Stack:
    """The stacked layers swapped into a peft model, and the peft layers they replaced."""

    router: Router
    #: (parent module, attribute, peft layer, stacked layer)
    swaps: list[tuple[nn.Module, str, Any, StackedLoraLinear]]

    def parameters(self) -> list[nn.Parameter]:
        """The trainable tensors, in a fixed order: every layer's A then B."""
        return [p for *_, s in self.swaps for p in (s.lora_a, s.lora_b)]

    def restore(self) -> None:
        """Put the peft layers back (to save each adapter as a standard peft directory)."""
        for parent, name, peft_layer, _ in self.swaps:
            setattr(parent, name, peft_layer)

    def load(self, p: int) -> None:
        """Copy adapter ``p``'s weights into the (restored) peft layers."""
        with torch.no_grad():
            for _, _, layer, stacked in self.swaps:
                layer.lora_A["default"].weight.copy_(stacked.lora_a[p])
                layer.lora_B["default"].weight.copy_(stacked.lora_b[p])


def _peft_layers(model: nn.Module) -> list[tuple[nn.Module, str, Any]]:
    """Every peft LoRA linear layer of ``model`` with its parent and attribute name."""
    from peft.tuners.lora import Linear as LoraLinear

    out = []
    for name, module in model.named_modules():
        if isinstance(module, LoraLinear):
            parent_name, _, attr = name.rpartition(".")
            out.append((model.get_submodule(parent_name), attr, module))
    return out


def why_not_fused(model: nn.Module, jobs: Sequence[FusedJob]) -> str | None:
    """Why this group cannot be fused exactly (None when it can)."""
    if not all(isinstance(job.objective, FusableObjective) for job in jobs):
        return f"{jobs[0].objective.name} is trained one adapter at a time"
    if len({type(job.objective) for job in jobs}) > 1:
        return "the adapters' objectives differ"
    if any(job.objective.updates != 1 for job in jobs):
        return "the objective takes several updates per step"
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            return f"{name} drops out (p = {module.p}), which draws differently in a fused batch"
    config = getattr(model, "config", None)
    for key, value in (config.to_dict() if config is not None else {}).items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float) and value > 0:
            return f"the model's {key} = {value} draws differently in a fused batch"
    layers = _peft_layers(model)
    if not layers:
        return "the model has no LoRA layers"
    for _, _, layer in layers:
        if list(layer.lora_A) != ["default"] or layer.lora_variant:
            return "a LoRA variant (DoRA) or several adapters are loaded"
        if layer.lora_B["default"].bias is not None:
            return "the LoRA layers have biases"
    inits = [job.init_adapter for job in jobs]
    if any(i is None for i in inits) and any(i is not None for i in inits):
        return "some adapters continue a round-one adapter and some start fresh"
    shapes = {_lora_shape(i) for i in inits if i is not None}
    if len(shapes) > 1:
        return "the round-one adapters have different LoRA shapes"
    return None


def _lora_shape(adapter: Path) -> str:
    """What must agree between adapters stacked together: rank, alpha, targets."""
    import json

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    return json.dumps([cfg.get(k) for k in ("r", "lora_alpha", "target_modules")], default=str)


def stack(model: nn.Module, inits: Sequence[Path | None], device: str) -> Stack:
    """Swap every peft LoRA layer of ``model`` for a :class:`StackedLoraLinear` holding one copy
    per adapter: the freshly initialised adapter (``inits`` all None) or each round-one adapter
    loaded into the peft layers in turn."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    layers = _peft_layers(model)
    a: list[list[torch.Tensor]] = [[] for _ in layers]
    b: list[list[torch.Tensor]] = [[] for _ in layers]
    for init in inits:
        if init is not None:
            set_peft_model_state_dict(model, load_peft_weights(str(init), device=device))
        for j, (_, _, layer) in enumerate(layers):
            a[j].append(layer.lora_A["default"].weight.detach().clone())
            b[j].append(layer.lora_B["default"].weight.detach().clone())
    router = Router()
    swaps = []
    for j, (parent, attr, layer) in enumerate(layers):
        stacked = StackedLoraLinear(
            layer.base_layer,
            torch.stack(a[j]),
            torch.stack(b[j]),
            float(layer.scaling["default"]),
            router,
        )
        setattr(parent, attr, stacked)
        swaps.append((parent, attr, layer, stacked))
    return Stack(router, swaps)


def row_logps(
    model: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the summed log-prob of the labelled tokens, and how many there are."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = upcast(logits[:, :-1])
    target = batch["labels"][:, 1:]
    nll = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)),
        target.reshape(-1),
        ignore_index=IGNORE,
        reduction="none",
    ).view(target.shape)
    return -nll.sum(-1), (target != IGNORE).sum(-1)


def train_fused(
    base_model: str, jobs: Sequence[FusedJob], settings: SFTSettings, done: Done
) -> str | None:
    """Train every job's adapter on ``base_model`` in one fused pass (see the module doc) and
    save each to its ``out_dir`` as :func:`train_adapter` would; call ``done`` per adapter.

    Returns None when the group was fused, else why not (each adapter was then trained alone).
    """
    from paretohqd.stages.kit.policy.loading import torch_threads

    with torch_threads(settings.threads):
        first = jobs[0]
        tok, model, device = lora_policy(
            base_model,
            settings,
            padding_side=first.objective.padding_side,
            init_adapter=first.init_adapter,
        )
        reason = why_not_fused(model, jobs)
        if reason is None:
            with ExitStack() as stack:  # each adapter's steps go to its own tracker
                trackers = [
                    stack.enter_context(
                        open_tracker(job.run, asdict(settings) | {"method": job.objective.name})
                    )
                    for job in jobs
                ]
                _train_stacked(base_model, model, tok, device, jobs, settings, done, trackers)
            return None
    del model
    for job in jobs:
        metrics = train_adapter(
            base_model,
            job.objective,
            settings,
            job.out_dir,
            init_adapter=job.init_adapter,
            extra_state=job.extra_state,
            run=job.run,
        )
        done(job.label, metrics | {"not_fused": reason})
    return reason


def _train_stacked(
    base_model: str,
    model: Any,
    tok: Any,
    device: str,
    jobs: Sequence[FusedJob],
    settings: SFTSettings,
    done: Done,
    trackers: Sequence[Tracker],
) -> None:
    """The fused optimiser loop and the saving of every adapter, each adapter's steps sent to
    its tracker in ``trackers`` (:class:`~paretohqd.stages.kit.tracking.AdapterRun`)."""
    from paretohqd.progress import progress

    objectives = [job.objective for job in jobs if isinstance(job.objective, FusableObjective)]
    assert len(objectives) == len(jobs)  # why_not_fused let the group through
    samplers = [
        Sampler(obj.prepare(tok, model, device, settings), settings.batch_size, settings.seed)
        for obj in objectives
    ]
    base_before = base_checksum(model)
    layers = stack(model, [job.init_adapter for job in jobs], device)
    params = layers.parameters()
    model.train()
    options = objectives[0].optimiser(settings)
    opt = torch.optim.AdamW(params, lr=options.lr, weight_decay=options.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(options.warmup_steps, 1))
    )
    logs: list[list[dict[str, Any]]] = [[] for _ in jobs]
    trained = [0] * len(jobs)
    cache: dict[tuple[int, ...], float] = {}  # the reference's log-prob of each distinct row
    t0, c0 = time.perf_counter(), time.process_time()
    total = objectives[0].steps(settings)
    bar = progress(total, desc=f"{objectives[0].name} {len(jobs)} fused", unit="step")
    for index in range(total):
        opt.zero_grad(set_to_none=True)
        for obj in objectives:
            obj.begin_step()
        totals = [0.0] * len(jobs)
        tokens = [0] * len(jobs)
        grads: list[list[torch.Tensor]] = []
        for _ in range(settings.grad_accum):
            takes = [s.take() for s in samplers]
            losses = _micro_batch(
                model, layers, tok, device, objectives, takes, settings, tokens, cache
            )
            for p, (obj, mine) in enumerate(zip(objectives, losses, strict=True)):
                totals[p] += obj.logged_loss(mine, settings.grad_accum)
            _accumulate(grads, losses, params, settings.grad_accum)
        combined = _combine(jobs, objectives, grads, totals, tokens, index, trained, logs)
        for j, q in enumerate(params):
            q.grad = torch.stack([mine[j] for mine in combined]).to(q.dtype)
        opt.step()
        sched.step()
        for log, tracker in zip(logs, trackers, strict=True):
            log[-1]["lr"] = sched.get_last_lr()[0]
            tracker.log(index, numeric(log[-1]))
        mean = sum(log[-1]["loss"] for log in logs) / len(logs)
        bar.note(f"mean loss {mean:.4f}")
        bar.update()
    bar.close()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    layers.restore()
    if base_checksum(model) != base_before:
        raise RuntimeError(f"{objectives[0].name}: base weights changed; only adapters may train")
    for p, (job, obj, sampler) in enumerate(zip(jobs, objectives, samplers, strict=True)):
        layers.load(p)
        metrics, state = adapter_record(
            base_model,
            obj,
            settings,
            logs[p],
            steps=len(logs[p]),
            tokens=trained[p],
            examples=sampler.draws * settings.batch_size,
            seconds=seconds / len(jobs),
            cpu_seconds=cpu_seconds / len(jobs),
            device=device,
            init_adapter=job.init_adapter,
            extra_state=job.extra_state | {"fused": len(jobs)},
        )
        save_adapter(
            job.out_dir,
            model,
            logs[p],
            state,
            obj.card(state),
            extra=lambda tmp, obj=obj, log=logs[p]: obj.write_files(tmp, log),
            title=loss_title(job.run, state),
        )
        done(job.label, metrics | {"fused": len(jobs)})


def _combine(
    jobs: Sequence[FusedJob],
    objectives: Sequence[FusableObjective],
    grads: list[list[torch.Tensor]],
    totals: list[float],
    tokens: list[int],
    index: int,
    trained: list[int],
    logs: list[list[dict[str, Any]]],
) -> list[list[torch.Tensor]]:
    """Each adapter's gradient for step ``index`` from its per-loss gradients, its loss
    checked and logged (``lr`` filled in once the scheduler stepped)."""
    import math

    combined: list[list[torch.Tensor]] = []
    for p, (job, obj) in enumerate(zip(jobs, objectives, strict=True)):
        mine, columns = obj.combine([[g[p] for g in per] for per in grads])
        combined.append(mine)
        result = obj.fused_step(totals[p], tokens[p], columns)
        if not math.isfinite(result.loss):
            raise DataError(
                f"{obj.name} ({job.label}): loss became {result.loss} at step {index}; "
                f"lower {obj.lr_option}"
            )
        trained[p] += result.tokens
        entry = {"step": index, "loss": round(result.loss, 6)}
        logs[p].append(entry | {"lr": None} | result.columns)
    return combined


def _micro_batch(
    model: Any,
    layers: Stack,
    tok: Any,
    device: str,
    objectives: Sequence[FusableObjective],
    takes: Sequence[list[int]],
    settings: SFTSettings,
    tokens: list[int],
    cache: dict[tuple[int, ...], float],
) -> list[list[torch.Tensor]]:
    """One fused micro-batch: every adapter's rows side by side through one forward (and the
    reference's log-probs, adapters off, when the method needs them); each adapter's losses
    from its own rows. Adds each adapter's forwarded tokens to ``tokens``."""
    rows: list[Any] = []
    owner: list[int] = []
    spans = []
    for p, (obj, take) in enumerate(zip(objectives, takes, strict=True)):
        mine = obj.fused_rows(take)
        spans.append((len(rows), len(rows) + len(mine)))
        rows += mine
        owner += [p] * len(mine)
        tokens[p] += sum(len(r.ids) for r in mine)
    batch = collate(rows, tok.pad_token_id, device)
    layers.router.route(owner, len(objectives), device)
    logps, counts = row_logps(model, batch)
    reference = None
    if objectives[0].fused_reference:
        reference = _reference(model, layers, tok, device, rows, cache, logps.dtype)
    return [
        obj.fused_losses(
            take,
            logps[lo:hi],
            counts[lo:hi],
            None if reference is None else reference[lo:hi],
            settings.grad_accum,
        )
        for obj, take, (lo, hi) in zip(objectives, takes, spans, strict=True)
    ]


def _accumulate(
    grads: list[list[torch.Tensor]],
    losses: Sequence[Sequence[torch.Tensor]],
    params: Sequence[torch.Tensor],
    accum: int,
) -> None:
    """Add to ``grads[i]`` the gradient of every adapter's i-th loss over the stacked
    tensors: each adapter's slice holds its own loss's gradient (its rows alone reach it)."""
    n = len(losses[0])
    for i in range(n):
        total = torch.stack([mine[i] for mine in losses]).sum() / accum
        found = torch.autograd.grad(total, params, retain_graph=i < n - 1, allow_unused=True)
        g = [torch.zeros_like(q) if x is None else x for x, q in zip(found, params, strict=True)]
        if len(grads) <= i:
            grads.append(g)
        else:
            grads[i] = [acc + x for acc, x in zip(grads[i], g, strict=True)]


def _reference(
    model: Any,
    layers: Stack,
    tok: Any,
    device: str,
    rows: Sequence[Any],
    cache: dict[tuple[int, ...], float],
    dtype: torch.dtype,
) -> torch.Tensor:
    """The frozen reference's summed label log-prob of every row. The reference never changes,
    and the preferences of a pairwise method draw from one pool of pairs, so each distinct row
    is forwarded once per stage (``cache``, keyed by its tokens and where its labels start):
    a quarter of a pairwise step's compute (policy forward, backward, reference forward) runs
    once instead of on every draw of every adapter. A cached value was computed in another
    batch, so it can differ from the sequential loop's in the last float bits."""
    keys = [(*r.ids, -1, r.labels.count(IGNORE)) for r in rows]
    missing = list(dict.fromkeys(k for k in keys if k not in cache))
    if missing:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        batch = collate([rows[first[k]] for k in missing], tok.pad_token_id, device)
        layers.router.clear()
        with torch.no_grad(), layers.router.reference():
            logps, _ = row_logps(model, batch)
        cache.update(zip(missing, logps.tolist(), strict=True))
    return torch.tensor([cache[k] for k in keys], dtype=dtype, device=device)
