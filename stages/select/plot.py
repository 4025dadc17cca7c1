"""``paretohqd plot selection``: see what the select stage picked.

One panel per pair of objectives (one panel for M=2): every pooled point in normalised space,
coloured by Pareto layer, each preference ray drawn from the ideal point (1, …, 1) toward its W,
and the selected points ringed in their preference's colour. Large pools are thinned for
drawing (never the selected points), and the title says so.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from paretohqd.errors import DataError

MAX_POINTS = 200_000


def plot_selection(
    layers: Path, selection: Path, objectives: list[str], output: Path, *, seed: int = 0
) -> Path:
    """Draw the selection PNG to ``output`` and return it."""
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
    cols = min(len(pairs), 3)
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 5 * rows), squeeze=False)
    prefs = sorted(set(picked["pref_id"].to_list()))
    cmap = plt.get_cmap("tab20" if len(prefs) > 10 else "tab10")
    vmax = int(min(layer.max(), 10))
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
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
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    fig.colorbar(sc, ax=axes.ravel().tolist(), label=f"Pareto layer (≥{vmax} merged)", shrink=0.8)
    thinned = f", {len(shown)} of {len(norm)} pool points drawn" if len(shown) < len(norm) else ""
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
