"""The evaluate stage function: every model answers the held-out prompts; metrics; report.

Models are the base policy and every adapter the run trained (ParetoHqD rounds one and two,
MODPO, RACO, ...). Each (model, chunk of prompts) is one resumable part that is generated and
scored in one go, so a killed evaluation resumes without regenerating. Sampling is seeded per
part, so ``paretohqd run --only evaluate --force`` reproduces the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from paretohqd.catalog import run_sql
from paretohqd.errors import DataError, StageError
from paretohqd.stage import StageContext
from paretohqd.stages.pareto.stage import layer_bounds

#: Adapter artifacts and the method name they are reported under, in report order.
ADAPTER_METHODS = (
    ("adapters", "paretohqd_round1"),
    ("adapters_round2", "paretohqd"),
    ("adapters_linear", "linear_round1"),
    ("adapters_modpo", "modpo"),
    ("adapters_raco", "raco"),
    ("adapters_pama", "pama"),
)
#: Views that hold training data, checked against the held-out prompts.
TRAINING_VIEWS = ("shards", "shards_round2", "shards_linear", "pairs", "regen_prompts")


def models_to_evaluate(ctx: StageContext) -> list[tuple[str, str, Path | None]]:
    """(method, pref_id, adapter dir) for the base model and every adapter present."""
    out: list[tuple[str, str, Path | None]] = [("base", "base", None)]
    for artifact, method in ADAPTER_METHODS:
        if artifact not in ctx.stage.inputs:
            continue
        root = ctx.path(artifact)
        for adapter in sorted(root.iterdir()) if root.exists() else []:
            if (adapter / "adapter_config.json").exists():
                out.append((method, adapter.name, adapter))
    return out


def check_heldout(con: Any, views: Sequence[str], prompt_ids: Sequence[str]) -> None:
    """Fail if any evaluation prompt appears in a shard, a pair or the regeneration prompts."""
    import pyarrow as pa

    con.register("eval_ids", pa.table({"prompt_id": list(prompt_ids)}))
    for view in views:
        if view == "regen_prompts":
            query = "select prompt_id from regen_prompts"
        elif view == "pairs":
            query = "select prompt_id from pairs"
        else:
            query = f"select s.prompt_id from {view} join samples as s using (sample_id)"
        leaked = con.execute(
            f"select prompt_id from eval_ids intersect ({query}) limit 5"
        ).fetchall()
        if leaked:
            raise StageError(
                f"evaluate: held-out prompts appear in `{view}` (e.g. {leaked[0][0]}); the eval "
                "split must never train a model. Re-run ingest, or report this as a bug"
            )
    con.unregister("eval_ids")


def run_evaluate(ctx: StageContext) -> Mapping[str, Any]:
    """Generate, score, summarise and report."""
    import polars as pl

    from paretohqd.atomic import write_parquet
    from paretohqd.stages.models import policy_model
    from paretohqd.stages.models.generate import make_generator
    from paretohqd.stages.models.regenerate import generation_settings
    from paretohqd.stages.score.stage import build_scorers, score_cache, score_part

    cfg, gen_cfg, policy = ctx.config.evaluate, ctx.config.generation, ctx.config.policy
    assert cfg is not None and policy is not None
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
            con, [n for n in TRAINING_VIEWS if n in ctx.stage.inputs], [p for p, _ in prompts]
        )
    finally:
        con.close()

    models = models_to_evaluate(ctx)
    settings = generation_settings(ctx.config)
    scorers = build_scorers(ctx)
    cache = score_cache(ctx.config)
    parts = ctx.parts()
    parts.drop_stale()
    chunks = math.ceil(len(prompts) / cfg.part_size)
    generator = None
    for mi, (method, pref_id, adapter) in enumerate(models):
        for c in range(chunks):
            index = mi * chunks + c
            if parts.done(index):
                continue
            if generator is None:
                generator = make_generator(policy_model(ctx.config), settings, gen_cfg.backend)
            chunk = prompts[c * cfg.part_size : (c + 1) * cfg.part_size]
            result = generator.generate(
                [p for _, p in chunk], adapter=adapter, seed=ctx.config.run.seed + index
            )
            kept = [
                (pid, p, t)
                for (pid, p), t in zip(chunk, result.texts, strict=True)
                if t is not None
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
            scored = pl.from_arrow(score_part(frame, scorers, cache))
            assert isinstance(scored, pl.DataFrame)
            parts.write(index, frame.join(scored, on="sample_id").drop("sample_id"))
    rows = pl.concat([pl.read_parquet(p) for p in parts.paths()])
    write_parquet(ctx.path("eval_generations"), rows)
    parts.clear()
    from paretohqd.hashing import sha256_json

    heldout = {
        "prompts": len(prompts),
        "prompt_ids_sha256": sha256_json(sorted(pid for pid, _ in prompts)),
    }
    return {**build_outputs(ctx, rows, models), "heldout": heldout}


def build_outputs(
    ctx: StageContext, rows: Any, models: Sequence[tuple[str, str, Path | None]]
) -> dict[str, Any]:
    """Summary table, hypervolumes, plots and the HTML report from the scored generations."""
    import polars as pl

    from paretohqd.atomic import write_parquet
    from paretohqd.stages.evaluate.metrics import method_hypervolume, summarise
    from paretohqd.stages.evaluate.report import plot_fronts, render_report

    cfg = ctx.config.evaluate
    assert cfg is not None
    objectives = ctx.config.pareto_objectives
    bounds = dict(cfg.bounds)
    if len(bounds) < len(objectives):
        con = ctx.duckdb()
        try:
            for name, b in layer_bounds(con, objectives).items():
                bounds.setdefault(name, (b["min"], b["max"]))
        finally:
            con.close()
    lo = [bounds[n][0] for n in objectives]
    hi = [bounds[n][1] for n in objectives]
    summary = summarise(
        rows,
        objectives=objectives,
        n_boot=cfg.n_boot,
        seed=ctx.config.run.seed,
        min_tokens=cfg.min_tokens,
        max_repeat=cfg.max_repeat,
        n=cfg.ngram,
    )
    hv = method_hypervolume(summary, objectives, lo=lo, hi=hi)
    write_parquet(ctx.path("eval_summary"), summary)
    out_dir = ctx.path("eval_summary").parent
    from paretohqd.stages.select.grid import build_grid

    grid = build_grid(ctx.config.select.grid, len(objectives), step=ctx.config.select.step)
    fronts = plot_fronts(
        summary,
        objectives,
        out_dir / "fronts.png",
        rays=[(p.pref_id, list(p.weights)) for p in grid],
        lo=lo,
        hi=hi,
    )
    losses = plot_losses(models, out_dir / "losses.png")
    timings = method_timings(ctx)
    links = {
        p.name: str(Path("..") / p.relative_to(ctx.run_dir) / "README.md")
        for root in ("shards/round1", "shards/round2")
        if (ctx.run_dir / root).exists()
        for p in sorted((ctx.run_dir / root).iterdir())
        if (p / "README.md").exists()
    }
    images = {"fronts": fronts} | ({"losses": losses} if losses else {})
    render_report(
        summary,
        hv,
        objectives=objectives,
        title=f"paretohqd run {ctx.config.run.name}",
        timings=timings,
        images=images,
        links=links,
        normalisation={
            "min": dict(zip(objectives, lo, strict=True)),
            "max": dict(zip(objectives, hi, strict=True)),
            "reference_point": 0.0,
        },
        out=out_dir / "report.html",
    )
    return {
        "models": len(models),
        "rows": rows.height,
        "hypervolume": hv,
        "normalisation": {"lo": lo, "hi": hi, "reference_point": 0.0},
        "collapse_rate": {
            m: float(v)
            for m, v in summary.group_by("method").agg(pl.col("collapse_rate").mean()).rows()
        },
        "report": str((out_dir / "report.html").relative_to(ctx.run_dir)),
    }


def method_timings(ctx: StageContext) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds per method, from the manifest entries of its training stages."""
    from paretohqd.manifest import Manifest

    stages = {
        "paretohqd": (
            "reward_heads",
            "score",
            "pareto",
            "select",
            "sft",
            "regenerate",
            "score_round2",
            "pareto_round2",
            "select_round2",
            "sft_round2",
        ),
        "linear_round1": ("reward_heads", "score", "pareto", "select_linear", "sft_linear"),
        "modpo": ("pairs", "modpo"),
        "raco": ("pairs", "raco"),
        "pama": ("pama",),
    }
    manifest = Manifest(ctx.run_dir)
    out = {}
    for method, names in stages.items():
        if manifest.get(names[-1]) is None:  # the method's own training stage never ran
            continue
        entries = [e for e in (manifest.get(n) for n in names) if e]
        if entries:
            out[method] = {
                "wall_s": round(sum(e.get("seconds", 0.0) for e in entries), 1),
                "cpu_s": round(sum(e.get("cpu_seconds", 0.0) for e in entries), 1),
            }
    return out


