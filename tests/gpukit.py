"""Shared by the GPU checks (``tests/gpu/``): how far two sets of greedy completions agree."""

from __future__ import annotations

from collections.abc import Sequence


def agreement(a: Sequence[str | None], b: Sequence[str | None]) -> dict[str, float]:
    """Share of identical completions, and the mean share of the longer completion that the
    two match from the start (how far the two greedy paths go together)."""
    same = prefix = 0.0
    for x, y in zip(a, b, strict=True):
        x, y = x or "", y or ""
        same += x == y
        split = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), None)
        common = min(len(x), len(y)) if split is None else split
        prefix += common / max(len(x), len(y), 1)
    return {"identical": same / len(a), "mean_prefix": prefix / len(a)}
