"""The comparison report: one self-contained HTML file and the front plot it embeds.

The report is meant to be mailed, attached to an issue or opened from a run directory years
later, so it carries everything itself: images are embedded as base64 data URIs, the CSS is
inline, there is no JavaScript and no timestamp (re-rendering the same numbers gives the same
bytes). Every text that comes from the run (method names, preference ids, objective names,
link labels) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import numpy as np

if TYPE_CHECKING:
    import polars as pl

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:72em;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.t,th.t{text-align:left}
.note{color:#555;font-size:.9em}figure{margin:1em 0}img{max-width:100%;height:auto}
.warn{color:#8a4b00;background:#fff6e5;border-left:3px solid #e0a000;padding:.3em .6em}
""".strip()


# --------------------------------------------------------------------------------------------
# formatting


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """A float with fixed decimals; '–' for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.1%}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, text_cols: int = 1) -> str:
    """An HTML table; cells are already escaped; the first ``text_cols`` columns align left."""

    def cls(i: int) -> str:
        return ' class="t"' if i < text_cols else ""

    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(header))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


# --------------------------------------------------------------------------------------------
# validation


def _check_summary(summary: pl.DataFrame, objectives: Sequence[str]) -> None:
    need = ["method", "pref_id", "n", "collapse_rate"]
    for name in objectives:
        need += [f"{name}_mean", f"{name}_lo", f"{name}_hi"]
    missing = [c for c in need if c not in summary.columns]
    if missing:
        raise ValueError(
            f"summary lacks column(s) {', '.join(map(repr, missing))}; build it with "
            "paretohqd.stages.evaluate.metrics.summarise() using the same objectives"
        )


def _bound_vector(
    normalisation: Mapping[str, Any], key: str, objectives: Sequence[str]
) -> list[Any]:
    """normalisation[key] as a list in objective order (a mapping by name or a sequence)."""
    if key not in normalisation:
        raise ValueError(
            f"normalisation has no {key!r} entry (it has {', '.join(map(repr, normalisation))});"
            " pass {'min': {...}, 'max': {...}, 'reference_point': 0.0}"
        )
    value = normalisation[key]
    if isinstance(value, Mapping):
        missing = [n for n in objectives if n not in value]
        if missing:
            raise ValueError(f"normalisation[{key!r}] has no value for objective(s) {missing}")
        return [value[n] for n in objectives]
    if np.ndim(value) == 0:
        return [value] * len(objectives)
    seq = list(value)
    if len(seq) != len(objectives):
        raise ValueError(
            f"normalisation[{key!r}] has {len(seq)} values for {len(objectives)} objectives"
        )
    return seq


def _png_bytes(name: str, path: Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image {name!r}: {path} does not exist (or is not a file)")
    data = path.read_bytes()
    if not data.startswith(_PNG_MAGIC):
        raise ValueError(f"image {name!r}: {path} is not a PNG file; the report embeds PNGs only")
    return data


def _href(name: str, target: str) -> str:
    """An escaped href: relative references (or http/https), never javascript:/data:/file:."""
    parts = urlsplit(target)
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise ValueError(
            f"link {name!r} has scheme {parts.scheme!r}; use a path relative to the report "
            "(or an http(s) URL)"
        )
    if not parts.scheme and (parts.netloc or target.startswith(("/", "\\"))):
        raise ValueError(
            f"link {name!r} is absolute ({target!r}); use a path relative to the report so the "
            "run directory can be moved"
        )
    if not parts.scheme:
        target = quote(target, safe="/#?&=%~.-_+")
    return _esc(target)


# --------------------------------------------------------------------------------------------
# the report


def render_report(
    summary: pl.DataFrame,
    methods: pl.DataFrame,
    *,
    objectives: Sequence[str],
    title: str,
    images: Mapping[str, Path],
    links: Mapping[str, str],
    normalisation: Mapping[str, Any],
    out: Path,
    curve_flags: Mapping[str, str] | None = None,
) -> Path:
    """Write the comparison report as one self-contained HTML file and return its path.

    Sections: per method, its start, the hypervolume and the preference-following with their
    bootstrap intervals, the number of preference models and responses and the pooled collapse
    rate; each method's training budget (steps, examples, tokens, learning rate and effective
    step, wall/CPU/scoring time), with budgets that differ by more than 2× flagged; the
    normalisation used for the hypervolume; per (method, preference model) the mean reward
    vector with its bootstrap CI, the collapse rate and win/tie/loss against the base model; the
    training curves with a final-step jump; the images; links to the shard cards.

    Parameters
    ----------
    summary
        The table of :func:`paretohqd.stages.evaluate.metrics.summarise`.
    methods
        One row per method: ``method``, ``hypervolume``, ``hv_lo``, ``hv_hi``,
        ``pref_following``, ``pf_lo``, ``pf_hi`` (:func:`~paretohqd.stages.evaluate.metrics.
        method_intervals`) and optionally the budget columns (``start``, ``steps``,
        ``examples``, ``tokens``, ``lr``, ``effective_step``, ``wall_s``, ``cpu_s``,
        ``scoring_s``, ``flag``, ...); missing columns show as blanks.
    objectives
        Objective names, in the order of the summary's columns.
    title
        Page title.
    images
        ``{caption: path to a PNG}``; embedded as base64 data URIs.
    links
        ``{label: href}`` with hrefs relative to ``out`` (or http(s) URLs).
    normalisation
        ``{"min": ..., "max": ..., "reference_point": ...}``; each a mapping by objective name,
        a sequence in objective order or a scalar. The reference point is in normalised space.
    out
        Where to write the HTML (atomically: a reader never sees a half-written report).
    curve_flags
        ``{"method · pref_id": what is wrong}``: adapters whose training loss jumps on the last
        step (:func:`~paretohqd.stages.kit.training.curves.final_jump`), listed as a warning.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from paretohqd.atomic import write_text
    from paretohqd.stages.evaluate.metrics import outside_bounds

    objectives = list(objectives)
    if not objectives:
        raise ValueError("render_report needs at least one objective")
    _check_summary(summary, objectives)
    lo = _bound_vector(normalisation, "min", objectives)
    hi = _bound_vector(normalisation, "max", objectives)
    ref = (
        _bound_vector(normalisation, "reference_point", objectives)
        if "reference_point" in normalisation
        else [0.0] * len(objectives)
    )
    embedded = {name: _png_bytes(name, path) for name, path in images.items()}
    hrefs = {name: _href(name, target) for name, target in links.items()}

    rows = summary.to_dicts()
    means = np.array([[r[f"{o}_mean"] for o in objectives] for r in rows], dtype=float)
    clipped = outside_bounds(means.reshape(len(rows), len(objectives)), lo, hi)

    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="note">Objectives (all maximised): {_esc(", ".join(objectives))}. '
        f"{len(rows)} models, {sum(int(r['n']) for r in rows)} scored responses.</p>",
        _methods_section(rows, methods.to_dicts(), clipped),
        _budgets_section(methods.to_dicts()),
        _curves_section(curve_flags or {}),
        _normalisation_section(objectives, lo, hi, ref),
        _models_section(rows, objectives, clipped),
    ]
    parts += _figures(embedded) + _links(hrefs)
    parts.append("</body></html>\n")
    out = Path(out)
    write_text(out, "\n".join(parts))
    return out


