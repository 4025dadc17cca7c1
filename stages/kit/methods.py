"""Declaring a method's training stage: the parameters every method stage fingerprints, and
what every method's per-preference worker shares.

A method package (``stages/modpo``, ``stages/raco``, ``stages/pama``) declares its stage with
these, so the fingerprint of every method covers the same things: its own table, the SFT
settings it inherits, the preference grid, the policy, the seed and the resolved LoRA shape;
and its adapters record the same things in ``train_state.json`` (:class:`MethodSpec`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from paretohqd.config import Config, Section
from paretohqd.stage import Artifact, Stage
from paretohqd.stages.kit.training.recipes import Recipe


class MethodTable(Section):
    """A method's config table: its start, LoRA shape and learning rate.

    A method package subclasses it (``stages/modpo/config.py``) and lists it in the package's
    ``CONFIG_TABLES``; ``published`` is the recipe its default learning rate is rescaled from.
    """

    published: ClassVar[Recipe | None] = None

    init: Literal["sft", "base"] = Field(
        "sft",
        description="start from (and refer to) the shared SFT model of the sft_init stage, as "
        "the method's paper does, or from the base policy",
    )
    lora_r: int | None = Field(None, ge=1, description="LoRA rank (None: [sft].lora_r)")
    lora_alpha: int | None = Field(None, ge=1, description="LoRA alpha (None: [sft].lora_alpha)")
    lr: float | None = Field(
        None,
        gt=0,
        description="AdamW learning rate (None: the published recipe's, rescaled so that "
        "lr × lora_alpha / lora_r matches it; see the README)",
    )


class PairwiseMethodTable(MethodTable):
    """Training settings shared by the pairwise methods (trained on ``pairs``)."""

    steps: int = Field(100, ge=1, description="optimiser steps per preference")
    batch_size: int = Field(8, ge=1, description="pairs per micro-batch")
    grad_accum: int = Field(1, ge=1)
    beta: float = Field(0.1, gt=0, description="DPO temperature")
    max_pairs: int | None = Field(None, ge=1, description="cap on training pairs (seeded)")
    fused: bool = Field(
        True, description="train the preferences' adapters together (see [sft].fused)"
    )


def method_tables(config: Config, kind: type[MethodTable] = MethodTable) -> dict[str, Any]:
    """The configured tables of ``kind`` (every method by default), by name, in config order."""
    return {
        name: table
        for name in type(config).model_fields
        if isinstance(table := getattr(config, name), kind)
    }


def adapters_artifact(
    name: str, path: str, *, method: str, order: int, start: str = "base", **tags: Any
) -> Artifact:
    """Per-preference adapters, reported as ``method`` (at ``order`` in the report), trained
    from ``start``; more tags: ``continues``, ``extra_stages``, ``scoring_stages``, ``data``
    (the shards artifact they trained on, linked from their exported cards)."""
    tags |= {"method": method, "order": order, "start": start}
    return Artifact(name, path, kind="dir", role="adapters", tags=tags)


if TYPE_CHECKING:
    from paretohqd.executor import Item
    from paretohqd.stages.kit.tracking import AdapterRun
    from paretohqd.stages.kit.training.loop import Objective
    from paretohqd.stages.kit.training.pairwise import KeepPairs, ObjectiveFactory
    from paretohqd.stages.kit.training.sft import SFTSettings


@dataclass(frozen=True)
class MethodSpec:
    """What every method's per-preference worker shares (picklable): the start model, the
    training settings, the objectives' names, which start the method's table chose, and the
    stage's adapter run (plot titles, tracker; keyword-only, after the subclasses' fields)."""

    start_model: str
    settings: SFTSettings
    objectives: list[str]
    start: str
    run: AdapterRun | None = field(default=None, kw_only=True)

    def train(
        self,
        objective: Objective,
        item: Item,
        key: str,
        target: Path,
        weights: Sequence[float] = (),
    ) -> Mapping[str, Any]:
        """Train preference ``item`` (its ``weights``) with ``objective`` into ``target``; its
        state records the item's key, the preference, the objectives and the start."""
        from paretohqd.stages.kit.training.loop import train_adapter

        return train_adapter(
            self.start_model,
            objective,
            self.settings,
            target,
            extra_state=self.extra_state(item, key),
            run=self.adapter_run(item, weights),
        )

    def adapter_run(self, item: Item, weights: Sequence[float]) -> AdapterRun | None:
        """Preference ``item``'s run (None when the stage gave none)."""
        return self.run.of(item.id, weights) if self.run else None

    def extra_state(self, item: Item, key: str) -> dict[str, Any]:
        """What an adapter's ``train_state.json`` records beside the loop's: the item's key,
        the preference, the objectives and the start."""
        return {"key": key, "pref_id": item.id, "objectives": self.objectives, "start": self.start}


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
    name: str, config: Config, *, objective: ObjectiveFactory, keep: KeepPairs, order: int
) -> list[Stage]:
    """The stage of pairwise method ``name`` (its table ``config.<name>``; none when unset).

    Every pairwise method trains one adapter per preference of the select grid on ``pairs``,
    from the start its table names; what differs between them is the method package's
    ``objective`` (its objective class, built per preference) and the pairs it ``keep``s.
    ``order`` places the method in the report.
    """
    from functools import partial

    from paretohqd.stages.kit.policy.identity import policy_external, start_inputs

    cfg = getattr(config, name)
    if config.policy is None or not config.objectives or cfg is None:
        return []
    from paretohqd.stages.kit.training.pairwise import run_pairwise_method

    output = adapters_artifact(
        f"adapters_{name}", f"adapters/{name}", method=name, order=order, start=cfg.init
    )
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
