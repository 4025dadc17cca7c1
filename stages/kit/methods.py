"""Declaring a method's training stage: the parameters every method stage fingerprints, and
what every method's per-preference worker shares.

A method package (``stages/modpo``, ``stages/raco``, ``stages/pama``) declares its stage with
these, so the fingerprint of every method covers the same things: its own table, the SFT
settings it inherits, the preference grid, the policy, the seed and the resolved LoRA shape;
and its adapters record the same things in ``train_state.json`` (:class:`MethodSpec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.config import Config
from paretohqd.stage import Artifact, Stage

if TYPE_CHECKING:
    from paretohqd.executor import Item
    from paretohqd.stages.kit.training.loop import Objective
    from paretohqd.stages.kit.training.pairwise import KeepPairs, ObjectiveFactory
    from paretohqd.stages.kit.training.sft import SFTSettings


@dataclass(frozen=True)
class MethodSpec:
    """What every method's per-preference worker shares (picklable): the start model, the
    training settings, the objectives' names and which start the method's table chose."""

    start_model: str
    settings: SFTSettings
    objectives: list[str]
    start: str

    def train(self, objective: Objective, item: Item, key: str, target: Path) -> Mapping[str, Any]:
        """Train preference ``item`` with ``objective`` into ``target``; its state records the
        item's key, the preference, the objectives and the start."""
        from paretohqd.stages.kit.training.loop import train_adapter

        return train_adapter(
            self.start_model,
            objective,
            self.settings,
            target,
            extra_state={
                "key": key,
                "pref_id": item.id,
                "objectives": self.objectives,
                "start": self.start,
            },
        )


def method_params(name: str, *, threads: bool = True) -> Callable[[Config], Any]:
    """The fingerprint parameters of method ``name`` (its config table is ``config.<name>``).

    ``threads``: whether ``run.train_threads`` applies (PAMA generates inside its loop and
    trains with the run's threads, so it does not).
    """

    def params(config: Config) -> Any:
        from paretohqd.stages.kit.training.recipes import method_shape

        cfg = getattr(config, name)
        return {
            name: cfg.model_dump(mode="json") if cfg else None,
            "sft": config.sft.model_dump(mode="json"),
            "select": {"grid": config.select.grid, "step": config.select.step},
            "policy": config.policy.model_dump(mode="json") if config.policy else None,
            "run": {"seed": config.run.seed}
            | ({"train_threads": config.run.train_threads} if threads else {}),
            "resolved": method_shape(config, name) if cfg else None,
        }

    return params


def pairwise_stage(
    name: str, config: Config, *, objective: ObjectiveFactory, keep: KeepPairs
) -> list[Stage]:
    """The stage of pairwise method ``name`` (its table ``config.<name>``; none when unset).

    Every pairwise method trains one adapter per preference of the select grid on ``pairs``,
    from the start its table names; what differs between them is the method package's
    ``objective`` (its objective class, built per preference) and the pairs it ``keep``s.
    """
    from functools import partial

    from paretohqd.stages.kit.policy.identity import policy_external, start_inputs

    cfg = getattr(config, name)
    if config.policy is None or not config.objectives or cfg is None:
        return []
    from paretohqd.stages.kit.training.pairwise import run_pairwise_method

    output = Artifact(f"adapters_{name}", f"adapters/{name}", kind="dir")
    return [
        Stage(
            name=name,
            fn=partial(
                run_pairwise_method,
                method=name,
                output=output.name,
                objective=objective,
                keep=keep,
            ),
            inputs=("pairs", "samples", *start_inputs(config, cfg.init)),
            outputs=(output,),
            section=name,
            version="2",
            params=method_params(name),
            external=policy_external,
            description=f"{name.upper()} LoRA adapter per preference, on the shared pairs",
        )
    ]
