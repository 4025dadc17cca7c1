"""Experiment trackers: each adapter's training log, streamed step by step as it is produced.

The training loop (:mod:`~paretohqd.stages.kit.training.loop`) and the fused trainer call one
:class:`Tracker` per adapter, ``log(step, metrics)`` after each training step, exactly the row
they append to the adapter's ``training_log.parquet``; what a tracker receives is therefore the
log the adapter saves, only earlier. ``[tracking]`` is reporting only: it enters no fingerprint
and no adapter key (:class:`TrackingSpec` travels in a worker's spec, not in its settings).

A stage names each adapter with an :class:`AdapterRun` (its method as the report names it, its
preference, where its steps go); the same object titles the adapter's ``loss.png``. Backends
(:mod:`~paretohqd.stages.kit.tracking.backends`, one class each) import their package when a
run opens, so a config without a tracker never imports one, and a missing package fails with
the extra to install.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class TrackingSpec:
    """The resolved ``[tracking]`` table, picklable for a worker: the backend, the project,
    the group of this pipeline run's adapter runs, the directory for local files and the
    backend's own keyword arguments."""

    backend: str
    project: str
    group: str
    log_dir: str
    options: Mapping[str, Any] = field(default_factory=dict)


def tracking_spec(config: Any) -> TrackingSpec | None:
    """``config.tracking`` resolved (paths against the config, the group defaulting to the run
    name), or None when no tracker is configured. The backend's package is checked here, on
    the driver, so a missing extra fails before any adapter trains."""
    cfg = config.tracking
    if cfg.backend == "none":
        return None
    from paretohqd.stages.kit.tracking.backends import require

    require(cfg.backend)
    log_dir = config.resolve(cfg.log_dir) if cfg.log_dir else config.run_dir / "tracking"
    return TrackingSpec(
        backend=cfg.backend,
        project=cfg.project,
        group=cfg.group or config.run.name,
        log_dir=str(log_dir),
        options=dict(cfg.options),
    )


def adapter_run(ctx: Any, output: str) -> AdapterRun:
    """The run of the adapters a training stage writes to artifact ``output``: named after the
    method the report shows them as (the artifact's ``method`` tag, else its name), streaming
    to the configured tracker."""
    method = ctx.artifacts[output].tags.get("method") or output
    return AdapterRun(method, tracking=tracking_spec(ctx.config))


@dataclass(frozen=True)
class AdapterRun:
    """One adapter's training as people and trackers see it: its method as the report names it
    (``paretohqd_round1``, ``modpo``), its preference and weights, and where its steps stream
    (None: nowhere). A stage builds one per stage and each worker fills in its preference
    (:meth:`of`)."""

    method: str
    pref_id: str = ""
    weights: tuple[float, ...] = ()
    tracking: TrackingSpec | None = None

    def of(self, pref_id: str, weights: Sequence[float] = ()) -> AdapterRun:
        """This stage's run for preference ``pref_id`` with ``weights``."""
        return replace(self, pref_id=pref_id, weights=tuple(float(w) for w in weights))

    @property
    def name(self) -> str:
        """The tracker run's name: ``<method>/<pref_id>`` (the method alone without one)."""
        return f"{self.method}/{self.pref_id}" if self.pref_id else self.method

    @property
    def title(self) -> str:
        """The loss plot's title: ``paretohqd_round1 · pref 0.30/0.70`` (the id when the
        weights are unknown)."""
        if self.weights:
            return f"{self.method} · pref " + "/".join(f"{w:.2f}" for w in self.weights)
        return f"{self.method} · {self.pref_id}" if self.pref_id else self.method


class Tracker(Protocol):
    """Where one adapter's training steps go."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record the numeric ``metrics`` of training step ``step``."""

    def close(self, ok: bool) -> None:
        """Finish the run (``ok``: training completed; else it failed or was interrupted)."""


class NullTracker:
    """No tracker: ``[tracking] backend = "none"`` or an adapter trained outside a stage."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def close(self, ok: bool) -> None:
        return None


def numeric(entry: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a log row a tracker can plot (the step is the x axis, not a metric)."""
    return {
        k: float(v)
        for k, v in entry.items()
        if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)
    }


@contextmanager
def open_tracker(
    run: AdapterRun | None, settings: Mapping[str, Any] | None = None
) -> Iterator[Tracker]:
    """The tracker of ``run`` for the duration of the block (a :class:`NullTracker` when the
    run has none), recording ``settings`` as the run's config; finished when the block ends,
    as failed when it raises."""
    if run is None or run.tracking is None:
        yield NullTracker()
        return
    from paretohqd.stages.kit.tracking.backends import open_backend

    tracker = open_backend(run.tracking, run.name, dict(settings or {}))
    ok = False
    try:
        yield tracker
        ok = True
    finally:
        tracker.close(ok)
