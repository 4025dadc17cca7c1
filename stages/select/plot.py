"""``paretohqd plot selection``: see what the select stage picked.

One panel per pair of objectives (one panel for M=2): every scored point in normalised space,
the pool's points coloured by Pareto layer and the layers outside the pool in grey, each
preference ray drawn from the ideal point (1, …, 1) toward its W, and the selected points ringed
in their preference's colour. A last panel is the Jaccard heatmap of the shards: how much the
preferences' training data overlap. Large pools are thinned for drawing (never the selected
points), and the title says so.
"""

from __future__ import annotations

from dataclasses import dataclass
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
        objectives_of(ctx.path(layers)) or ctx.config.pareto_objectives,
        output or ctx.run_dir / "plots" / f"selection_{label}.png",
        seed=ctx.config.run.seed,
        max_layer=pool.get("max_layer"),
        overlap=ctx.path(overlap),
    )


def objectives_of(layers: Path) -> list[str]:
    """The objectives a layers table was built over, in order (its ``norm_<name>`` columns):
    what the plot draws, whatever the config names now (a config edited since the run, or one
    naming fewer objectives)."""
    import pyarrow.parquet as pq

    if not layers.exists():
        return []
    return [n.removeprefix("norm_") for n in pq.read_schema(layers).names if n.startswith("norm_")]


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

    pool, picked, weights = _read_selection(layers, selection)
    norm = np.asarray(pool["norm"].to_list(), dtype=float)
    m = norm.shape[1]
    if m < 2:
        raise DataError("plot: there is one objective; nothing to plot in 2-D")
    layer = pool["layer"].to_numpy()
    shown = _thinned(len(norm), seed)
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
    points = _Points(norm, layer, shown, outside, vmax, single=len(pairs) == 1)
    rings = _rings(picked, weights, prefs, pos, cmap)
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        sc = _draw_pair(ax, points, rings, i, j, objectives)
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


def _read_selection(layers: Path, selection: Path) -> tuple[Any, Any, Any]:
    """The pool (sample_id, layer, norm), the selection, and each preference's weights.

    The weights come from the selection's ``weights`` column (None when it has none: then no
    rays are drawn); a missing file is a DataError that says which stage to run.
    """
    import polars as pl

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
    return pool, picked, weights


def _thinned(n: int, seed: int) -> np.ndarray:
    """Indices of the pool points to draw: all of them, or a seeded sorted sample of
    ``MAX_POINTS`` (a scatter of millions of points is slow to draw and no easier to read)."""
    rng = np.random.default_rng(seed)
    shown = np.arange(n)
    if n > MAX_POINTS:
        shown = np.sort(rng.choice(n, MAX_POINTS, replace=False))
    return shown


@dataclass(frozen=True)
class _Points:
    """The pool as every pair panel draws it: normalised points and which of them to draw."""

    norm: np.ndarray
    layer: np.ndarray
    shown: np.ndarray  # drawn coloured by layer: inside the pool
    outside: np.ndarray  # drawn grey: deeper than the pool's last layer
    vmax: int  # deeper layers share the colour of this one
    single: bool  # one panel only: it carries the legend


@dataclass(frozen=True)
class _Ring:
    """One preference's selected points (indices into the pool), colour and weights."""

    pref_id: str
    idx: list[int]
    color: Any
    w: np.ndarray | None


def _rings(
    picked: Any, weights: Any, prefs: list[str], pos: dict[str, int], cmap: Any
) -> list[_Ring]:
    """Per preference, in ``prefs`` order: its selected rows' positions in the pool (rows not
    in the pool are skipped), its colour and its weight vector (None without weights)."""
    import polars as pl

    rings = []
    for n, pid in enumerate(prefs):
        ids = picked.filter(pl.col("pref_id") == pid)["sample_id"].to_list()
        idx = [pos[s] for s in ids if s in pos]
        w = None
        if weights is not None:
            w = np.asarray(weights.filter(pl.col("pref_id") == pid)["weights"][0])
        rings.append(_Ring(pid, idx, cmap(n % cmap.N), w))
    return rings


def _draw_pair(
    ax: Any, points: _Points, rings: list[_Ring], i: int, j: int, objectives: list[str]
) -> Any:
    """One panel, objective ``i`` against ``j``: the pool by layer, the rings and the rays.

    Returns the layer scatter, which the shared colour bar describes.
    """
    norm, layer = points.norm, points.layer
    ax.scatter(
        norm[points.outside, i],
        norm[points.outside, j],
        s=3,
        color="0.8",
        alpha=0.5,
        linewidths=0,
        label="outside the pool" if points.single and len(points.outside) else None,
    )
    sc = ax.scatter(
        norm[points.shown, i],
        norm[points.shown, j],
        c=np.minimum(layer[points.shown], points.vmax),
        s=4,
        cmap="viridis",
        vmin=1,
        vmax=points.vmax,
        alpha=0.5,
        linewidths=0,
    )
    for ring in rings:
        ax.scatter(
            norm[ring.idx, i],
            norm[ring.idx, j],
            s=16,
            facecolors="none",
            edgecolors=[ring.color],
            linewidths=0.9,
            label=ring.pref_id if points.single else None,
        )
        if ring.w is not None:
            ax.plot([1, ring.w[i]], [1, ring.w[j]], color=ring.color, lw=1, alpha=0.9)
    ax.set_xlabel(f"{objectives[i]} (normalised)")
    ax.set_ylabel(f"{objectives[j]} (normalised)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    return sc


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
