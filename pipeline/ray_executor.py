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

``run.root`` must be the same path on every node (shared storage): before the first unit of
work the driver writes a nonce file into the run directory and one task per node reads it back
(:func:`check_shared_storage`), failing fast with what to do. Nothing here changes a number:
workers use the driver's thread count (float sums depend on it) and seeds belong to the parts
and items themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.errors import ConfigError
from paretohqd.executor import (
    Item,
    ItemGroupWorker,
    ItemsRun,
    ItemWorker,
    PartGroupWorker,
    PartsRun,
    PartWorker,
    finish_items,
    parts_progress,
    plan_groups,
    plan_items,
    plan_parts,
    progress_bar,
    release_worker_state,
    run_part_call,
    run_unit,
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
    """One actor of a part pool: makes the calls it is given (call ``k`` is ``calls[k]``: one
    part through ``worker``, or a group through ``group``) and writes each part into ``store``
    (unless an earlier attempt already did)."""

    def __init__(
        self,
        worker: PartWorker,
        group: PartGroupWorker | None,
        spec: Any,
        store: Parts,
        calls: Sequence[tuple[int, ...]],
        threads: int,
    ) -> None:
        from paretohqd.runner import apply_threads

        apply_threads(threads)
        self.worker, self.group, self.spec, self.store = worker, group, spec, store
        self.calls = calls

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        done = []
        for index in batch["index"]:
            members = self.calls[int(index)]
            if not all(self.store.done(i) for i in members):
                tables = run_part_call(self.worker, self.group, self.spec, members)
                for i, table in zip(members, tables, strict=True):
                    if not self.store.done(i):
                        self.store.write(i, table)
            done.append(int(index))
        return {"index": done}


def _make_item(
    worker: ItemWorker, spec: Any, item: Item, key: str, target: Path, threads: int
) -> dict[str, Any]:
    """A training task: one item into ``target`` (atomically, as the worker always does)."""
    from paretohqd.runner import apply_threads

    apply_threads(threads)
    try:
        return dict(run_unit(worker, spec, item, key, target))
    finally:
        release_worker_state()


def _make_group(
    group: ItemGroupWorker, spec: Any, units: list[tuple[Item, str, Path]], threads: int
) -> dict[str, dict[str, Any]]:
    """A fused training task: every unit in one pass; the metrics of each, by item id."""
    from paretohqd.runner import apply_threads

    apply_threads(threads)
    made: dict[str, dict[str, Any]] = {}
    try:
        run_unit(group, spec, units, lambda item_id, metrics: made.update({item_id: dict(metrics)}))
    finally:
        release_worker_state()
    return made


def _train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: the item worker under :func:`data_parallel` with this worker's
    rank (``torch.distributed`` is set up by ``TorchTrainer``); rank 0 saves the item and
    reports its metrics."""
    import json

    import ray.train

    from paretohqd.runner import apply_threads
    from paretohqd.stages.kit.training.loop import data_parallel

    apply_threads(config["threads"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if config["gpus"]:
        import ray.train.torch
        import torch

        torch.cuda.set_device(ray.train.torch.get_device())
    try:
        with data_parallel(rank, world):
            metrics = run_unit(
                config["worker"], config["spec"], config["item"], config["key"], config["target"]
            )
    finally:
        release_worker_state()
    if rank == 0:  # shared storage, as the item itself
        from paretohqd.atomic import write_text

        write_text(Path(config["metrics"]), json.dumps(dict(metrics), default=str))


def _train_item(
    worker: ItemWorker,
    spec: Any,
    item: Item,
    key: str,
    target: Path,
    threads: int,
    res: StageResources,
    storage: str,
) -> dict[str, Any]:
    """A coordinating task: one item trained by ``res.workers`` Ray Train workers
    (``TorchTrainer``, gloo on CPUs, NCCL on GPUs), each with the stage's CPUs and GPUs."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    name = f"{item.id}-{key[:12]}"
    metrics = Path(storage) / name / "item-metrics.json"
    per_worker = {"CPU": res.cpus, **({"GPU": res.gpus} if res.gpus else {})}
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={
            "worker": worker,
            "spec": spec,
            "item": item,
            "key": key,
            "target": target,
            "threads": threads,
            "gpus": res.gpus,
            "metrics": str(metrics),
        },
        scaling_config=ScalingConfig(
            num_workers=res.workers, use_gpu=res.gpus > 0, resources_per_worker=per_worker
        ),
        run_config=RunConfig(name=name, storage_path=storage),
    )
    trainer.fit()
    try:
        return dict(json.loads(metrics.read_text()))
    finally:
        import shutil

        shutil.rmtree(metrics.parent, ignore_errors=True)