def _figures(embedded: Mapping[str, bytes]) -> list[str]:
    """The figures, embedded as data URIs (none: no section)."""
    if not embedded:
        return []
    parts = ["<h2>Figures</h2>"]
    for name, data in embedded.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        parts.append(
            f'<figure><img alt="{_esc(name)}" src="{uri}">'
            f"<figcaption>{_esc(name)}</figcaption></figure>"
        )
    return parts


def _links(hrefs: Mapping[str, str]) -> list[str]:
    """The shard cards' links, hrefs already escaped (none: no section)."""
    if not hrefs:
        return []
    items = [f'<li><a href="{h}">{_esc(name)}</a></li>' for name, h in hrefs.items()]
    return ["<h2>Shard cards</h2>\n<ul>", *items, "</ul>"]


def _curves_section(flags: Mapping[str, str]) -> str:
    """A warning per adapter whose loss jumped on its last step; nothing when none did."""
    if not flags:
        return ""
    items = "".join(f"<li>{_esc(name)}: {_esc(what)}</li>" for name, what in flags.items())
    return (
        "<h2>Training curves</h2>\n"
        f'<p class="warn">{len(flags)} adapter{"s" if len(flags) > 1 else ""} ended on a '
        "loss jump (ringed in the losses figure). A step's loss is one micro-batch's, and "
        "every adapter of a method draws the same batches (one sampler seed), so a hard batch "
        "at the last step shows in all their curves at once; it is noise, not divergence, but "
        "the saved adapter took its last update on that batch.</p>\n"
        f"<ul>{items}</ul>"
    )


#: How each start is named in the report.
STARTS = {"base": "base model", "sft": "shared SFT (sft_init)"}


