"""``paretohqd summary``: what a run did, in one screen (or one JSON object).

Stages with their state, rows and timings from the manifest; the per-preference mean raw
scores of the latest selection round (what each preference's adapter was trained toward); how
much the shards of each selection overlap; and where the shards, adapters and plots are.
:func:`collect` gathers it as plain data (``summary --json``), :func:`print_summary` draws it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from paretohqd.config import Config

if TYPE_CHECKING:
    from paretohqd.manifest import Manifest
    from paretohqd.runner import Runner


def _round(art: Any) -> Any:
    return art.tags.get("round", 0)


def _order(art: Any) -> Any:
    return art.tags.get("order", 0)


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) and x == x else "n/a"


def stage_states(runner: Runner, manifest: Manifest) -> list[dict[str, Any]]:
    """Each stage of the plan as ``status`` and ``summary`` show it: state, reasons, rows,
    seconds and the stage's note (None where it never completed), and its log file."""
    from paretohqd.logs import log_path

    out: list[dict[str, Any]] = []
    for item in runner.plan(manifest):
        entry = manifest.get(item.stage.name)
        log = log_path(runner.run_dir, item.stage.name)
        out.append(
            {
                "stage": item.stage.name,
                "state": item.state,
                "reasons": item.reasons,
                "rows": None
                if entry is None
                else sum(o.get("rows", 0) for o in entry.get("outputs", {}).values()),
                "seconds": None if entry is None else entry.get("seconds"),
                "cpu_seconds": None if entry is None else entry.get("cpu_seconds"),
                "note": None if entry is None else (entry.get("metadata") or {}).get("note"),
                "log": str(log) if log.exists() else None,
            }
        )
    return out


def collect(config: Config) -> dict[str, Any]:
    """The summary of the run of ``config`` as JSON-ready data."""
    from paretohqd.inspect import Session
    from paretohqd.manifest import Manifest
    from paretohqd.registry import artifacts_with_role
    from paretohqd.runner import Runner

    manifest = Manifest(config.run_dir)
    runner = Runner(config)
    stages = stage_states(runner, manifest)
    session = Session.open(config)
    objectives = list(config.pareto_objectives)
    # The shards of the latest selection round (the comparison arms aside): what the final
    # adapters were trained toward.
    shards = artifacts_with_role(runner.stages, "shards")
    latest = sorted(
        (a for a in shards if "arm" not in a.tags and a.name in session.views),
        key=lambda a: a.tags.get("round", 0),
    )
    means: dict[str, dict[str, Any]] = {}
    if latest and objectives:
        from dataclasses import replace

        from paretohqd.catalog import connect, run_sql

        con = connect(config.run_dir, [replace(latest[-1], name="shards")])
        try:
            rows_ = run_sql(con, "shard_means.sql").fetchall()
        finally:
            con.close()
        for pref, position, n, mean, distance in rows_:
            entry = means.setdefault(pref, {"rows": n, "distance": distance, "means": {}})
            entry["means"][objectives[int(position) - 1]] = mean
    overlap = {
        name: ov
        for name, entry in manifest.stages.items()
        if (ov := (entry.get("metadata") or {}).get("overlap"))
    }
    limits = {h.name: h.min_accuracy for h in config.reward_heads}
    heads = {
        name: {
            "pairs": m.get("pairs"),
            "val_pairs": m.get("val_pairs"),
            "val_accuracy": m.get("val_accuracy"),
            "train_accuracy": m.get("train_accuracy"),
            "min_accuracy": limits.get(name),
        }
        for name, m in ((manifest.get("reward_heads") or {}).get("metadata") or {})
        .get("heads", {})
        .items()
    }
    run = config.run_dir
    places: dict[str, list[str]] = {}
    for role, key in (("shards", _round), ("adapters", _order)):
        arts = sorted(artifacts_with_role(runner.stages, role), key=key)
        places[role] = [a.path for a in arts if (run / a.path).exists()]
    places["plots"] = ["plots"] if (run / "plots").exists() else []
    return {
        "run": config.run.name,
        "run_dir": str(run),
        "stages": stages,
        "total_seconds": round(sum(s["seconds"] or 0.0 for s in stages), 3),
        "objectives": objectives,
        "shard_means": {"view": latest[-1].name if means else None, "preferences": means},
        "overlap": overlap,
        "reward_heads": heads,
        "places": places,
    }


def print_summary(config: Config, console: Any) -> None:
    """Print the summary tables for the run of ``config``."""
    from rich.table import Table

    data = collect(config)
    stages = Table(title=f"run {data['run']}: stages")
    for col in ("stage", "state", "rows", "seconds", "cpu s"):
        stages.add_column(col, justify="right" if col in ("rows", "seconds", "cpu s") else "left")
    for s in data["stages"]:
        done = s["seconds"] is not None
        stages.add_row(
            s["stage"],
            s["state"],
            f"{s['rows']:,}" if done else "",
            f"{s['seconds']:.1f}" if done else "",
            f"{s['cpu_seconds'] or 0:.1f}" if done else "",
        )
    stages.add_row("total", "", "", f"{data['total_seconds']:.1f}", "")
    console.print(stages)

    if data["reward_heads"]:
        heads = Table(title="reward heads: held-out pairwise accuracy (0.5 is chance)")
        for col in ("head", "pairs", "held out", "accuracy", "train", "min"):
            heads.add_column(col, justify="left" if col == "head" else "right")
        for name, h in data["reward_heads"].items():
            heads.add_row(
                name,
                str(h["pairs"]),
                str(h["val_pairs"]),
                _num(h["val_accuracy"]),
                _num(h["train_accuracy"]),
                _num(h["min_accuracy"]),
            )
        console.print(heads)
    objectives, shard_means = data["objectives"], data["shard_means"]
    if shard_means["preferences"]:
        table = Table(title=f"mean raw scores of the selected samples ({shard_means['view']})")
        for col in ("pref_id", "rows", *objectives, "distance"):
            table.add_column(col, justify="left" if col == "pref_id" else "right")
        for pref, entry in shard_means["preferences"].items():
            cells = [f"{entry['means'].get(o, float('nan')):.3f}" for o in objectives]
            table.add_row(pref, str(entry["rows"]), *cells, f"{entry['distance']:.3f}")
        console.print(table)
    overlap = Table(title="shard overlap: how much the preferences' data differ (Jaccard)")
    for col in ("stage", "distinct rows", "one-hot", "adjacent", "most similar pair"):
        overlap.add_column(col, justify="right" if col in ("one-hot", "adjacent") else "left")
    for name, ov in data["overlap"].items():
        jac, ends, adj = ov.get("jaccard"), ov.get("one_hot"), ov.get("adjacent")
        pair = " ".join(p.removeprefix("pref-") for p in jac["max_pair"]) if jac else ""
        overlap.add_row(
            name,
            f"{ov['distinct_rows']:,}/{ov['rows']:,} {ov['distinct_share']:.0%}",
            f"{ends['max']:.2f}" if ends else "",
            f"{adj['mean']:.2f} ≤{adj['max']:.2f}" if adj else "",
            f"{jac['max']:.2f} {pair}" if jac else "",
        )
    if overlap.row_count:
        console.print(overlap)
    run = config.run_dir
    for label, paths in data["places"].items():
        if paths:
            console.print(f"{label:9} " + "  ".join(os.path.relpath(run / p) for p in paths))
    console.print(f"inspect   paretohqd sql --schema   (run directory {os.path.relpath(run)})")
