"""Reward scorers: the protocol, the registry of kinds, and the one validating wrapper.

Public API
----------
``build_scorer(kind, *, name, model=None, options=None, base_dir=None, empty_response="score")
-> CheckedScorer``
    ``kind`` is ``hf-classifier``, ``embedding-head``, ``heuristic``, ``column`` or a plug-in
    ``module:callable`` (called as ``callable(name, model, options)``, returning a
    :class:`Scorer`). Options are validated by the kind's pydantic model (``extra="forbid"``);
    a bad kind, option or model raises :class:`ScorerError` with a one-line message that names
    the objective.
``CheckedScorer``
    ``.name``; ``.identity() -> dict`` (JSON-able: kind, model path + content hash or hub id +
    revision, options, empty-response policy; the scorer's cache/fingerprint identity);
    ``.identity_hash() -> str``; ``.score(prompts, responses, extras=None) -> np.ndarray``
    (float64, one per row, input order); ``.last_stats -> dict[str, int]`` (counters of the
    last ``score`` call: ``rows``, ``empty_responses``, ``truncated``, ...).
``ScorerError(ValueError)``
    Bad kind / options / model / inputs.
``ScoreValueError(ScorerError)``
    A NaN or infinite score; ``.row`` is the index into the ``score`` call's rows and
    ``.value`` the offending value, so the caller can map it to a sample id.
``Scorer``
    The protocol every kind (and every plug-in) implements: ``identity()`` and ``score()``;
    optionally ``last_stats`` (counters merged into the wrapper's, e.g. ``truncated``) and
    ``floor`` (a known lower bound, used by ``empty_response="min"``).
``KINDS``
    The built-in kind names.

Checks live here, once, and not in each scorer: length agreement of inputs, the output's shape,
NaN/inf (:class:`ScoreValueError` with the row), and the empty-response policy.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ValidationError

from paretohqd.hashing import sha256_json

EmptyPolicy = Literal["score", "min", "error"]
EMPTY_POLICIES: tuple[str, ...] = ("score", "min", "error")


class ScorerError(ValueError):
    """A scorer cannot be built or run: unknown kind, bad option, missing model, bad input."""


class ScoreValueError(ScorerError):
    """A scorer produced a NaN or infinite value.

    Attributes
    ----------
    row
        Index of the offending row within the ``score`` call's inputs.
    value
        The offending value (``nan``, ``inf`` or ``-inf``).
    """

    def __init__(self, message: str, *, row: int, value: float) -> None:
        super().__init__(message)
        self.row = row
        self.value = value


@runtime_checkable
class Scorer(Protocol):
    """What every scorer kind (and every ``module:callable`` plug-in) provides."""

    def identity(self) -> dict[str, Any]:
        """JSON-able description that changes whenever the scores could change."""
        ...

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        extras: Mapping[str, np.ndarray] | None,
    ) -> np.ndarray:
        """One float per row, higher is better, in input order."""
        ...


@dataclass(frozen=True)
class _Kind:
    """A built-in kind: its options model and the factory that builds it (lazily imported)."""

    module: str
    options: str
    factory: str


_KINDS: dict[str, _Kind] = {
    "hf-classifier": _Kind(
        "paretohqd.stages.kit.scoring.hf_classifier", "HFClassifierOptions", "build"
    ),
    "embedding-head": _Kind(
        "paretohqd.stages.kit.scoring.embedding", "EmbeddingHeadOptions", "build"
    ),
    "heuristic": _Kind("paretohqd.stages.kit.scoring.heuristic", "HeuristicOptions", "build"),
    "column": _Kind("paretohqd.stages.kit.scoring.column", "ColumnOptions", "build"),
}
KINDS: tuple[str, ...] = tuple(_KINDS)


def parse_options(
    model_cls: type[BaseModel], options: Mapping[str, Any] | None, *, name: str
) -> Any:
    """Validate ``options`` against a kind's pydantic model, with one-line errors.

    Parameters
    ----------
    model_cls
        The kind's options model (``extra="forbid"``).
    options
        The raw ``options`` table from the config.
    name
        The objective, named in the error.

    Returns
    -------
    An instance of ``model_cls``.

    Raises
    ------
    ScorerError
        ``objective 'x': unknown option 'batchsize' (accepted: batch_size, ...)`` or
        ``objective 'x': option 'batch_size': Input should be a valid integer (got 'a')``.
    """
    try:
        return model_cls.model_validate(dict(options or {}))
    except ValidationError as exc:
        accepted = ", ".join(model_cls.model_fields)
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "options"
        if err["type"] == "extra_forbidden":
            msg = f"objective {name!r}: unknown option {key!r} (accepted: {accepted})"
        elif err["type"] == "missing":
            msg = f"objective {name!r}: option {key!r} is required (accepted: {accepted})"
        else:
            why = err["msg"].removeprefix("Value error, ")
            msg = f"objective {name!r}: option {key!r}: {why} (got {err.get('input')!r})"
        raise ScorerError(msg) from None


#: Built-in kinds that load a model, so an objective of theirs must name one.
NEEDS_MODEL = ("hf-classifier", "embedding-head")


def check_scorer(kind: str, *, name: str, model: str | None, options: Mapping[str, Any]) -> None:
    """What is wrong with an objective's scorer from the config alone: an unknown kind, a
    plug-in name that cannot be one, an option the kind does not take or a bad value (a
    heuristic metric), a missing model. Nothing is loaded and no plug-in is imported."""
    if kind in _KINDS:
        spec = _KINDS[kind]
        parse_options(
            getattr(importlib.import_module(spec.module), spec.options), options, name=name
        )
        if kind in NEEDS_MODEL and not model:
            raise ScorerError(
                f"objective {name!r}: scorer {kind!r} needs 'model' (a model directory, hub id "
                "or run:reward_heads/NAME)"
            )
        return
    _plugin_parts(kind, name=name)


def _plugin_parts(kind: str, *, name: str) -> tuple[str, str]:
    module_name, _, attr = kind.partition(":")
    if not module_name or not attr:
        raise ScorerError(
            f"objective {name!r}: scorer {kind!r} is neither a built-in kind "
            f"({', '.join(KINDS)}) nor a plug-in 'module:callable'"
        )
    if module_name.split(".")[0] in sys.stdlib_module_names | {"builtins"}:
        raise ScorerError(
            f"objective {name!r}: scorer {kind!r} names the standard library; a plug-in is a "
            "class or function of your own module that returns a scorer"
        )
    return module_name, attr


def _load_plugin(kind: str, *, name: str) -> Callable[..., Any]:
    module_name, attr = _plugin_parts(kind, name=name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScorerError(
            f"objective {name!r}: cannot import plug-in module {module_name!r} ({exc}); "
            "make it importable (installed, or on PYTHONPATH)"
        ) from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)  # type: ignore[assignment]
        if factory is None:
            raise ScorerError(
                f"objective {name!r}: module {module_name!r} has no attribute {attr!r}"
            )
    if not (inspect.isclass(factory) or inspect.isfunction(factory)):
        raise ScorerError(
            f"objective {name!r}: plug-in {kind!r} is a {type(factory).__name__}; it must be a "
            "class or a Python function that returns a scorer"
        )
    return factory


def build_scorer(
    kind: str,
    *,
    name: str,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    base_dir: str | Path | None = None,
    empty_response: str = "score",
    hasher: Any = None,
) -> CheckedScorer:
    """Build the scorer of one objective, wrapped in the validating :class:`CheckedScorer`.

    Parameters
    ----------
    kind
        ``hf-classifier``, ``embedding-head``, ``heuristic``, ``column`` or ``module:callable``.
    name
        The objective's name (the scores column; named in every error).
    model
        Model directory (relative paths resolve against ``base_dir``) or hub id; ``None`` for
        kinds that need none.
    options
        The objective's ``options`` table; validated by the kind's options model.
    base_dir
        Directory that relative paths in ``model`` and options are relative to (the config's).
    empty_response
        ``score`` (score empty responses like any other), ``min`` (give them the scorer's known
        lower bound ``floor``, else the lowest score of the non-empty rows in the same call)
        or ``error`` (fail, naming the row).
    hasher
        A :class:`paretohqd.hashing.FileHasher` for model content hashes (pass the run's, so
        large model directories are hashed once across processes); default: a fresh one.

    Returns
    -------
    CheckedScorer

    Raises
    ------
    ScorerError
        Unknown kind, bad options, a model that cannot be loaded as this kind.
    """
    if empty_response not in EMPTY_POLICIES:
        raise ScorerError(
            f"objective {name!r}: empty_response {empty_response!r} is not one of "
            f"{', '.join(EMPTY_POLICIES)}"
        )
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if kind in _KINDS:
        spec = _KINDS[kind]
        module = importlib.import_module(spec.module)
        opts = parse_options(getattr(module, spec.options), options, name=name)
        inner = getattr(module, spec.factory)(
            name=name, model=model, options=opts, base_dir=base, hasher=hasher
        )
    else:
        factory = _load_plugin(kind, name=name)
        try:
            inner = factory(name, model, dict(options or {}))
        except ScorerError:
            raise
        except Exception as exc:
            raise ScorerError(
                f"objective {name!r}: plug-in {kind!r} failed to build: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(getattr(inner, "score", None)):
            raise ScorerError(
                f"objective {name!r}: plug-in {kind!r} returned {type(inner).__name__}, which "
                "has no score(prompts, responses, extras) method"
            )
    return CheckedScorer(
        inner,
        name=name,
        kind=kind,
        options=dict(options or {}),
        empty_response=empty_response,  # type: ignore[arg-type]
    )


class CheckedScorer:
    """The registry's wrapper: one place for input/output checks and the empty-row policy.

    Every scorer the stage sees is one of these, so NaN/inf detection, the empty-response
    policy and the counters work the same for built-in kinds and plug-ins.
    """

    def __init__(
        self,
        inner: Any,
        *,
        name: str,
        kind: str,
        options: Mapping[str, Any],
        empty_response: EmptyPolicy = "score",
    ) -> None:
        self.inner = inner
        self.name = name
        self.kind = kind
        self.options = dict(options)
        self.empty_response: EmptyPolicy = empty_response
        self.last_stats: dict[str, int] = {}
        self._identity_hash: str | None = None

    def identity(self) -> dict[str, Any]:
        """The inner scorer's identity plus kind and empty-response policy (not the name).

        The objective's name is left out on purpose: two objectives with the same scorer share
        cached scores.
        """
        inner_identity = getattr(self.inner, "identity", None)
        ident = dict(inner_identity()) if callable(inner_identity) else {}
        ident.setdefault("kind", self.kind)
        ident.setdefault("options", self.options)
        ident["empty_response"] = self.empty_response
        return ident

    @property
    def text_only(self) -> bool:
        """Whether scores depend on the prompt and response alone (the inner scorer says so
        with ``text_only = True``); otherwise the cache keys a score on the row's extra
        columns too. Plug-ins default to False: they receive the extras and may read them."""
        return bool(getattr(self.inner, "text_only", False))

    def identity_hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`identity` (computed once: it cannot change)."""
        if self._identity_hash is None:
            self._identity_hash = sha256_json(self.identity())
        return self._identity_hash

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Score rows and check the result.

        Parameters
        ----------
        prompts, responses
            One string each per row.
        extras
            Extra numeric columns, each of the same length (for ``column`` scorers).

        Returns
        -------
        np.ndarray
            float64, shape ``(len(prompts),)``, finite.

        Raises
        ------
        ScorerError
            Mismatched lengths, non-string inputs, an empty response under ``error``, or
            output of the wrong shape.
        ScoreValueError
            A NaN or infinite score; ``.row`` says which.
        """
        n = len(prompts)
        if len(responses) != n:
            raise ScorerError(
                f"objective {self.name!r}: {n} prompts but {len(responses)} responses"
            )
        extras = dict(extras or {})
        for key, col in extras.items():
            if len(col) != n:
                raise ScorerError(
                    f"objective {self.name!r}: extra column {key!r} has {len(col)} rows, "
                    f"expected {n}"
                )
        prompts = list(prompts)
        responses = list(responses)
        for label, texts in (("prompt", prompts), ("response", responses)):
            for i, text in enumerate(texts):
                if not isinstance(text, str):
                    raise ScorerError(
                        f"objective {self.name!r}: row {i}: {label} is "
                        f"{type(text).__name__}, expected str (drop or fill NULL {label}s)"
                    )
        empty = np.fromiter((not r.strip() for r in responses), dtype=bool, count=n)
        stats = {"rows": n, "empty_responses": int(empty.sum())}
        if self.empty_response == "error" and empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise ScorerError(
                f"objective {self.name!r}: row {row}: empty response (score.empty_response = "
                "'error'); drop empty responses upstream or set it to 'score' or 'min'"
            )
        todo = ~empty if self.empty_response == "min" else np.ones(n, dtype=bool)
        values = np.full(n, np.nan)
        idx = np.flatnonzero(todo)
        if idx.size:
            sub_extras = {k: np.asarray(v)[idx] for k, v in extras.items()}
            raw = self.inner.score(
                [prompts[i] for i in idx], [responses[i] for i in idx], sub_extras
            )
            out = np.asarray(raw, dtype=np.float64)
            if out.shape != (idx.size,):
                raise ScorerError(
                    f"objective {self.name!r}: scorer returned shape {out.shape} for "
                    f"{idx.size} rows; it must return one float per row"
                )
            values[idx] = out
            bad = ~np.isfinite(out)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                row = int(idx[j])
                raise ScoreValueError(
                    f"objective {self.name!r}: row {row}: score is {out[j]} "
                    f"({int(bad.sum())} non-finite scores in {idx.size} rows)",
                    row=row,
                    value=float(out[j]),
                )
            inner_stats = getattr(self.inner, "last_stats", None)
            if isinstance(inner_stats, Mapping):
                for key, val in inner_stats.items():
                    stats[str(key)] = stats.get(str(key), 0) + int(val)
        if self.empty_response == "min" and empty.any():
            floor = getattr(self.inner, "floor", None)
            if floor is None:
                if not idx.size:
                    raise ScorerError(
                        f"objective {self.name!r}: every response in this batch is empty and "
                        "the scorer has no known minimum; use score.empty_response = 'score'"
                    )
                floor = float(values[idx].min())
            values[empty] = float(floor)
        self.last_stats = stats
        return values

    def __repr__(self) -> str:
        return f"CheckedScorer(name={self.name!r}, kind={self.kind!r})"


def resolve_path(path: str, base_dir: Path) -> Path:
    """``path`` as given when absolute, else relative to ``base_dir`` (``~`` expanded)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def content_hash(path: Path, hasher: Any = None) -> str:
    """sha256 over a file or directory's contents, through ``hasher`` when given."""
    from paretohqd.hashing import FileHasher

    return str((hasher or FileHasher()).path(Path(path)))
