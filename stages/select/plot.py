"""``paretohqd plot selection``: see what the select stage picked.

One panel per pair of objectives (one panel for M=2): every scored point in normalised space,
the pool's points coloured by Pareto layer and the layers outside the pool in grey, each
preference ray drawn from the ideal point (1, …, 1) toward its W, and the selected points ringed
in their preference's colour. A last panel is the Jaccard heatmap of the shards: how much the
preferences' training data overlap. Large pools are thinned for drawing (never the selected
points), and the title says so.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from paretohqd.errors import DataError

MAX_POINTS = 200_000


def plot_stage_selection(
    ctx: Any,
    *,
    layers: str,
    selection: str,
    overlap: str,
    label: str,
    output: Path | None = None,
) -> Path:
    """The ``plot-selection`` tool: draw what select stage ``ctx.stage`` picked, with its
    pool's last layer from the manifest, to ``output`` (default ``plots/selection_<label>.png``
    in the run)."""
    from paretohqd.manifest import Manifest

    entry = Manifest(ctx.run_dir).get(ctx.stage.name) or {}
    pool = (entry.get("metadata") or {}).get("pool") or {}
    return plot_selection(
        ctx.path(layers),
        ctx.path(selection),
        ctx.config.pareto_objectives,
        output or ctx.run_dir / "plots" / f"selection_{label}.png",
        seed=ctx.config.run.seed,
        max_layer=pool.get("max_layer"),
        overlap=ctx.path(overlap),
    )


def plot_selection(
    layers: Path,
    selection: Path,
    objectives: list[str],
    output: Path,
    *,
    seed: int = 0,
    max_layer: int | None = None,
    overlap: Path | None = None,
) -> Path:
    """Draw the selection PNG to ``output`` and return it.

    ``max_layer`` is the pool's last layer (deeper layers are drawn grey; ``None``: every
    layer is in the pool); ``overlap`` is the stage's ``shard_overlap.parquet`` (the heatmap
    panel is drawn when it exists).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    from paretohqd.atomic import atomic_path

    for path in (layers, selection):
        if not path.exists():
            raise DataError(f"plot: {path} does not exist; run the pipeline through `select`")
    pool = pl.read_parquet(layers, columns=["sample_id", "layer", "norm"])
    picked = pl.read_parquet(selection)
    weights = (
        picked.group_by("pref_id").agg(pl.col("weights").first()).sort("pref_id")
        if ("weights" in picked.columns)
        else None
    )
    norm = np.asarray(pool["norm"].to_list(), dtype=float)
    m = norm.shape[1]
    if m < 2:
        raise DataError("plot: there is one objective; nothing to plot in 2-D")
    layer = pool["layer"].to_numpy()
    rng = np.random.default_rng(seed)
    shown = np.arange(len(norm))
    if len(norm) > MAX_POINTS:
        shown = np.sort(rng.choice(len(norm), MAX_POINTS, replace=False))
    pos = {sid: i for i, sid in enumerate(pool["sample_id"].to_list())}
    pairs = list(combinations(range(m), 2))
    heat = overlap is not None and overlap.exists()
    panels = len(pairs) + int(heat)
    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 5 * rows), squeeze=False)
    prefs = sorted(set(picked["pref_id"].to_list()))
    cmap = plt.get_cmap("tab20" if len(prefs) > 10 else "tab10")
    deepest = int(layer.max()) if max_layer is None else int(max_layer)
    vmax = int(max(min(deepest, 10), 1))
    outside = shown[layer[shown] > deepest]
    shown = shown[layer[shown] <= deepest]
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        ax.scatter(
            norm[outside, i],
            norm[outside, j],
            s=3,
            color="0.8",
            alpha=0.5,
            linewidths=0,
            label="outside the pool" if len(pairs) == 1 and len(outside) else None,
        )
        sc = ax.scatter(
            norm[shown, i],
            norm[shown, j],
            c=np.minimum(layer[shown], vmax),
            s=4,
            cmap="viridis",
            vmin=1,
            vmax=vmax,
            alpha=0.5,
            linewidths=0,
        )
        for n, pid in enumerate(prefs):
            ids = picked.filter(pl.col("pref_id") == pid)["sample_id"].to_list()
            idx = [pos[s] for s in ids if s in pos]
            ax.scatter(
                norm[idx, i],
                norm[idx, j],
                s=16,
                facecolors="none",
                edgecolors=[cmap(n % cmap.N)],
                linewidths=0.9,
                label=pid if len(pairs) == 1 else None,
            )
            if weights is not None:
                w = np.asarray(weights.filter(pl.col("pref_id") == pid)["weights"][0])
                ax.plot([1, w[i]], [1, w[j]], color=cmap(n % cmap.N), lw=1, alpha=0.9)
        ax.set_xlabel(f"{objectives[i]} (normalised)")
        ax.set_ylabel(f"{objectives[j]} (normalised)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
    if heat:
        assert overlap is not None
        _heatmap(fig, axes.flat[len(pairs)], pl.read_parquet(overlap), prefs)
    for ax in list(axes.flat)[panels:]:
        ax.axis("off")
    fig.colorbar(
        sc,
        ax=axes.ravel()[: len(pairs)].tolist(),
        label=f"Pareto layer of the pool (1–{deepest}; ≥{vmax} merged)",
        shrink=0.8,
    )
    drawn = len(shown) + len(outside)
    thinned = f", {drawn} of {len(norm)} points drawn" if drawn < len(norm) else ""
    if len(pairs) == 1:
        axes[0, 0].legend(
            fontsize=6, loc="lower left", ncols=2, title="selected for", title_fontsize=7
        )
    fig.suptitle(
        f"{len(prefs)} preferences × {picked.height // max(len(prefs), 1)} selected{thinned}\n"
        "rays from the ideal point (1, …, 1) toward w",
        fontsize=10,
    )
    with atomic_path(output) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return output


def _heatmap(fig: Any, ax: Any, pairs: Any, prefs: list[str]) -> None:
    """The shards' pairwise Jaccard index as a symmetric matrix (1 on the diagonal)."""
    pos = {p: i for i, p in enumerate(prefs)}
    mat = np.eye(len(prefs))
    for a, b, jac in pairs.select("pref_a", "pref_b", "jaccard").iter_rows():
        if a in pos and b in pos:
            mat[pos[a], pos[b]] = mat[pos[b], pos[a]] = jac
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="magma_r")
    labels = [p.removeprefix("pref-") for p in prefs]
    step = max(1, len(prefs) // 12)
    ax.set_xticks(range(0, len(prefs), step), labels[::step], rotation=90, fontsize=6)
    ax.set_yticks(range(0, len(prefs), step), labels[::step], fontsize=6)
    off = mat[~np.eye(len(prefs), dtype=bool)]
    mean = float(off.mean()) if off.size else 0.0
    ax.set_title(f"shard overlap (Jaccard), off-diagonal mean {mean:.2f}", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.7)