def user_error(exc: BaseException) -> BaseException | None:
    """The project's own error inside a Ray failure (a task's, an actor's, a Ray Train
    worker's), so the driver prints the one line it would print locally; None if there is
    none."""
    from paretohqd.errors import ParetoHqDError

    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ParetoHqDError):
            found: BaseException = e
            return found
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
        todo += list(getattr(e, "worker_failures", {}).values())
        todo += list(getattr(e, "errors", []) or [])
    return None


class RayExecutor:
    """Parts on a Ray Data actor pool and items as Ray tasks; the same results as
    :class:`~paretohqd.executor.LocalExecutor`."""

    def __init__(self, cfg: ExecutorConfig) -> None:
        self.cfg = cfg

    def connect(self, ctx: StageContext) -> Any:
        """Ray, connected, with the run directory checked to be visible from every node."""
        ray = ensure_ray(self.cfg)
        check_shared_storage(ray, ctx.run_dir)
        return ray

    @staticmethod
    def threads(ctx: StageContext) -> int:
        """The threads workers use: ``run.threads``, else the driver's own torch count. Ray
        gives a worker one thread per CPU it holds, and float sums depend on the thread count,
        so workers use the driver's to give the numbers a local run gives."""
        if ctx.config.run.threads is not None:
            return int(ctx.config.run.threads)
        import torch

        return int(torch.get_num_threads())

    @classmethod
    def runtime_env(cls, ctx: StageContext) -> dict[str, Any]:
        """Worker processes started with the driver's thread count in the environment: BLAS
        libraries (numpy's, behind the reward heads) read it once, when they load, so setting
        it later in the worker is too late."""
        n = str(cls.threads(ctx))
        names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
        return {"env_vars": dict.fromkeys(names, n)}

    def pool(self, ctx: StageContext, units: int) -> dict[str, Any]:
        """``map_batches`` arguments for an actor pool over ``units`` parts, one part per call:
        the stage's ``actors`` (default: the cluster's CPUs / ``cpus``), CPUs and GPUs per
        actor, and the driver's thread count. Ray Data restarts lost actors and retries their
        tasks by default (``max_restarts``/``max_task_retries`` -1)."""
        ray = ensure_ray(self.cfg)
        res = self.resources(ctx)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = min(units, res.actors or max(1, int(cpus // res.cpus)))
        return {
            "batch_size": 1,
            "compute": ray.data.ActorPoolStrategy(size=max(1, size)),
            "num_cpus": res.cpus,
            "num_gpus": res.gpus or None,
            "runtime_env": self.runtime_env(ctx),
        }

    def resources(self, ctx: StageContext) -> StageResources:
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
        groups: Sequence[Sequence[int]] | None = None,
        group: PartGroupWorker | None = None,
    ) -> PartsRun:
        """Write every missing part (or every group with a missing part) on an actor pool;
        progress follows on the driver."""
        parts, todo = plan_parts(ctx, store, n_parts)
        if not todo:
            return PartsRun(parts=n_parts, resumed=n_parts)
        calls, missing = plan_groups(n_parts, todo, groups, group), set(todo)
        ray = self.connect(ctx)
        ds = ray.data.from_items([{"index": k} for k in range(len(calls))]).map_batches(
            _PartActor,
            fn_constructor_kwargs={
                "worker": worker,
                "group": group,
                "spec": spec,
                "store": parts,
                "calls": calls,
                "threads": self.threads(ctx),
            },
            **self.pool(ctx, len(calls)),
        )
        bar, weight = parts_progress(ctx, n_parts, todo, sizes, unit)
        try:
            for row in ds.iter_rows():
                bar.update(sum(weight[i] for i in calls[int(row["index"])] if i in missing))
        except Exception as exc:  # Ray Data wraps what a worker raised
            raise (user_error(exc) or exc) from None
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
        group: ItemGroupWorker | None = None,
    ) -> ItemsRun:
        """Make the items whose key changed as Ray tasks (``max_parallel`` at a time), or with
        ``group`` all of them in one task (fused training; not with several ``workers``); the
        driver records each key when its task returns, and prunes what left."""
        ids = [item.id for item in items]
        keys, todo, result, current = plan_items(ctx, items, root)
        write_item_keys(root, current)  # items about to be remade are never "current"
        if group is not None and len(todo) > 1 and self.resources(ctx).workers <= 1:
            self._run_group(ctx, group, spec, todo, keys, root, current, result)
        elif todo:
            self._run_items(ctx, worker, spec, todo, keys, root, current, result, unit)
        result.removed = finish_items(root, ids, current)
        return result

    def _run_group(
        self,
        ctx: StageContext,
        group: ItemGroupWorker,
        spec: Any,
        todo: Sequence[Item],
        keys: dict[str, str],
        root: Path,
        current: dict[str, str],
        result: ItemsRun,
    ) -> None:
        """Every item of ``todo`` in one task with the stage's resources."""
        ray = self.connect(ctx)
        res = self.resources(ctx)
        task = ray.remote(
            num_cpus=res.cpus, num_gpus=res.gpus, max_retries=2, runtime_env=self.runtime_env(ctx)
        )(_make_group)
        units = [(item, keys[item.id], root / item.id) for item in todo]
        try:
            made = ray.get(task.remote(group, spec, units, self.threads(ctx)))
        except ray.exceptions.RayError as exc:
            raise (user_error(exc) or exc) from None
        for item in todo:
            result.metrics[item.id] = made[item.id]
            current[item.id] = keys[item.id]
            result.made.append(item.id)
        write_item_keys(root, current)

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
        ray = self.connect(ctx)
        res = self.resources(ctx)
        threads = self.threads(ctx)
        spec_ref = ray.put(spec)
        if res.workers > 1:  # one coordinating task per item; its workers hold the resources
            trainer = ray.remote(num_cpus=0, max_retries=0, runtime_env=self.runtime_env(ctx))(
                _train_item
            )
            storage = str(ctx.run_dir / ".ray-train")

            def submit(item: Item) -> Any:
                return trainer.remote(
                    worker, spec_ref, item, keys[item.id], root / item.id, threads, res, storage
                )
        else:
            task = ray.remote(
                num_cpus=res.cpus,
                num_gpus=res.gpus,
                max_retries=2,
                runtime_env=self.runtime_env(ctx),
            )(_make_item)

            def submit(item: Item) -> Any:
                return task.remote(worker, spec_ref, item, keys[item.id], root / item.id, threads)

        limit = res.max_parallel or len(todo)
        queue = list(todo)
        running: dict[Any, Item] = {}
        bar = progress_bar(len(keys), len(keys) - len(todo), ctx.stage.name, unit)
        try:
            while queue or running:
                while queue and len(running) < limit:
                    item = queue.pop(0)
                    running[submit(item)] = item
                ready, _ = ray.wait(list(running), num_returns=1)
                item = running.pop(ready[0])
                try:
                    result.metrics[item.id] = ray.get(ready[0])
                except ray.exceptions.RayError as exc:
                    raise (user_error(exc) or exc) from None
                current[item.id] = keys[item.id]
                write_item_keys(root, current)
                result.made.append(item.id)
                bar.update(1)
        finally:
            bar.close()
            for ref in running:
                ray.cancel(ref, force=True)
        result.made.sort(key=[i.id for i in todo].index)


#: Run directories whose visibility from every node this process has checked.
_CHECKED: set[str] = set()


def _read_nonce(path: str) -> str:
    """A task pinned to one node: what the nonce file holds there (empty if it is not there)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def check_shared_storage(ray: Any, run_dir: Path) -> None:
    """Fail fast unless every alive node sees ``run_dir`` at the same path: the driver writes a
    nonce file there and one task per node reads it back (workers write parts and adapters
    into the run directory themselves)."""
    import uuid

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from paretohqd.atomic import remove, write_text
    from paretohqd.errors import StageError

    if str(run_dir) in _CHECKED:
        return
    nonce = uuid.uuid4().hex
    path = run_dir / f".ray-storage-{nonce[:12]}"
    write_text(path, nonce)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        read = ray.remote(num_cpus=0)(_read_nonce)
        refs = [
            read.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(path))
            for n in nodes
        ]
        blind = [n for n, got in zip(nodes, ray.get(refs), strict=True) if got != nonce]
    finally:
        remove(path)
    if blind:
        where = ", ".join(str(n.get("NodeManagerAddress", n["NodeID"])) for n in blind)
        raise StageError(
            f"run.root is not shared: node(s) {where} cannot read {run_dir} at the same path; "
            "put run.root on storage every node mounts at the same path (NFS, a cluster volume)"
        )
    _CHECKED.add(str(run_dir))
