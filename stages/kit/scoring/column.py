"""A scorer that reads an existing numeric column (carried through by the ingest readers).

``value = scale * column + offset``, so a column where lower is better can be flipped with
``scale = -1``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from paretohqd.stages.kit.scoring.scorers import ScorerError


class ColumnOptions(BaseModel):
    """Options of the ``column`` kind."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="the numeric column of the samples to use")
    scale: float = Field(1.0, description="multiply by this (e.g. -1 when lower is better)")
    offset: float = Field(0.0, description="then add this")


class ColumnScorer:
    """``scale * extras[column] + offset``."""

    def __init__(self, options: ColumnOptions, *, name: str) -> None:
        self.options = options
        self.name = name
        self.last_stats: dict[str, int] = {}

    def identity(self) -> dict[str, Any]:
        """Kind and options (the column's values are part of the samples' fingerprint)."""
        return {"kind": "column", "options": self.options.model_dump(mode="json")}

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The column, scaled and offset; a missing column names the available ones."""
        extras = extras or {}
        col = self.options.column
        if col not in extras:
            available = ", ".join(sorted(extras)) or "none"
            raise ScorerError(
                f"objective {self.name!r}: column {col!r} is not in the samples "
                f"(numeric columns available: {available}); fix options.column"
            )
        values = np.asarray(extras[col], dtype=np.float64)
        return self.options.scale * values + self.options.offset


def build(
    *, name: str, model: str | None, options: ColumnOptions, base_dir: Path, hasher: Any = None
) -> ColumnScorer:
    """Factory for the registry: column scorers take no model."""
    if model is not None:
        raise ScorerError(
            f"objective {name!r}: the column scorer takes no model (got {model!r}); remove it"
        )
    return ColumnScorer(options, name=name)
