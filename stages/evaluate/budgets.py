"""What each method spent: optimiser steps, examples, tokens, time, and where it started.

A comparison between methods means little unless their budgets are on the table. Each adapter
records its own training cost in ``train_state.json`` (steps, examples, tokens, wall and CPU
seconds, and for PAMA the online scoring); stages a method needed beyond its adapters
(ParetoHqD's regeneration and round-two scoring) come from the manifest. Budgets that differ
by more than 2× from the reference method's are flagged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: What a method's adapters artifact may declare in its tags about its budget:
#: ``continues`` (methods whose adapters it continues: their budget is included),
#: ``extra_stages`` (stages it needed besides training: their wall/CPU time counts),
#: ``scoring_stages`` (of those, the ones that score generations: reported as scoring time).
#: The method whose tags name ``extra_stages`` with a ``regenerate`` entry reports its
#: generations; the first method with ``continues`` is the reference of the flags.
#: Budgets whose ratio to the reference method's lies outside [1/FLAG_RATIO, FLAG_RATIO].
FLAG_RATIO = 2.0
SUMMED = ("steps", "examples", "tokens", "seconds", "cpu_seconds", "scoring_seconds")


def _train_state(adapter: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((adapter / "train_state.json").read_text())
    except (OSError, ValueError):
        return {}
    return state


def _sum(states: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [s.get("metrics", {}).get(key) for s in states]
    if not values or any(v is None for v in values):
        return None
    return float(sum(values))


def method_budgets(
    models: Sequence[tuple[str, str, Path | None, str]],
    manifest: Any,
    *,
    init_adapter: Path | None = None,
    accounting: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per trained method (and the shared SFT start): what its models cost to train.

    Parameters
    ----------
    models
        ``(method, pref_id, adapter, start model)`` as the evaluate stage lists them.
    manifest
        The run's :class:`~paretohqd.manifest.Manifest` (for stage timings and row counts).
    init_adapter
        The shared SFT start's adapter directory, when a method starts from it.
    accounting
        Per method, the tags of its adapters artifact (``continues``, ``extra_stages``,
        ``scoring_stages``): what else its budget includes.
    """
    accounting = accounting or {}
    states: dict[str, list[dict[str, Any]]] = {}
    for method, _, adapter, _ in models:
        if adapter is not None:
            states.setdefault(method, []).append(_train_state(adapter))
    out: dict[str, dict[str, Any]] = {}
    if init_adapter is not None and (init_adapter / "train_state.json").exists():
        init_state = _train_state(init_adapter)
        out["sft_init"] = _budget([init_state], (), (), manifest)
        out["sft_init"] |= {"start": "base", "adapters": 0, **_shape(init_state)}
    for method, own in states.items():
        if method in out:
            continue
        tags = accounting.get(method, {})
        every = [*own, *(s for m in tags.get("continues", ()) for s in states.get(m, []))]
        extra = tags.get("extra_stages", ())
        budget = _budget(every, extra, tags.get("scoring_stages", ()), manifest)
        budget["adapters"] = len(own)
        budget["start"] = own[0].get("start", "base") if own else "base"
        budget |= _shape(own[0] if own else {})
        if "regenerate" in extra:
            entry = manifest.get("regenerate") or {}
            rows = (entry.get("outputs") or {}).get("generations", {}).get("rows")
            budget["generations"] = rows
        out[method] = budget
    reference = next((m for m in out if accounting.get(m, {}).get("continues")), None)
    flag_budgets(out, reference)
    return out


def _shape(state: Mapping[str, Any]) -> dict[str, Any]:
    """Learning rate, LoRA shape and effective step (lr × alpha / r) of a training state."""
    settings = state.get("settings", {})
    shape = {key: settings.get(key) for key in ("lr", "lora_r", "lora_alpha")}
    if shape["lr"] and shape["lora_r"] and shape["lora_alpha"]:
        shape["effective_step"] = shape["lr"] * shape["lora_alpha"] / shape["lora_r"]
    return shape


def _budget(
    states: Sequence[Mapping[str, Any]],
    extra: Sequence[str],
    scoring: Sequence[str],
    manifest: Any,
) -> dict[str, Any]:
    budget: dict[str, Any] = {key: _sum(states, key) for key in SUMMED}
    entries = [manifest.get(name) or {} for name in extra]
    budget["wall_s"] = (budget.pop("seconds") or 0.0) + sum(e.get("seconds", 0.0) for e in entries)
    budget["cpu_s"] = (budget.pop("cpu_seconds") or 0.0) + sum(
        e.get("cpu_seconds", 0.0) for e in entries
    )
    stage_scoring = sum((manifest.get(name) or {}).get("seconds", 0.0) for name in scoring)
    budget["scoring_s"] = (budget.pop("scoring_seconds") or 0.0) + stage_scoring
    return budget


def flag_budgets(budgets: dict[str, dict[str, Any]], reference: str | None = None) -> None:
    """Add ``flag``: which budgets differ from the reference method's by more than 2×.

    The reference is ParetoHqD's final round when present (the method the comparison is
    about: the caller names it), else the first method listed.
    """
    trained = [m for m in budgets if m != "sft_init"]
    if not trained:
        return
    ref = reference if reference in budgets else trained[0]
    base = budgets[ref]
    for method in trained:
        notes = []
        for key in ("steps", "tokens"):
            mine, theirs = budgets[method].get(key), base.get(key)
            if mine and theirs:
                ratio = mine / theirs
                if ratio > FLAG_RATIO or ratio < 1 / FLAG_RATIO:
                    notes.append(f"{key} {ratio:.2g}× {ref}")
        budgets[method]["flag"] = "; ".join(notes) or None