def plot_losses(models: Sequence[tuple[str, str, Path | None]], out: Path) -> Path | None:
    """One panel per method: every adapter's training loss curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    from paretohqd.atomic import atomic_path

    curves: dict[str, list[tuple[str, Any]]] = {}
    for method, pref_id, adapter in models:
        log = adapter / "training_log.parquet" if adapter else None
        if log is not None and log.exists():
            curves.setdefault(method, []).append((pref_id, pl.read_parquet(log)))
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (method, items) in zip(axes[0], curves.items(), strict=True):
        for pref_id, log in items:
            ax.plot(log["step"], log["loss"], lw=0.8, label=pref_id)
        ax.set_title(method)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return out


def rebuild_report(config: Any) -> dict[str, Any]:
    """Recompute summary, plots and report from ``eval/generations.parquet`` (no generation)."""
    import polars as pl

    from paretohqd.runner import Runner
    from paretohqd.stage import StageContext

    runner = Runner(config)
    if "evaluate" not in {s.name for s in runner.stages}:
        raise StageError("report: the config has no [evaluate] table (or no policy)")
    stage = runner.stage("evaluate")
    ctx = StageContext(
        stage=stage,
        config=config,
        run_dir=runner.run_dir,
        fingerprint="",
        artifacts=runner.artifacts,
        hasher=runner.hasher,
    )
    path = ctx.path("eval_generations")
    if not path.exists():
        raise StageError(f"report: {path} does not exist; run `paretohqd run --until evaluate`")
    return build_outputs(ctx, pl.read_parquet(path), models_to_evaluate(ctx))
