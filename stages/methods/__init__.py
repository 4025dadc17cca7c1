"""Pairwise methods on the same data as ParetoHqD: ``pairs``, ``modpo`` and ``raco``.

``pairs`` builds preference pairs (per-objective margins and signs) from the prompts behind the
round-one shards; ``modpo`` and ``raco`` train one LoRA adapter per preference of the select
grid with the shared loop in ``loop.py``, ``pama`` one per preference online. A method stage
exists when its config table does; each starts from the shared SFT model (``sft_init``) unless
its table says ``init = "base"``, with its own LoRA shape and learning rate (``recipes.py``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.training.recipes import PAIRWISE_METHODS

PAIRS = Artifact("pairs", "pairs.parquet")
METHODS = PAIRWISE_METHODS
PAMA = Artifact("adapters_pama", "adapters/pama", kind="dir")


def _method_params(name: str) -> Any:
    def params(config: Config) -> Any:
        from paretohqd.stages.kit.training.recipes import method_shape

        cfg = getattr(config, name)
        return {
            name: cfg.model_dump(mode="json") if cfg else None,
            "sft": config.sft.model_dump(mode="json"),
            "select": {"grid": config.select.grid, "step": config.select.step},
            "policy": config.policy.model_dump(mode="json") if config.policy else None,
            "run": {"seed": config.run.seed}
            | ({} if name == "pama" else {"train_threads": config.run.train_threads}),
            "resolved": method_shape(config, name) if cfg else None,
        }

    return params


def stages(config: Config) -> list[Stage]:
    """``pairs`` plus one stage per configured pairwise method."""
    from paretohqd.stages.kit.policy.identity import policy_external, start_inputs
    from paretohqd.stages.kit.scoring.run import score_external, score_params
    from paretohqd.stages.methods.train import run_method, run_pairs, run_pama

    if config.policy is None or not config.objectives:
        return []
    out: list[Stage] = []
    if config.pama is not None:
        uses_heads = any((o.model or "").startswith("run:") for o in config.objectives)
        out.append(
            Stage(
                name="pama",
                fn=partial(run_pama, output=PAMA.name),
                inputs=(
                    "shards",
                    *start_inputs(config, config.pama.init),
                    *(("reward_heads",) if uses_heads else ()),
                ),
                outputs=(PAMA,),
                section="pama",
                version="2",
                params=lambda c: {
                    **_method_params("pama")(c),
                    **score_params(c),
                    "objectives_used": c.pareto_objectives,
                },
                external=lambda c, h: {**policy_external(c, h), **score_external(c, h)},
                sql=("shard_prompts.sql",),
                description="PAMA online PPO adapter per preference (Noon + Theorem 1)",
            )
        )
    wanted = [m for m in METHODS if getattr(config, m) is not None]
    if not wanted:
        return out
    out += [
        Stage(
            name="pairs",
            fn=run_pairs,
            inputs=("samples", "layers", "preferences", "selection"),
            outputs=(PAIRS,),
            section="pairs",
            version="1",
            params=lambda c: {
                "pairs": c.pairs.model_dump(mode="json"),
                "objectives": c.pareto_objectives,
            },
            sql=("pairs.sql",),
            description="preference pairs with per-objective margins and signs",
        )
    ]
    for name in wanted:
        art = Artifact(f"adapters_{name}", f"adapters/{name}", kind="dir")
        out.append(
            Stage(
                name=name,
                fn=partial(run_method, method=name, output=art.name),
                inputs=("pairs", "samples", *start_inputs(config, getattr(config, name).init)),
                outputs=(art,),
                section=name,
                version="2",
                params=_method_params(name),
                external=policy_external,
                description=f"{name.upper()} LoRA adapter per preference, on the shared pairs",
            )
        )
    return out