def _interval(value: Any, lo: Any, hi: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if lo is None or hi is None:
        return _num(value, digits)
    return f"{_num(value, digits)} [{_num(lo, digits)}, {_num(hi, digits)}]"


def _methods_section(
    rows: Sequence[Mapping[str, Any]],
    methods: Sequence[Mapping[str, Any]],
    clipped: np.ndarray,
) -> str:
    order: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        order.setdefault(str(r["method"]), []).append(i)
    by_method = {str(m["method"]): m for m in methods}
    for method in by_method:
        order.setdefault(method, [])
    body = []
    for method, idx in order.items():
        m = by_method.get(method, {})
        n = sum(int(rows[i]["n"]) for i in idx)
        collapsed = sum(float(rows[i]["collapse_rate"]) * int(rows[i]["n"]) for i in idx)
        n_clipped = int(clipped[idx].sum()) if idx else 0
        body.append(
            [
                _esc(method),
                _esc(STARTS.get(str(m.get("start")), "–")),
                str(len(idx)),
                str(n),
                _interval(m.get("hypervolume"), m.get("hv_lo"), m.get("hv_hi")),
                _interval(m.get("pref_following"), m.get("pf_lo"), m.get("pf_hi"), 2),
                _pct(collapsed / n if n else None),
                str(n_clipped),
            ]
        )
    header = [
        "method",
        "start",
        "models",
        "responses",
        "hypervolume [95% CI]",
        "preference-following [95% CI]",
        "collapse rate",
        "clipped means",
    ]
    return (
        "<h2>Methods</h2>\n"
        "<p class=\"note\">Hypervolume of each method's preference models' mean reward vectors "
        "in the normalised space (below); the base model and the shared SFT start are one-point "
        "sets. Intervals: bootstrap over the held-out prompts, every model's mean recomputed on "
        "the same resample (basic intervals by default: resampling pushes a hypervolume up, "
        "and the basic interval subtracts that bias). Preference-following: Spearman's rank "
        "correlation between w_i and the models' mean on objective i, averaged over objectives "
        "(1 = more weight always buys more of that objective). ParetoHqD starts from the base "
        "model, as in its paper; MODPO, RACO and PAMA from the shared SFT model, as in theirs, "
        'unless their table says <code>init = "base"</code>. Collapse rate is pooled over all '
        "of a method's responses. Clipped means lie outside the normalisation range and were "
        "clipped to [0, 1] for the hypervolume.</p>\n" + _table(header, body, text_cols=2)
    )


def _budgets_section(methods: Sequence[Mapping[str, Any]]) -> str:
    trained = [m for m in methods if m.get("steps") is not None or m.get("wall_s") is not None]
    if not trained:
        return '<h2>Training budgets</h2>\n<p class="note">No budgets recorded.</p>'

    def count(value: Any) -> str:
        return "–" if value is None else f"{value:,.0f}"

    body = [
        [
            _esc(m["method"]),
            _esc(STARTS.get(str(m.get("start")), "–")),
            count(m.get("adapters")),
            count(m.get("steps")),
            count(m.get("examples")),
            count(m.get("tokens")),
            _num(m.get("lr"), 3),
            _esc(f"{m['lora_r']} / {m['lora_alpha']}") if m.get("lora_r") else "–",
            _num(m.get("effective_step"), 3),
            _num(m.get("wall_s"), 1),
            _num(m.get("cpu_s"), 1),
            _num(m.get("scoring_s"), 1),
            _esc(m.get("flag") or ""),
        ]
        for m in trained
    ]
    header = [
        "method",
        "start",
        "adapters",
        "optimiser steps",
        "examples",
        "tokens",
        "lr",
        "LoRA r / alpha",
        "effective step",
        "wall s",
        "CPU s",
        "scoring s",
        "budget differs > 2×",
    ]
    flagged = [m for m in trained if m.get("flag")]
    warning = (
        '<p class="warn">Budgets differ by more than 2×: '
        + "; ".join(f"{_esc(m['method'])}: {_esc(m['flag'])}" for m in flagged)
        + ". Compare hypervolumes with that in mind.</p>\n"
        if flagged
        else ""
    )
    return (
        "<h2>Training budgets</h2>\n"
        "<p class=\"note\">Summed over each method's adapters (ParetoHqD's final round includes "
        "round one, the regeneration and the round-two scoring). Examples are rows, pairs or "
        "rollouts seen; tokens are those in the training forward passes; effective step = lr × "
        "alpha / r. Scoring is the reward-model time the method needed beyond the shared "
        "dataset scoring (ParetoHqD's round two, PAMA's online rewards). The shared SFT start "
        "is listed once as sft_init and is not counted in the methods that start from "
        "it.</p>\n" + warning + _table(header, body, text_cols=2)
    )


def _normalisation_section(
    objectives: Sequence[str], lo: Sequence[Any], hi: Sequence[Any], ref: Sequence[Any]
) -> str:
    body = [
        [_esc(o), _num(a), _num(b), _num(r)]
        for o, a, b, r in zip(objectives, lo, hi, ref, strict=True)
    ]
    return (
        "<h2>Normalisation</h2>\n"
        '<p class="note">Each objective is mapped to (x − min) / (max − min) with these fixed '
        "bounds and clipped to [0, 1]; the hypervolume is measured from the reference point, "
        "given in that normalised space (0 is the nadir).</p>\n"
        + _table(["objective", "min", "max", "reference point"], body)
    )


def _models_section(
    rows: Sequence[Mapping[str, Any]], objectives: Sequence[str], clipped: np.ndarray
) -> str:
    has_wins = all(f"{o}_win" in r for o in objectives for r in rows) and bool(rows)
    header = ["method", "pref_id", "n", *(f"{_esc(o)} mean [CI]" for o in objectives)]
    header.append("collapse rate")
    if has_wins:
        header += [f"{_esc(o)} win / tie / loss" for o in objectives]
    body = []
    for i, r in enumerate(rows):
        mark = " †" if clipped[i] else ""
        cells = [_esc(r["method"]), _esc(r["pref_id"]) + mark, str(int(r["n"]))]
        cells += [
            f"{_num(r[f'{o}_mean'])} [{_num(r[f'{o}_lo'])}, {_num(r[f'{o}_hi'])}]"
            for o in objectives
        ]
        cells.append(_pct(r["collapse_rate"]))
        if has_wins:
            cells += [
                " / ".join(_pct(r[f"{o}_{k}"]) for k in ("win", "tie", "loss"))
                if r[f"{o}_win"] is not None
                else "–"
                for o in objectives
            ]
        body.append(cells)
    return (
        "<h2>Mean reward per preference model</h2>\n"
        '<p class="note">Mean over the held-out responses with a percentile-bootstrap CI; '
        "win / tie / loss against the base model's answer to the same prompt. "
        "† the mean lies outside the normalisation range.</p>\n" + _table(header, body, text_cols=2)
    )


# --------------------------------------------------------------------------------------------
# the front plot


def plot_fronts(
    summary: pl.DataFrame,
    objectives: Sequence[str],
    out: Path,
    *,
    rays: Sequence[tuple[str, Sequence[float]]] | None = None,
    lo: Any,
    hi: Any,
) -> Path:
    """Plot every method's preference-model mean vectors in normalised objective space (PNG).

    One marker and colour per method; for M >= 3 one panel per pair of objectives. Each
    preference ray, if given as ``(pref_id, weights)``, is drawn (dashed, grey) from the ideal
    point (1, …, 1) toward its weights ``w``, as in ``paretohqd plot selection``: a method that
    follows its preferences puts each model near its ray. Points are normalised with the same
    fixed ``lo``/``hi`` as the hypervolume but not clipped, so out-of-range means stay visible.
    Each panel is zoomed to the points (:func:`zoom`): models of a small run sit in a corner of
    the unit square, and a plot of the whole square showed mostly empty space.

    Parameters
    ----------
    summary
        The table of :func:`paretohqd.stages.evaluate.metrics.summarise`.
    objectives
        Objective names (at least two).
    out
        PNG path, written atomically.
    rays
        ``[(pref_id, weights)]`` with one weight per objective, or None.
    lo, hi
        Fixed per-objective bounds (scalars or length-M), ``hi > lo``.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paretohqd.atomic import atomic_path
    from paretohqd.stages.evaluate.metrics import normalise

    objectives = list(objectives)
    m = len(objectives)
    if m < 2:
        raise ValueError(f"plot_fronts needs at least two objectives; got {objectives}")
    cols = [f"{o}_mean" for o in objectives]
    missing = [c for c in ["method", *cols] if c not in summary.columns]
    if missing:
        raise ValueError(
            f"summary lacks column(s) {', '.join(map(repr, missing))}; build it with summarise()"
        )
    ray_list = [(str(p), np.asarray(w, dtype=float)) for p, w in (rays or [])]
    for pref_id, w in ray_list:
        if w.shape != (m,):
            raise ValueError(f"ray {pref_id!r} has {w.size} weights; need one per objective ({m})")
    points = normalise(summary.select(cols).to_numpy(), lo, hi)
    methods = list(dict.fromkeys(summary["method"].to_list()))
    method_col = np.asarray(summary["method"].to_list(), dtype=object)

    pairs = list(combinations(range(m), 2))
    ncols = min(len(pairs), 3)
    nrows = -(-len(pairs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.8 * ncols, 4.6 * nrows), squeeze=False)
    for ax, (i, j) in zip(axes.flat, pairs, strict=False):
        _panel(ax, points[:, [i, j]], method_col, methods, [(p, w[[i, j]]) for p, w in ray_list])
        ax.set_xlabel(f"{objectives[i]} (normalised)")
        ax.set_ylabel(f"{objectives[j]} (normalised)")
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    fig.suptitle(
        "mean reward vector per preference model\n(normalised; ideal = 1; zoomed to the data)",
        fontsize=10,
    )
    fig.tight_layout()
    # Beside the panels, not over them (a zoomed panel has points in every corner), and after
    # the layout so the panels keep their size; the saved image widens to hold it.
    axes[0, -1].legend(
        *axes[0, 0].get_legend_handles_labels(),
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        title="method",
        title_fontsize=7,
    )
    with atomic_path(Path(out)) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")
    plt.close(fig)
    return Path(out)


#: The margin around the points of a zoomed panel, as a share of the panel's width.
ZOOM_MARGIN = 0.08
#: The narrowest zoomed panel (normalised units): a single point, or points in a line.
ZOOM_MIN_WIDTH = 0.1


def zoom(x: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """Axis limits that hold every (finite) point with a margin, equally wide on both axes so
    the panel keeps its equal aspect (distances to the rays are not distorted); the whole unit
    square when there are no points."""
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return (-0.05, 1.05), (-0.05, 1.05)
    x, y = x[finite], y[finite]
    width = max(float(np.ptp(x)), float(np.ptp(y)), ZOOM_MIN_WIDTH * (1 - 2 * ZOOM_MARGIN))
    half = width / (1 - 2 * ZOOM_MARGIN) / 2
    cx, cy = (float(x.min()) + float(x.max())) / 2, (float(y.min()) + float(y.max())) / 2
    return (cx - half, cx + half), (cy - half, cy + half)


def ray_label_at(
    w: tuple[float, float], xlim: tuple[float, float], ylim: tuple[float, float]
) -> tuple[float, float] | None:
    """Where a ray's label goes in a zoomed panel: the last point of the segment from the ideal
    point (1, 1) to ``w`` inside the panel (its end ``w`` when that is visible); None when the
    ray misses the panel."""
    start = np.array([1.0, 1.0])
    step = np.asarray(w, dtype=float) - start
    t0, t1 = 0.0, 1.0
    for axis, (lo, hi) in enumerate((xlim, ylim)):
        if step[axis] == 0:
            if not lo <= start[axis] <= hi:
                return None
            continue
        a, b = (lo - start[axis]) / step[axis], (hi - start[axis]) / step[axis]
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
    if t0 > t1:
        return None
    end = start + t1 * step
    return float(end[0]), float(end[1])


def _panel(
    ax: Any,
    points: np.ndarray,
    method_col: np.ndarray,
    methods: Sequence[str],
    rays: Sequence[tuple[str, np.ndarray]],
) -> None:
    """One pair of objectives: the rays (dashed, labelled where they leave the panel) and each
    method's points, zoomed to the points (:func:`zoom`)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    xlim, ylim = zoom(points[:, 0], points[:, 1])
    for pref_id, w in rays:
        ax.plot([1, w[0]], [1, w[1]], color="0.6", lw=0.8, ls="--", zorder=1)
        end = ray_label_at((w[0], w[1]), xlim, ylim)
        if end is not None:  # aligned so the label reads into the panel
            ha = "left" if end[0] < sum(xlim) / 2 else "right"
            va = "bottom" if end[1] < sum(ylim) / 2 else "top"
            ax.annotate(pref_id, end, fontsize=6, color="0.45", ha=ha, va=va)
    for k, method in enumerate(methods):
        sel = method_col == method
        ax.scatter(
            points[sel, 0],
            points[sel, 1],
            marker=_MARKERS[k % len(_MARKERS)],
            color=cmap(k % cmap.N),
            s=36,
            label=method,
            zorder=3,
            edgecolors="black",
            linewidths=0.4,
        )
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
