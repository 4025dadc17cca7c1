"""``paretohqd summary``: what a run did, in one screen.

Stages with their state, rows and timings from the manifest; the per-preference mean raw
scores of the latest selection round (what each preference's adapter was trained toward); how
much the shards of each selection overlap; and where the shards, adapters and plots are.
"""

from __future__ import annotations

import os
from typing import Any

from paretohqd.config import Config


def _round(art: Any) -> Any:
    return art.tags.get("round", 0)


def _order(art: Any) -> Any:
    return art.tags.get("order", 0)


def print_summary(config: Config, console: Any) -> None:
    """Print the summary tables for the run of ``config``."""
    from rich.table import Table

    from paretohqd.inspect import Session
    from paretohqd.manifest import Manifest
    from paretohqd.registry import artifacts_with_role
    from paretohqd.runner import Runner

    manifest = Manifest(config.run_dir)
    runner = Runner(config)
    stages = Table(title=f"run {config.run.name}: stages")
    for col in ("stage", "state", "rows", "seconds", "cpu s"):
        stages.add_column(col, justify="right" if col in ("rows", "seconds", "cpu s") else "left")
    total = 0.0
    for item in runner.plan(manifest):
        entry = manifest.get(item.stage.name) or {}
        rows = sum(o.get("rows", 0) for o in entry.get("outputs", {}).values())
        total += entry.get("seconds", 0.0)
        stages.add_row(
            item.stage.name,
            item.state,
            f"{rows:,}" if entry else "",
            f"{entry['seconds']:.1f}" if entry else "",
            f"{entry.get('cpu_seconds', 0):.1f}" if entry else "",
        )
    stages.add_row("total", "", "", f"{total:.1f}", "")
    console.print(stages)

    session = Session.open(config)
    objectives = config.pareto_objectives
    # The shards of the latest selection round (the comparison arms aside): what the final
    # adapters were trained toward.
    shards = artifacts_with_role(runner.stages, "shards")
    latest = sorted(
        (a for a in shards if "arm" not in a.tags and a.name in session.views),
        key=lambda a: a.tags.get("round", 0),
    )
    view = latest[-1].name if latest else None
    if latest and objectives:
        from dataclasses import replace

        from paretohqd.catalog import connect, run_sql

        con = connect(config.run_dir, [replace(latest[-1], name="shards")])
        try:
            rows = run_sql(con, "shard_means.sql").fetchall()
        finally:
            con.close()
        means: dict[str, dict[str | int, Any]] = {}
        for pref, position, n, mean, distance in rows:
            entry = means.setdefault(pref, {"rows": n, "distance": distance})
            entry[int(position)] = mean
        table = Table(title=f"mean raw scores of the selected samples ({view})")
        for col in ("pref_id", "rows", *objectives, "distance"):
            table.add_column(col, justify="left" if col == "pref_id" else "right")
        for pref, entry in means.items():
            cells = [f"{entry.get(i + 1, float('nan')):.3f}" for i in range(len(objectives))]
            table.add_row(pref, str(entry["rows"]), *cells, f"{entry['distance']:.3f}")
        console.print(table)
    overlap = Table(title="shard overlap: how much the preferences' data differ (Jaccard)")
    for col in ("stage", "distinct rows", "one-hot", "adjacent", "most similar pair"):
        overlap.add_column(col, justify="right" if col in ("one-hot", "adjacent") else "left")
    for name, entry in manifest.stages.items():
        ov = (entry.get("metadata") or {}).get("overlap")
        if not ov:
            continue
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
    places = [
        (role, [a.path for a in sorted(artifacts_with_role(runner.stages, role), key=key)])
        for role, key in (("shards", _round), ("adapters", _order))
    ]
    for label, paths in [*places, ("plots", ["plots"])]:
        found = [p for p in paths if (run / p).exists()]
        if found:
            console.print(f"{label:9} " + "  ".join(os.path.relpath(run / p) for p in found))
    console.print(f"inspect   paretohqd sql --schema   (run directory {os.path.relpath(run)})")
