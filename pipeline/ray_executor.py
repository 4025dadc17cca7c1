"""The Ray executor: a stage's parts and items on a Ray cluster, with the local results.

The runner still plans, fingerprints, locks and writes the manifest on the driver; only the
units of work move (see :mod:`paretohqd.executor`):

- **parts** go through Ray Data: ``from_items`` of the part indices still to do, then
  ``map_batches`` of :class:`_PartActor` on an actor pool (``ActorPoolStrategy``; the
  ``concurrency=`` argument is deprecated). Each actor builds what the worker keeps in
  :func:`~paretohqd.executor.worker_state` once (one model load per actor) and writes its parts
  into the same atomic part store itself; only part indices come back to the driver. A part an
  earlier attempt already wrote is skipped, so a retried task (``max_restarts``,
  ``max_task_retries``) or a rerun after a kill never writes a part twice.
- **items** (one adapter or reward head each) are Ray tasks with the stage's CPUs and GPUs, at
  most ``max_parallel`` at a time; the driver alone records their keys, after each returns.

``run.root`` must be the same path on every node (shared storage); an embedded cluster
(``address = "local"``) is this machine. Nothing here changes a number: workers apply the run's
thread settings as the local executor does, and seeds belong to the parts and items themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import ConfigError
from paretohqd.executor import (
    Item,
    ItemsRun,
    ItemWorker,
    PartsRun,
    PartWorker,
    plan_items,
    progress_bar,
    release_worker_state,
    write_item_keys,
)

if TYPE_CHECKING:
    from paretohqd.config import ExecutorConfig, StageResources
    from paretohqd.parts import Parts
    from paretohqd.stage import StageContext


def ensure_ray(cfg: ExecutorConfig) -> Any:
    """``ray``, connected: an already initialised Ray (a test's, a notebook's) is used as it
    is; otherwise ``ray.init`` with ``[executor]``'s address, CPUs, GPUs and runtime_env."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor.kind = 'ray' needs Ray: pip install 'paretohqd[ray]' (or set "
            "executor.kind = 'local')"
        ) from None
    if not ray.is_initialized():
        ray.init(
            address=cfg.address,
            num_cpus=cfg.num_cpus if cfg.address == "local" else None,
            num_gpus=cfg.num_gpus if cfg.address == "local" else None,
            runtime_env=cfg.runtime_env or None,
            include_dashboard=False,
            log_to_driver=False,
        )
    quiet_ray_data(ray)
    return ray


def quiet_ray_data(ray: Any) -> None:
    """Ray Data's progress blocks and execution logs off: the runner's own bar and lines say
    how a stage goes (warnings still show)."""
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


class _PartActor:
    """One actor of a part pool: runs ``worker(spec, i)`` for the indices it is given and writes
    each part into ``store`` (unless an earlier attempt already did)."""

    def __init__(self, worker: PartWorker, spec: Any, store: Parts, threads: int | None) -> None:
        from paretohqd.runner import apply_threads

        apply_threads(threads)
        self.worker, self.spec, self.store = worker, spec, store

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for index in batch["index"]:
            i = int(index)
            if not self.store.done(i):
                self.store.write(i, self.worker(self.spec, i))
            done.append(i)
        return {"index": done}


def _make_item(
    worker: ItemWorker, spec: Any, item: Item, key: str, target: Path, threads: int | None
) -> dict[str, Any]:
    """A training task: one item into ``target`` (atomically, as the worker always does)."""
    from paretohqd.runner import apply_threads

    apply_threads(threads)
    try:
        return dict(worker(spec, item, key, target))
    finally:
        release_worker_state()


class RayExecutor:
    """Parts on a Ray Data actor pool and items as Ray tasks; the same results as
    :class:`~paretohqd.executor.LocalExecutor`."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg

    def _resources(self, ctx: StageContext) -> StageResources:
        from paretohqd.config import StageResources

        return self.cfg.stages.get(ctx.stage.name) or StageResources()

    def map_parts(
        self,
        ctx: StageContext,
        worker: PartWorker,
        spec: Any,
        n_parts: int,
        *,
        store: Parts | None = None,
        sizes: Sequence[int] | None = None,
        unit: str = "part",
    ) -> PartsRun:
        """Write every missing part on an actor pool; progress follows on the driver."""
        parts = store if store is not None else ctx.parts()
        parts.begin(force=ctx.force)
        todo = [i for i in range(n_parts) if not parts.done(i)]
        if not todo:
            return PartsRun(parts=n_parts, resumed=n_parts)
        ray = ensure_ray(self.cfg)
        res = self._resources(ctx)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = min(len(todo), res.actors or max(1, int(cpus // res.cpus)))
        weight = list(sizes) if sizes is not None else [1] * n_parts
        ds = ray.data.from_items([{"index": i} for i in todo]).map_batches(
            _PartActor,
            fn_constructor_kwargs={
                "worker": worker,
                "spec": spec,
                "store": parts,
                "threads": ctx.config.run.threads,
            },
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size),
            num_cpus=res.cpus,
            num_gpus=res.gpus or None,
            max_restarts=-1,
            max_task_retries=-1,
        )
        done = sum(weight) - sum(weight[i] for i in todo)
        bar = progress_bar(sum(weight), done, ctx.stage.name, unit)
        try:
            for row in ds.iter_rows():
                bar.update(weight[int(row["index"])])
        finally:
            bar.close()
        return PartsRun(parts=n_parts, resumed=n_parts - len(todo))

    def map_items(
        self,
        ctx: StageContext,
        worker: ItemWorker,
        spec: Any,
        items: Sequence[Item],
        root: Path,
        *,
        unit: str = "item",
    ) -> ItemsRun:
        """Make the items whose key changed as Ray tasks (``max_parallel`` at a time); the
        driver records each key when its task returns, and prunes what left."""
        from paretohqd.atomic import prune_dirs

        ids = [item.id for item in items]
        keys, todo, result, current = plan_items(ctx, items, root)
        write_item_keys(root, current)  # items about to be remade are never "current"
        if todo:
            self._run_items(ctx, worker, spec, todo, keys, root, current, result, unit)
        result.removed = prune_dirs(root, set(ids))
        write_item_keys(root, {i: current[i] for i in ids if i in current})
        return result

    def _run_items(
        self,
        ctx: StageContext,
        worker: ItemWorker,
        spec: Any,
        todo: Sequence[Item],
        keys: dict[str, str],
        root: Path,
        current: dict[str, str],
        result: ItemsRun,
        unit: str,
    ) -> None:
        ray = ensure_ray(self.cfg)
        res = self._resources(ctx)
        task = ray.remote(num_cpus=res.cpus, num_gpus=res.gpus, max_retries=2)(_make_item)
        limit = res.max_parallel or len(todo)
        spec_ref = ray.put(spec)
        queue = list(todo)
        running: dict[Any, Item] = {}
        bar = progress_bar(len(keys), len(keys) - len(todo), ctx.stage.name, unit)
        try:
            while queue or running:
                while queue and len(running) < limit:
                    item = queue.pop(0)
                    target = root / item.id
                    ref = task.remote(
                        worker, spec_ref, item, keys[item.id], target, ctx.config.run.threads
                    )
                    running[ref] = item
                ready, _ = ray.wait(list(running), num_returns=1)
                item = running.pop(ready[0])
                result.metrics[item.id] = ray.get(ready[0])
                current[item.id] = keys[item.id]
                write_item_keys(root, current)
                result.made.append(item.id)
                bar.update(1)
        finally:
            bar.close()
            for ref in running:
                ray.cancel(ref, force=True)
        result.made.sort(key=[i.id for i in todo].index)
