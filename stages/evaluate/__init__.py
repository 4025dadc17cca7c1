"""The evaluate stage: held-out generation, metrics and the comparison report.

Writes ``eval/generations.parquet`` (every model's answers to the held-out prompts, scored),
``eval/summary.parquet`` (per method and preference: mean reward vector with bootstrap CI,
collapse rate, win rate against the base model), ``eval/methods.parquet`` (per method: its
start, hypervolume and preference-following with bootstrap intervals, collapse rate and
training budget), ``eval/fronts.png``, ``eval/losses.png`` and ``eval/report.html``. It reads
every adapter artifact the config enables.
"""

from __future__ import annotations

from typing import Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage, Tool

EVAL_GENERATIONS = Artifact("eval_generations", "eval/generations.parquet")
EVAL_SUMMARY = Artifact("eval_summary", "eval/summary.parquet")
EVAL_METHODS = Artifact("eval_methods", "eval/methods.parquet")


def _inputs(config: Config) -> tuple[str, ...]:
    """What evaluate reads besides the roles: samples, layers, the policy, reward heads."""
    from paretohqd.stages.kit.policy.identity import policy_inputs

    names = ["samples", "layers", *policy_inputs(config)]
    if any((o.model or "").startswith("run:") for o in config.objectives):
        names.append("reward_heads")
    return tuple(names)


#: Every model the run trains (adapters, full models) and every table of training data (the
#: held-out check), whichever stages write them.
ROLES_READ = ("adapters", "model", "shards", "training_prompts")


def _params(config: Config) -> Any:
    from paretohqd.stages.kit.scoring.run import score_params

    return {
        "evaluate": config.evaluate.model_dump(mode="json") if config.evaluate else None,
        "generation": config.generation.model_dump(mode="json"),
        "sft": {"template": config.sft.template},
        "objectives": config.pareto_objectives,
        "select": {"grid": config.select.grid, "step": config.select.step},
        "run": {"seed": config.run.seed},
        **score_params(config),
    }


def _report(ctx: Any) -> Any:
    from paretohqd.stages.evaluate.stage import rebuild_report

    return rebuild_report(ctx)


def _export_hub(ctx: Any, **options: Any) -> Any:
    """Every model and shards directory evaluate reads, as Hub repos (``export hub``)."""
    from paretohqd.stages.kit.export.hub import export_hub

    roles = (*ROLES_READ, "policy")
    arts = [a for name in ctx.stage.inputs if (a := ctx.artifacts[name]).role in roles]
    return export_hub(run_dir=ctx.run_dir, config=ctx.config, artifacts=arts, **options)


def stages(config: Config) -> list[Stage]:
    """The evaluate stage, when ``[evaluate]`` is configured and there is a policy."""
    if config.evaluate is None or config.policy is None or not config.objectives:
        return []
    from paretohqd.stages.evaluate.stage import run_evaluate
    from paretohqd.stages.kit.policy.identity import policy_external
    from paretohqd.stages.kit.scoring.run import score_external

    return [
        Stage(
            name="evaluate",
            fn=run_evaluate,
            inputs=_inputs(config),
            reads_roles=ROLES_READ,
            tools=(
                Tool("report", _report, "rebuild summary, plots and report from generations"),
                Tool("export-hub", _export_hub, "adapters, models and shards as Hub repos"),
            ),
            outputs=(EVAL_GENERATIONS, EVAL_SUMMARY, EVAL_METHODS),
            section="evaluate",
            # 3: seeded after the adapter loads (resume = uninterrupted); 4: seeded by what a
            # part is (model, chunk), parts keyed and reused across runs; 5: every row sampled
            # from its own generator, models' parts in mixed-adapter groups
            version="5",
            params=_params,
            external=lambda c, h: {**policy_external(c, h), **score_external(c, h)},
            sql=("sample_prompts.sql", "heldout_leaks.sql", "layer_bounds.sql"),
            description="held-out generation, metrics, fronts and the comparison report",
        )
    ]
