"""Cheap, model-free scorers over the response text.

Tokens are whitespace-separated words (``response.split()``) unless ``tokenizer`` names a
tokenizer directory, in which case they are that tokenizer's ids (no special tokens). Higher is
always better for the objective as named:

- ``conciseness``: ``-|n_tokens - target| / target`` (0 at exactly ``target`` tokens, -1 for an
  empty response, unbounded below for long ones). ``target`` is required.
- ``verbosity``: ``n_tokens``.
- ``repetition``: ``1 - repeated / total`` over the response's token n-grams (``n`` default 3),
  where ``total`` is the number of n-gram occurrences (``n_tokens - n + 1``) and ``repeated`` the
  occurrences that repeat an earlier one (``total - distinct``), i.e. ``distinct / total``. An
  empty response scores 0; a non-empty response shorter than ``n`` tokens has no n-gram to
  repeat and scores 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from paretohqd.stages.kit.scoring.scorers import ScorerError, content_hash, resolve_path


class HeuristicOptions(BaseModel):
    """Options of the ``heuristic`` kind."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["conciseness", "verbosity", "repetition"] = Field(
        description="which heuristic (see the module docstring for formulas)"
    )
    target: float | None = Field(None, gt=0, description="conciseness: the ideal length in tokens")
    n: int = Field(3, ge=1, description="repetition: n-gram size")
    tokenizer: str | None = Field(
        None, description="tokenizer directory; default: whitespace words"
    )

    @model_validator(mode="after")
    def _target_for_conciseness(self) -> HeuristicOptions:
        if self.metric == "conciseness" and self.target is None:
            raise ValueError("metric 'conciseness' needs option 'target' (tokens, > 0)")
        return self


def conciseness(n_tokens: np.ndarray, *, target: float) -> np.ndarray:
    """``-|n_tokens - target| / target``."""
    return -np.abs(np.asarray(n_tokens, dtype=np.float64) - target) / target


def repetition(tokens: list[Any], *, n: int) -> float:
    """``distinct / total`` n-grams of ``tokens``; 0 when empty, 1 when shorter than ``n``."""
    if not tokens:
        return 0.0
    total = len(tokens) - n + 1
    if total <= 0:
        return 1.0
    distinct = len({tuple(tokens[i : i + n]) for i in range(total)})
    return 1.0 - (total - distinct) / total


class HeuristicScorer:
    """Scores responses by length or repetition; see the module docstring for the formulas."""

    #: Scores depend on the prompt and response alone: cached by text.
    text_only = True

    def __init__(
        self,
        options: HeuristicOptions,
        *,
        name: str = "heuristic",
        tokenizer_dir: Path | None = None,
        hasher: Any = None,
    ) -> None:
        self.hasher = hasher
        self.options = options
        self.tokenizer_dir = tokenizer_dir
        self._tokenizer: Any = None
        if tokenizer_dir is not None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
            except (OSError, ValueError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise ScorerError(
                    f"objective {name!r}: cannot load tokenizer from {tokenizer_dir}: {msg}"
                ) from None
        # Lower bounds, used by the empty_response="min" policy.
        self.floor: float | None = {"verbosity": 0.0, "repetition": 0.0}.get(options.metric)
        self.last_stats: dict[str, int] = {}

    def identity(self) -> dict[str, Any]:
        """Kind, options and the tokenizer directory's content hash (if any)."""
        opts = self.options.model_dump(mode="json")
        ident: dict[str, Any] = {"kind": "heuristic", "options": opts}
        if self.tokenizer_dir is not None:
            ident["tokenizer"] = {
                "path": str(self.tokenizer_dir),
                "sha256": content_hash(self.tokenizer_dir, self.hasher),
            }
        return ident

    def _tokens(self, responses: list[str]) -> list[list[Any]]:
        if self._tokenizer is None:
            return [r.split() for r in responses]
        ids = self._tokenizer(responses, add_special_tokens=False, verbose=False)["input_ids"]
        return [list(x) for x in ids]

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """One heuristic value per response (prompts are ignored)."""
        tokens = self._tokens(list(responses))
        opts = self.options
        if opts.metric == "repetition":
            return np.array([repetition(t, n=opts.n) for t in tokens], dtype=np.float64)
        lengths = np.array([len(t) for t in tokens], dtype=np.float64)
        if opts.metric == "verbosity":
            return lengths
        assert opts.target is not None
        return conciseness(lengths, target=opts.target)


def build(
    *, name: str, model: str | None, options: HeuristicOptions, base_dir: Path, hasher: Any = None
) -> HeuristicScorer:
    """Factory for the registry: heuristics take no model."""
    if model is not None:
        raise ScorerError(
            f"objective {name!r}: the heuristic scorer takes no model (got {model!r}); "
            "remove 'model' or set options.tokenizer for a tokenizer directory"
        )
    tok = None
    if options.tokenizer is not None:
        tok = resolve_path(options.tokenizer, base_dir)
        if not tok.is_dir():
            raise ScorerError(
                f"objective {name!r}: tokenizer directory {tok} does not exist; fix "
                "options.tokenizer (relative paths are relative to the config)"
            )
    return HeuristicScorer(options, name=name, tokenizer_dir=tok, hasher=hasher)
