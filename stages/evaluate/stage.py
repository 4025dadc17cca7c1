"""The evaluate stage function: every model answers the held-out prompts; metrics; report.

Models are the base policy and every adapter the run trained (ParetoHqD rounds one and two,
MODPO, RACO, ...). Each (model, chunk of prompts) is one resumable part that is generated and
scored in one go (:class:`EvaluateSpec`'s request and finish for one index, run by the engine's
executor), so a killed evaluation resumes without regenerating. Sampling is seeded per
part by what the part is (model, chunk), so ``paretohqd run --only evaluate --force``
reproduces the numbers; parts are keyed by what defines them (the model's weights, the
prompts, the settings, the scorers), so when the stage runs again because models were added
or dropped, the parts of every unchanged model are reused rather than generated again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from paretohqd.catalog import run_sql
from paretohqd.errors import DataError, StageError
from paretohqd.stage import StageContext
from paretohqd.stages.kit.pareto.bounds import layer_bounds
from paretohqd.stages.kit.policy.generate import (
    GenerationRequest,
    GenerationResult,
    GenerationSettings,
)
from paretohqd.stages.kit.scoring.run import ScoringSpec

if TYPE_CHECKING:
    import polars as pl

#: (method, pref_id, adapter dir or None, the model the adapter sits on)
Model = tuple[str, str, Path | None, str]


def models_to_evaluate(ctx: StageContext) -> list[Model]:
    """The base model, the shared SFT start (when a method uses it) and every adapter present,
    each with the model it starts from (grouped by that model, so each is loaded once)."""
    from paretohqd.stages.kit.policy.identity import policy_model, start_model

    base = policy_model(ctx.config)
    out: list[Model] = [("base", "base", None, base)]
    out += [
        (a.tags["method"], a.tags["method"], None, str(ctx.path(a.name)))
        for a in ctx.inputs_with_role("model")
    ]
    for art in sorted(ctx.inputs_with_role("adapters"), key=lambda a: a.tags["order"]):
        start = start_model(ctx.config, art.tags["start"])
        root = ctx.path(art.name)
        for adapter in sorted(root.iterdir()) if root.exists() else []:
            if (adapter / "adapter_config.json").exists():
                out.append((art.tags["method"], adapter.name, adapter, start))
    return sorted(out, key=lambda m: m[3] != base)  # stable: base-model adapters first


def check_heldout(
    con: Any, shards: Sequence[str], prompt_tables: Sequence[str], prompt_ids: Sequence[str]
) -> None:
    """Fail if any evaluation prompt appears in training data: a shard (rows are samples) or a
    table of training prompts (a ``prompt_id`` column: pairs, regeneration prompts)."""
    import pyarrow as pa

    from paretohqd.catalog import run_sql

    ids, sources = [], []
    for view in [*shards, *prompt_tables]:
        if view in prompt_tables:
            rel = con.table(view).select("prompt_id")
        else:
            rel = (
                con.table(view)
                .select("sample_id")
                .join(con.table("samples"), "sample_id")
                .select("prompt_id")
            )
        column = [row[0] for row in rel.fetchall()]
        ids += column
        sources += [view] * len(column)
    con.register("training_ids", pa.table({"prompt_id": ids, "source": sources}))
    con.register("eval_ids", pa.table({"prompt_id": list(prompt_ids)}))
    leaked = run_sql(con, "heldout_leaks.sql").fetchall()
    con.unregister("eval_ids")
    con.unregister("training_ids")
    if leaked:
        prompt, view = leaked[0]
        raise StageError(
            f"evaluate: held-out prompts appear in `{view}` (e.g. {prompt}); the eval split "
            "must never train a model. Re-run ingest, or report this as a bug"
        )


def model_groups(models: Sequence[Model], chunks: int, mix: int) -> list[tuple[int, ...]]:
    """The evaluation parts that generate together: about ``mix`` models of one method on one
    start, one chunk, sets cut by the models' names (:func:`~paretohqd.stages.kit.policy.
    generate.mixed_groups`; part ``m * chunks + c`` is model ``m`` on chunk ``c``). Not across
    methods: adding a preference retrains most adapters of some methods, and a set holding
    only another method's models keeps its parts."""
    from paretohqd.stages.kit.policy.generate import mixed_groups

    names = [(f"{method}/{pref_id}", f"{start}\n{method}") for method, pref_id, _, start in models]
    return mixed_groups(names, chunks, mix)


@dataclass(frozen=True)
class EvaluateSpec:
    """Everything an evaluation part needs, picklable: part ``m * chunks + c`` is model ``m``
    answering held-out prompt chunk ``c`` (``part_size`` prompts), then scored."""

    models: tuple[Model, ...]
    prompts: tuple[tuple[str, str], ...]
    part_size: int
    seed: int
    settings: GenerationSettings
    backend: Literal["transformers", "vllm"]
    scoring: ScoringSpec
    mix: int = 1

    @property
    def chunks(self) -> int:
        """Prompt chunks per model."""
        return math.ceil(len(self.prompts) / self.part_size)

    @property
    def groups(self) -> list[tuple[int, ...]]:
        """Parts that generate together (:func:`model_groups`)."""
        return model_groups(self.models, self.chunks, self.mix)

    def part(self, index: int) -> tuple[Model, int, tuple[tuple[str, str], ...]]:
        """Part ``index``: its model, chunk number and prompts."""
        c = index % self.chunks
        return (
            self.models[index // self.chunks],
            c,
            self.prompts[c * self.part_size : (c + 1) * self.part_size],
        )

    def part_seed(self, index: int) -> int:
        """Part ``index``'s sampling seed: the run seed, the model (method, preference) and
        the chunk, whatever other models are evaluated alongside."""
        from paretohqd.stages.kit.policy.generate import part_seed

        (method, pref_id, _, _), c, _ = self.part(index)
        return part_seed(self.seed, "evaluate", method, pref_id, c)

    @property
    def key(self) -> str:
        """The stage's fingerprint (workers reload a model rewritten under its path)."""
        return self.scoring.key

    def request(self, index: int) -> GenerationRequest:
        """Part ``index``'s prompts for its model (adapter on its start, or a whole model),
        with :meth:`part_seed`."""
        (_, _, adapter, start), _, chunk = self.part(index)
        prompts = tuple(p for _, p in chunk)
        return GenerationRequest(start, prompts, adapter, self.part_seed(index), self.key)

    def finish(self, index: int, result: GenerationResult) -> pl.DataFrame:
        """Part ``index``'s rows: the model's responses (skipped prompts dropped) with every
        objective's score; scorers are loaded once per process, sentence encoders run on
        ``run.encode_threads``."""
        import polars as pl

        from paretohqd.stages.kit.scoring.embedding import encode_threads
        from paretohqd.stages.kit.scoring.run import score_part, worker_scorers

        (method, pref_id, _, _), _, chunk = self.part(index)
        kept = [
            (pid, p, t) for (pid, p), t in zip(chunk, result.texts, strict=True) if t is not None
        ]
        frame = pl.DataFrame(
            {
                "sample_id": [f"{method}/{pref_id}/{pid}" for pid, _, _ in kept],
                "method": method,
                "pref_id": pref_id,
                "prompt_id": [pid for pid, _, _ in kept],
                "prompt": [p for _, p, _ in kept],
                "response": [t for _, _, t in kept],
            }
        )
        scorers, cache = worker_scorers(self.scoring)
        with encode_threads(self.scoring.config.run.encode_threads):
            scored = pl.from_arrow(score_part(frame, scorers, cache))
        assert isinstance(scored, pl.DataFrame)
        return frame.join(scored, on="sample_id").drop("sample_id")


def _heldout_prompts(ctx: StageContext) -> list[tuple[str, str]]:
    """The held-out (prompt_id, prompt) pairs, checked absent from every training table."""
    cfg = ctx.config.evaluate
    assert cfg is not None
    con = ctx.duckdb()
    try:
        prompts = run_sql(
            con,
            "sample_prompts.sql",
            {"split": "eval", "n": cfg.prompts or 1 << 62, "seed": ctx.config.run.seed},
        ).fetchall()
        if not prompts:
            raise DataError(
                "evaluate: no held-out prompts (split 'eval'); set ingest.heldout_fraction > 0"
            )
        # The training tables among this stage's inputs are already views on ``con``.
        check_heldout(
            con,
            [a.name for a in ctx.inputs_with_role("shards")],
            [a.name for a in ctx.inputs_with_role("training_prompts")],
            [p for p, _ in prompts],
        )
    finally:
        con.close()
    return [(pid, p) for pid, p in prompts]


def run_evaluate(ctx: StageContext) -> Mapping[str, Any]:
    """Generate, score, summarise and report."""
    import polars as pl

    from paretohqd.atomic import write_parquet
    from paretohqd.hashing import sha256_json
    from paretohqd.stages.kit.policy.generate import generation_settings, map_generation_parts
    from paretohqd.stages.kit.scoring.run import scoring_spec

    cfg, policy = ctx.config.evaluate, ctx.config.policy
    assert cfg is not None and policy is not None
    prompts = _heldout_prompts(ctx)
    models = models_to_evaluate(ctx)
    spec = EvaluateSpec(
        models=tuple(models),
        prompts=tuple(prompts),
        part_size=cfg.part_size,
        seed=ctx.config.run.seed,
        settings=generation_settings(ctx.config),
        backend=ctx.config.generation.backend,
        scoring=scoring_spec(ctx),
        mix=ctx.config.generation.mix_adapters,
    )
    n_parts = len(models) * spec.chunks
    parts = ctx.keyed_parts(_part_definitions(ctx, spec))
    sizes = [min(cfg.part_size, len(prompts) - c * cfg.part_size) for c in range(spec.chunks)]
    run = map_generation_parts(ctx, spec, n_parts, store=parts, sizes=sizes * len(models))
    rows = pl.concat([pl.read_parquet(p) for p in parts.paths()])
    write_parquet(ctx.path("eval_generations"), rows)
    heldout = {
        "prompts": len(prompts),
        "prompt_ids_sha256": sha256_json(sorted(pid for pid, _ in prompts)),
    }
    outputs = build_outputs(ctx, rows, models)
    parts.complete()  # only now: a failure in the report keeps every new part for the rerun
    return {**outputs, "heldout": heldout, "parts": {"total": run.parts, "reused": run.resumed}}


def _part_definitions(ctx: StageContext, spec: EvaluateSpec) -> list[dict[str, Any]]:
    """What each part's rows depend on (its key; the stage's identity, with the policy's and
    the scorers' external identities, is added): the model (start and adapter weights, hashed
    once per model), the prompts, the generation settings, the scoring parameters, the seed
    and the group it generates in."""
    from dataclasses import asdict

    from paretohqd.hashing import sha256_json
    from paretohqd.stages.kit.identity import adapter_identity, model_identity
    from paretohqd.stages.kit.policy.generate import with_groups
    from paretohqd.stages.kit.scoring.run import score_params

    shared = {
        "settings": asdict(spec.settings),
        "backend": spec.backend,
        "scoring": score_params(ctx.config),
    }
    models = [
        {
            "model": [method, pref_id],
            "start": model_identity(start, ctx.hasher),
            "adapter": None if adapter is None else adapter_identity(adapter, ctx.hasher),
        }
        for method, pref_id, adapter, start in spec.models
    ]
    chunks = [
        sha256_json(spec.prompts[c * spec.part_size : (c + 1) * spec.part_size])
        for c in range(spec.chunks)
    ]
    definitions = [
        {
            **models[i // spec.chunks],
            "prompts": chunks[i % spec.chunks],
            **shared,
            "seed": spec.part_seed(i),
        }
        for i in range(len(spec.models) * spec.chunks)
    ]
    return with_groups(definitions, spec.groups)


def build_outputs(ctx: StageContext, rows: Any, models: Sequence[Model]) -> dict[str, Any]:
    """Summary tables, hypervolumes with intervals, budgets, plots and the HTML report."""
    from paretohqd.atomic import write_parquet
    from paretohqd.stages.evaluate.metrics import summarise
    from paretohqd.stages.evaluate.report import plot_fronts, render_report
    from paretohqd.stages.kit.preferences import build_grid

    cfg = ctx.config.evaluate
    assert cfg is not None
    objectives = ctx.config.pareto_objectives
    lo, hi = _hv_bounds(ctx, objectives)
    summary = summarise(
        rows,
        objectives=objectives,
        n_boot=cfg.n_boot,
        seed=ctx.config.run.seed,
        min_tokens=cfg.min_tokens,
        max_repeat=cfg.max_repeat,
        n=cfg.ngram,
    )
    grid = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    methods = methods_table(ctx, rows, summary, models, grid=grid, lo=lo, hi=hi)
    write_parquet(ctx.path("eval_summary"), summary)
    write_parquet(ctx.path("eval_methods"), methods)
    out_dir = ctx.path("eval_summary").parent
    fronts = plot_fronts(
        summary,
        objectives,
        out_dir / "fronts.png",
        rays=[(p.pref_id, list(p.weights)) for p in grid],
        lo=lo,
        hi=hi,
    )
    curves = read_curves(models)
    losses = plot_losses(curves, out_dir / "losses.png")
    jumps = curve_jumps(curves)
    shards = sorted(
        ctx.inputs_with_role("shards"), key=lambda a: (a.tags["round"], a.tags.get("arm", ""))
    )
    links = shard_links(ctx.run_dir, [(shard_label(a.tags), ctx.path(a.name)) for a in shards])
    images = {"fronts": fronts} | ({"losses": losses} if losses else {})
    render_report(
        summary,
        methods,
        objectives=objectives,
        title=f"paretohqd run {ctx.config.run.name}",
        images=images,
        links=links,
        curve_flags={name: jump.describe() for name, jump in jumps.items()},
        normalisation={
            "min": dict(zip(objectives, lo, strict=True)),
            "max": dict(zip(objectives, hi, strict=True)),
            "reference_point": 0.0,
        },
        out=out_dir / "report.html",
    )
    rows_by_method = list(methods.iter_rows(named=True))
    return {
        "models": len(models),
        "rows": rows.height,
        "hypervolume": {
            r["method"]: {k: r[k] for k in ("hypervolume", "hv_lo", "hv_hi")}
            for r in rows_by_method
        },
        "pref_following": {
            r["method"]: r["pref_following"]
            for r in rows_by_method
            if r["pref_following"] is not None
        },
        "budget_flags": {r["method"]: r["flag"] for r in rows_by_method if r["flag"]},
        "final_step_jumps": {name: round(jump.ratio, 3) for name, jump in jumps.items()},
        "start": {r["method"]: r["start"] for r in rows_by_method},
        "normalisation": {"lo": lo, "hi": hi, "reference_point": 0.0},
        "collapse_rate": {r["method"]: r["collapse_rate"] for r in rows_by_method},
        "report": str((out_dir / "report.html").relative_to(ctx.run_dir)),
    }


def _hv_bounds(ctx: StageContext, objectives: Sequence[str]) -> tuple[list[float], list[float]]:
    """The fixed hypervolume normalisation: ``evaluate.bounds``, else the round-1 pool's range."""
    cfg = ctx.config.evaluate
    assert cfg is not None
    bounds = dict(cfg.bounds)
    if len(bounds) < len(objectives):
        con = ctx.duckdb()
        try:
            for name, b in layer_bounds(con, objectives).items():
                bounds.setdefault(name, (b["min"], b["max"]))
        finally:
            con.close()
    return [bounds[n][0] for n in objectives], [bounds[n][1] for n in objectives]


#: Columns of ``eval_methods`` that come from the budgets, with their types.
BUDGET_COLUMNS = (
    ("start", "String"),
    ("adapters", "Int64"),
    ("steps", "Float64"),
    ("examples", "Float64"),
    ("tokens", "Float64"),
    ("lr", "Float64"),
    ("lora_r", "Int64"),
    ("lora_alpha", "Int64"),
    ("effective_step", "Float64"),
    ("wall_s", "Float64"),
    ("cpu_s", "Float64"),
    ("scoring_s", "Float64"),
    ("generations", "Int64"),
    ("flag", "String"),
)


def methods_table(
    ctx: StageContext,
    rows: Any,
    summary: Any,
    models: Sequence[Model],
    *,
    grid: Sequence[Any],
    lo: Sequence[float],
    hi: Sequence[float],
) -> Any:
    """One row per method: its start, hypervolume and preference-following with bootstrap
    intervals, pooled collapse rate, and its training budget (flagged when it differs > 2×)."""
    import polars as pl

    from paretohqd.manifest import Manifest
    from paretohqd.stages.evaluate.budgets import method_budgets
    from paretohqd.stages.evaluate.metrics import method_intervals

    cfg = ctx.config.evaluate
    assert cfg is not None
    intervals = method_intervals(
        rows,
        objectives=ctx.config.pareto_objectives,
        weights={p.pref_id: p.weights for p in grid},
        lo=lo,
        hi=hi,
        n_boot=cfg.n_boot,
        seed=ctx.config.run.seed,
        interval=cfg.interval,
    )
    init = ctx.path("init_model") / "adapter" if "init_model" in ctx.stage.inputs else None
    accounting = {a.tags["method"]: a.tags for a in ctx.inputs_with_role("adapters")}
    budgets = method_budgets(
        models, Manifest(ctx.run_dir), init_adapter=init, accounting=accounting
    )
    collapse = summary.group_by("method").agg(
        ((pl.col("collapse_rate") * pl.col("n")).sum() / pl.col("n").sum()).alias("collapse_rate")
    )
    schema = {"method": pl.String} | {c: getattr(pl, t) for c, t in BUDGET_COLUMNS}
    budget = pl.DataFrame(
        [
            {"method": m, **{c: budgets.get(m, {}).get(c) for c, _ in BUDGET_COLUMNS}}
            for m in intervals["method"].to_list()
        ],
        schema=schema,
    )
    return intervals.join(collapse, on="method", how="left", maintain_order="left").join(
        budget, on="method", how="left", maintain_order="left"
    )


#: Every adapter's loss curve, by method: ``(pref_id, steps, losses)``.
Curves = dict[str, list[tuple[str, list[int], list[float]]]]


def read_curves(models: Sequence[Model]) -> Curves:
    """The training log of every evaluated adapter that has one, by method."""
    import polars as pl

    curves: Curves = {}
    for method, pref_id, adapter, _ in models:
        log = adapter / "training_log.parquet" if adapter else None
        if log is not None and log.exists():
            frame = pl.read_parquet(log, columns=["step", "loss"])
            curves.setdefault(method, []).append(
                (pref_id, frame["step"].to_list(), frame["loss"].to_list())
            )
    return curves


def curve_jumps(curves: Curves) -> dict[str, Any]:
    """The adapters whose loss jumps on the last step (``"method · pref_id"`` →
    :class:`~paretohqd.stages.kit.training.curves.Jump`): the state they were saved and
    evaluated in is not the one the curve before it shows."""
    from paretohqd.stages.kit.training.curves import final_jump

    return {
        f"{method} · {pref_id}": jump
        for method, items in curves.items()
        for pref_id, steps, losses in items
        if (jump := final_jump(steps, losses)) is not None
    }


def plot_losses(curves: Curves, out: Path) -> Path | None:
    """One panel per method: every adapter's training loss, smoothed (the raw steps faint), a
    final-step jump ringed in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paretohqd.atomic import atomic_path
    from paretohqd.stages.kit.training.curves import SMOOTHING, draw_curve, final_jump

    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (method, items) in zip(axes[0], curves.items(), strict=True):
        jumps = 0
        for k, (pref_id, steps, losses) in enumerate(items):
            draw_curve(ax, steps, losses, label=pref_id, color=f"C{k % 10}")
            jumps += final_jump(steps, losses) is not None
        note = f"; {jumps} final-step jump{'s' if jumps > 1 else ''} (red)" if jumps else ""
        ax.set_title(f"{method}\nEMA {SMOOTHING}{note}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out


def shard_label(tags: Mapping[str, Any]) -> str:
    """How the report names a shards artifact: its round, or its comparison arm."""
    arm = tags.get("arm")
    return f"{arm} arm (round {tags['round']})" if arm else f"round {tags['round']}"


def shard_links(run_dir: Path, shards: Sequence[tuple[str, Path]]) -> dict[str, str]:
    """``{"<label> · <pref_id>": href}`` for every shard card under each ``(label, root)``,
    relative to ``eval/``. Keyed by label and preference, so the rounds, which share their
    preference ids, each keep their links."""
    return {
        f"{label} · {p.name}": str(Path("..") / p.relative_to(run_dir) / "README.md")
        for label, root in shards
        if root.exists()
        for p in sorted(root.iterdir())
        if (p / "README.md").exists()
    }


def rebuild_report(ctx: StageContext) -> dict[str, Any]:
    """Recompute summary, plots and report from ``eval/generations.parquet`` (no generation):
    the ``report`` tool, run in the evaluate stage's context."""
    import polars as pl

    path = ctx.path("eval_generations")
    if not path.exists():
        raise StageError(f"report: {path} does not exist; run `paretohqd run --until evaluate`")
    return build_outputs(ctx, pl.read_parquet(path), models_to_evaluate(ctx))
