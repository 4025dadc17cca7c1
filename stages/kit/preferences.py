"""Preference grids: the user preferences ω the pipeline trains one model for.

A preference is a point of the probability simplex over the objectives. Its ``pref_id`` is
derived from the weights in percent (``pref-030-070``), so it is stable across runs, readable in
SQL and file names, and adding a preference never renames the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from paretohqd.errors import ConfigError

#: RiC's 13-point evaluation grid for three objectives (docs/algorithms.md §5).
RIC13: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 1.0),
    (0.0, 1.0, 0.0),
    (0.1, 0.1, 0.8),
    (0.1, 0.8, 0.1),
    (0.2, 0.2, 0.6),
    (0.2, 0.4, 0.4),
    (0.2, 0.6, 0.2),
    (1 / 3, 1 / 3, 1 / 3),
    (0.4, 0.4, 0.2),
    (0.4, 0.2, 0.4),
    (0.6, 0.2, 0.2),
    (0.8, 0.1, 0.1),
    (1.0, 0.0, 0.0),
)


@dataclass(frozen=True)
class Preference:
    """One preference vector with its stable id."""

    pref_id: str
    weights: tuple[float, ...]

    def as_dict(self, objectives: Sequence[str]) -> dict[str, float]:
        """Weights keyed by objective name (for cards and reports)."""
        return dict(zip(objectives, self.weights, strict=True))


def pref_id(weights: Sequence[float]) -> str:
    """``pref-`` plus each weight in whole percent, zero-padded: ``(0.3, 0.7)`` → ``pref-030-070``.

    Weights that differ by less than half a percent would collide; :func:`validate_grid`
    rejects such grids rather than silently merging preferences.
    """
    return "pref-" + "-".join(f"{round(w * 100):03d}" for w in weights)


def simplex_lattice(m: int, step: float) -> list[tuple[float, ...]]:
    """Every point of the simplex whose coordinates are multiples of ``step``.

    ``1/step`` must be an integer (0.1 → 11 points for M=2, 66 for M=3). Points are ordered so
    the first objective's weight decreases, which puts the one-hot preferences at the ends.
    """
    parts = round(1 / step)
    if parts < 1 or not math.isclose(parts * step, 1.0, abs_tol=1e-9):
        raise ConfigError(
            f"select.step = {step}: 1/step must be a whole number (e.g. 0.1, 0.25, 0.5)"
        )
    points = []
    # Stars and bars: choose m-1 bar positions among parts + m - 1 slots.
    for bars in combinations(range(parts + m - 1), m - 1):
        counts, prev = [], -1
        for b in (*bars, parts + m - 1):
            counts.append(b - prev - 1)
            prev = b
        points.append(tuple(c / parts for c in counts))
    return sorted(points, key=lambda p: tuple(-x for x in p))


def validate_grid(vectors: Sequence[Sequence[float]], m: int) -> list[Preference]:
    """Check every vector (length M, non-negative, sums to 1) and give each its pref_id."""
    prefs: list[Preference] = []
    seen: dict[str, int] = {}
    for i, vec in enumerate(vectors):
        w = tuple(float(x) for x in vec)
        where = f"select.grid[{i}] = {list(vec)}"
        if len(w) != m:
            raise ConfigError(f"{where}: has {len(w)} weights but there are {m} objectives")
        if any(not math.isfinite(x) or x < 0 for x in w):
            raise ConfigError(f"{where}: weights must be finite and non-negative")
        if abs(sum(w) - 1) > 1e-3:
            raise ConfigError(f"{where}: weights sum to {sum(w):.6g}; they must sum to 1")
        total = sum(w)
        w = tuple(x / total for x in w)
        pid = pref_id(w)
        if pid in seen:
            raise ConfigError(
                f"{where}: same pref_id {pid} as select.grid[{seen[pid]}]; preferences must "
                "differ by at least 1% in some weight"
            )
        seen[pid] = i
        prefs.append(Preference(pid, w))
    if not prefs:
        raise ConfigError("select.grid is empty; give at least one preference vector")
    return prefs


def build_grid(
    grid: str | Sequence[Sequence[float]], m: int, *, step: float = 0.1
) -> list[Preference]:
    """The preferences for ``select.grid``: ``"simplex"``, ``"ric13"`` or explicit vectors."""
    if m < 1:
        raise ConfigError("select needs at least one [[objectives]] entry")
    if grid == "simplex":
        return validate_grid(simplex_lattice(m, step), m)
    if grid == "ric13":
        if m != 3:
            raise ConfigError(f"select.grid = 'ric13' is RiC's 3-objective grid; there are {m}")
        return validate_grid(RIC13, m)
    if isinstance(grid, str):
        raise ConfigError(f"select.grid = {grid!r}: use 'simplex', 'ric13' or a list of vectors")
    return validate_grid(grid, m)


def adjacent_pairs(prefs: Sequence[Preference]) -> list[tuple[str, str]]:
    """Pairs of neighbouring preferences: each preference with its nearest others in weight space.

    On a simplex lattice these are the lattice neighbours (for M=2, consecutive grid points);
    on any other grid, every preference is paired with the preference(s) at the smallest
    Euclidean distance from it. Pairs are unordered (``pref_a < pref_b``) and unique.
    """
    pairs: set[tuple[str, str]] = set()
    for a in prefs:
        dists = [(math.dist(a.weights, b.weights), b.pref_id) for b in prefs if b is not a]
        if not dists:
            continue
        nearest = min(d for d, _ in dists)
        for d, pid in dists:
            if d <= nearest * (1 + 1e-9):
                pairs.add((min(a.pref_id, pid), max(a.pref_id, pid)))
    return sorted(pairs)


def one_hot(pref: Preference) -> bool:
    """Whether all the weight is on one objective (an end of the front)."""
    return max(pref.weights) >= 1.0 - 1e-9
