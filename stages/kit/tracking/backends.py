"""One class per tracker backend, each importing its package only when a run opens.

Every backend writes under ``TrackingSpec.log_dir`` unless its options send it elsewhere, and
names the adapter's run ``<method>/<pref_id>`` inside the spec's project and group, so the
adapters of one pipeline run sit side by side in the tracker's UI. A tracker only receives
what the loop logs; it never feeds anything back into training.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paretohqd.errors import ConfigError
from paretohqd.stages.kit.tracking import Tracker, TrackingSpec

#: The package each backend imports, and the pip extra that installs it.
PACKAGES = {
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "trackio": "trackio",
}


def require(backend: str) -> None:
    """Fail with the extra to install when ``backend``'s package is not importable."""
    package = PACKAGES.get(backend)
    if package is None:
        raise ConfigError(
            f"tracking.backend = {backend!r} is not a tracker; use one of {', '.join(PACKAGES)}"
        )
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"tracking.backend = {backend!r} needs the {package} package, which is not "
            f'installed; pip install "paretohqd[{backend}]" (or set tracking.backend = "none")'
        )


def _options_error(spec: TrackingSpec, exc: Exception) -> ConfigError:
    """A backend refused ``tracking.options``: say which keys were passed."""
    keys = ", ".join(sorted(spec.options)) or "none"
    return ConfigError(
        f"tracking: the {spec.backend} backend refused its arguments ({exc}); check "
        f"tracking.options (given: {keys})"
    )


class TensorBoardTracker:
    """Event files under ``<log_dir>/<group>/<method>/<pref_id>/``, one scalar per metric.

    ``purge_step=0``: an adapter trained again (a changed shard, ``run --force``) writes into
    the same directory, and TensorBoard hides the earlier attempt's steps instead of drawing
    both curves over each other. Each step is flushed, so TensorBoard shows it at once.
    """

    def __init__(self, spec: TrackingSpec, name: str, settings: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory = Path(spec.log_dir) / spec.group / name
        try:
            self.writer = SummaryWriter(
                log_dir=str(directory), **({"purge_step": 0} | dict(spec.options))
            )
        except TypeError as exc:
            raise _options_error(spec, exc) from None
        self.writer.add_text("settings", f"```\n{json.dumps(settings, indent=2, default=str)}\n```")

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def close(self, ok: bool) -> None:
        self.writer.close()


class WandbTracker:
    """A W&B run per adapter (``reinit="create_new"``: the fused trainer holds several at
    once), grouped by the pipeline run; ``options`` go to ``wandb.init`` (``mode = "offline"``
    writes under ``log_dir`` only)."""

    def __init__(self, spec: TrackingSpec, name: str, settings: Mapping[str, Any]) -> None:
        import wandb

        Path(spec.log_dir).mkdir(parents=True, exist_ok=True)
        kwargs = {
            "project": spec.project,
            "group": spec.group,
            "name": name,
            "dir": spec.log_dir,
            "config": dict(settings),
            "reinit": "create_new",
        } | dict(spec.options)
        try:
            self.run = wandb.init(**kwargs)
        except TypeError as exc:
            raise _options_error(spec, exc) from None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


class MlflowTracker:
    """An MLflow run per adapter in experiment ``project``, through the client API (the fluent
    ``mlflow.start_run`` keeps one active run per thread; the fused trainer needs several).
    The store is ``options.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file in
    ``log_dir`` (``mlflow ui --backend-store-uri sqlite:///<log_dir>/mlflow.db``)."""

    def __init__(self, spec: TrackingSpec, name: str, settings: Mapping[str, Any]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        options = dict(spec.options)
        uri = options.pop("tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
        if uri is None:
            Path(spec.log_dir).mkdir(parents=True, exist_ok=True)
            uri = "sqlite:///" + str(Path(spec.log_dir).resolve() / "mlflow.db")
        if options:
            raise ConfigError(
                f"tracking.options: the mlflow backend takes only tracking_uri; remove "
                f"{', '.join(sorted(options))}"
            )
        self.client = MlflowClient(tracking_uri=uri)
        found = self.client.get_experiment_by_name(spec.project)
        experiment = (
            found.experiment_id
            if found is not None
            else self.client.create_experiment(
                spec.project, artifact_location=(Path(spec.log_dir) / "artifacts").as_uri()
            )
        )
        run = self.client.create_run(
            experiment, run_name=name, tags={"paretohqd.group": spec.group}
        )
        self.run_id = run.info.run_id
        params = [Param(k, str(v)[:500]) for k, v in settings.items()]
        if params:
            self.client.log_batch(self.run_id, params=params)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()]
        )

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")


class TrackioTracker:
    """A Trackio run per adapter in ``project``, grouped by the pipeline run. Trackio keeps
    its database in ``TRACKIO_DIR``: set to ``log_dir`` unless the environment sets it."""

    def __init__(self, spec: TrackingSpec, name: str, settings: Mapping[str, Any]) -> None:
        os.environ.setdefault("TRACKIO_DIR", spec.log_dir)
        import trackio

        kwargs = {
            "project": spec.project,
            "name": name,
            "group": spec.group,
            "config": dict(settings),
        } | dict(spec.options)
        try:
            self.run = trackio.init(**kwargs)
        except TypeError as exc:
            raise _options_error(spec, exc) from None

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def close(self, ok: bool) -> None:
        self.run.finish()


BACKENDS: dict[str, type[Any]] = {
    "tensorboard": TensorBoardTracker,
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
    "trackio": TrackioTracker,
}


def open_backend(spec: TrackingSpec, name: str, settings: Mapping[str, Any]) -> Tracker:
    """Start run ``name`` on ``spec``'s backend, its config ``settings``."""
    require(spec.backend)
    tracker: Tracker = BACKENDS[spec.backend](spec, name, settings)
    return tracker
