"""The executor seam: how a stage's independent units of work run.

Stages have two shapes of independent work, and each goes through one function here:

- **parts** (:meth:`Executor.map_parts`): numbered chunks of a table-producing loop (score,
  regenerate, evaluate). Part ``i`` is ``worker(spec, i)``, a table, written atomically into a
  part store (:mod:`paretohqd.parts`), so a rerun after a kill does only the parts that are
  missing. The score stages key their parts by the stage fingerprint; regenerate and evaluate
  give every part its own key (:func:`work_key` of what defines that part), so a rerun for an
  unrelated change reuses the parts of unchanged adapters.
- **items** (:meth:`Executor.map_items`): named products in their own directories, one per
  preference (adapters). The engine computes each item's key once — the stage's name, version
  and external identities (the policy's content hash, for example) plus what the stage says
  defines the item — and keeps an item whose directory exists under the same key. Keys live in
  ``<root>/.items.json``, the engine's record, so the products themselves stay standard
  (a peft adapter directory and nothing else).

Either shape can run *groups*: several parts, or several items, made by one call (mixed-adapter
generation; fused training), so they share batches. A group of parts is fixed by the stage
(not by what happens to be missing) and runs whole when any of its parts is missing; its parts
are still written, and kept, one by one. The stage keys a part on its group too, so a part is
only ever reused beside the same neighbours it was made with.

A worker is a plain module-level function of ``(spec, index)`` or ``(spec, item, key, target)``
with a picklable ``spec``: what the :class:`LocalExecutor` calls in this process is what a
distributed executor (Ray, #15) ships to its workers. Expensive state (a loaded model) is kept
per process by :func:`worker_state`, so a worker loads its model once however many parts it
runs; it lives as long as one map call (the local executor drops it when the call returns, as a
distributed executor's workers end with theirs), so no model outlives its stage.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from paretohqd.atomic import prune_dirs, write_text
from paretohqd.hashing import sha256_json

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

    from paretohqd.parts import Parts
    from paretohqd.stage import StageContext

S = TypeVar("S")
T = TypeVar("T")

#: A part worker: ``worker(spec, index) -> table``.
PartWorker = Callable[[Any, int], "pl.DataFrame | pa.Table"]
#: A part-group worker makes several parts in one pass (mixed-adapter generation):
#: ``group(spec, members) -> tables``, one table per member, in order.
PartGroupWorker = Callable[[Any, Sequence[int]], Sequence["pl.DataFrame | pa.Table"]]
#: An item worker: ``worker(spec, item, key, target) -> metrics`` writes ``target`` atomically.
ItemWorker = Callable[[Any, "Item", str, Path], Mapping[str, Any]]

#: A group worker makes several items in one pass (fused training):
#: ``group(spec, units, done)`` with ``units`` = (item, key, target) and ``done(item_id,
#: metrics)`` called as each target is written.
ItemGroupWorker = Callable[
    [Any, Sequence[tuple["Item", str, Path]], Callable[[str, Mapping[str, Any]], None]], None
]

ITEMS_FILE = ".items.json"


@dataclass(frozen=True)
class Item:
    """One named product of a stage: its directory name and what defines it.

    ``key`` holds what the stage knows defines the product (its data's hash, training settings,
    weights); the engine adds the stage's identity. ``payload`` is handed to the worker and
    does not enter the key.
    """

    id: str
    key: Mapping[str, Any]
    payload: Any = None


@dataclass
class PartsRun:
    """What :meth:`Executor.map_parts` did: parts in all, resumed from an earlier attempt."""

    parts: int
    resumed: int


@dataclass
class ItemsRun:
    """What :meth:`Executor.map_items` did: items made, items kept, removed, their metrics."""

    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)


class Executor(Protocol):
    """Runs a stage's parts and items. Implementations: :class:`LocalExecutor`."""

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
    ) -> PartsRun: ...

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
    ) -> ItemsRun: ...


def item_key(ctx: StageContext, item: Item) -> str:
    """The key of ``item`` in stage ``ctx.stage`` (:func:`work_key` of its definition)."""
    return work_key(ctx, item.key)


def work_key(ctx: StageContext, definition: Mapping[str, Any]) -> str:
    """The key of one unit of work (an item, a keyed part) of stage ``ctx.stage``: the stage's
    name, version, external identities (model and data content hashes), the content of the
    models among its inputs (a base policy the run converted, the shared SFT start), and what
    the stage says defines the unit."""
    from paretohqd.stage import MODEL_ROLES

    models = {
        name: fp
        for name, fp in ctx.input_fingerprints.items()
        if name in ctx.artifacts and ctx.artifacts[name].role in MODEL_ROLES
    }
    return str(
        sha256_json(
            {
                "stage": ctx.stage.name,
                "version": ctx.stage.version,
                "external": dict(ctx.external),
                "models": models,
                "item": dict(definition),
            }
        )
    )


def plan_items(
    ctx: StageContext, items: Sequence[Item], root: Path
) -> tuple[dict[str, str], list[Item], ItemsRun, dict[str, str]]:
    """What a map over ``items`` must do: every item's key, the items to make (key changed,
    directory missing, or a forced run), a result listing the kept ones, and the recorded keys
    that stay current."""
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{ctx.stage.name}: item ids repeat: {ids}")
    recorded = read_item_keys(root)
    keys = {item.id: item_key(ctx, item) for item in items}
    todo = [
        item
        for item in items
        if ctx.force or not (recorded.get(item.id) == keys[item.id] and (root / item.id).is_dir())
    ]
    result = ItemsRun(keys=dict(keys), kept=[item.id for item in items if item not in todo])
    current = {i: k for i, k in recorded.items() if i in keys and i in result.kept}
    return keys, todo, result, current


def finish_items(root: Path, ids: Sequence[str], current: Mapping[str, str]) -> list[str]:
    """After a map over items: remove the directories of items no longer listed, record the
    keys of the current ones, and return what was removed."""
    removed: list[str] = prune_dirs(root, set(ids))
    write_item_keys(root, {i: current[i] for i in ids if i in current})
    return removed


def plan_parts(ctx: StageContext, store: Parts | None, n_parts: int) -> tuple[Parts, list[int]]:
    """The store a map over parts writes into (the stage's own when ``store`` is None), ready
    for this attempt, and the parts it still lacks."""
    parts = store if store is not None else ctx.parts()
    parts.begin(force=ctx.force)
    return parts, [i for i in range(n_parts) if not parts.done(i)]


def plan_groups(
    n_parts: int,
    todo: Sequence[int],
    groups: Sequence[Sequence[int]] | None,
    group: PartGroupWorker | None,
) -> list[tuple[int, ...]]:
    """The calls a map over parts makes, in order: each missing part alone, or, with a
    ``group`` worker, every group of ``groups`` (a partition of the parts; each part alone when
    None) that holds a missing part."""
    if group is None:
        if groups is not None:
            raise ValueError("map_parts: groups given without a group worker")
        return [(i,) for i in todo]
    members: list[tuple[int, ...]]
    if groups is None:
        members = [(i,) for i in range(n_parts)]
    else:
        members = [tuple(int(i) for i in g) for g in groups]
    flat = sorted(i for g in members for i in g)
    if flat != list(range(n_parts)) or not all(members):
        raise ValueError(f"map_parts: groups must partition parts 0..{n_parts - 1}: {members}")
    missing = set(todo)
    return [g for g in members if missing.intersection(g)]


def run_part_call(
    worker: PartWorker, group: PartGroupWorker | None, spec: Any, members: Sequence[int]
) -> Sequence[pl.DataFrame | pa.Table]:
    """One call of a map over parts: the tables of ``members`` (one part through ``worker``,
    or a group through ``group``)."""
    if group is None:
        return [run_unit(worker, spec, members[0])]
    tables = run_unit(group, spec, list(members))
    if len(tables) != len(members):
        raise ValueError(f"a part group returned {len(tables)} tables for {len(members)} parts")
    return tables


def read_item_keys(root: Path) -> dict[str, str]:
    """The keys recorded for the items under ``root`` (empty when none are)."""
    path = root / ITEMS_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_item_keys(root: Path, keys: Mapping[str, str]) -> None:
    """Record ``keys`` as the current items under ``root`` (atomically; the driver's job)."""
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / ITEMS_FILE, json.dumps(dict(sorted(keys.items())), indent=1))


def progress_bar(total: int, initial: int, desc: str, unit: str) -> Any:
    """The stage's progress over its parts or items: a bar on a terminal, log lines off one
    (:mod:`paretohqd.progress`)."""
    from paretohqd.progress import progress

    return progress(total, desc=desc, unit=unit, initial=initial)


def parts_progress(
    ctx: StageContext, n_parts: int, todo: Sequence[int], sizes: Sequence[int] | None, unit: str
) -> tuple[Any, list[int]]:
    """The progress bar of a map over parts, started at what earlier attempts wrote, and each
    part's weight on it (``sizes``, e.g. rows; 1 each when None)."""
    weight = list(sizes) if sizes is not None else [1] * n_parts
    done = sum(weight) - sum(weight[i] for i in todo)
    return progress_bar(sum(weight), done, ctx.stage.name, unit), weight


class LocalExecutor:
    """Everything in this process, in order: today's behaviour, and the reference the other
    executors must match."""

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
        """Write every missing part ``i < n_parts`` as ``worker(spec, i)`` or, with ``group``,
        every group of ``groups`` that misses a part as ``group(spec, members)``.

        ``sizes`` (one per part, e.g. rows) drives the progress bar; parts the store already
        holds (an interrupted attempt's; a keyed store's unchanged parts unless forced) are
        skipped, and not rewritten when their group runs for a missing neighbour.
        """
        parts, todo = plan_parts(ctx, store, n_parts)
        calls, missing = plan_groups(n_parts, todo, groups, group), set(todo)
        bar, weight = parts_progress(ctx, n_parts, todo, sizes, unit)
        try:
            for members in calls:
                tables = run_part_call(worker, group, spec, members)
                for i, table in zip(members, tables, strict=True):
                    if i in missing:
                        parts.write(i, table)
                        bar.update(weight[i])
        finally:
            bar.close()
            release_worker_state()
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
        """Make every item of ``items`` under ``root/<id>`` whose recorded key differs (every
        item when the run is forced), keep the others, and remove directories of items no
        longer listed. With ``group``, two or more items to make are made by it in one call."""
        ids = [item.id for item in items]
        keys, todo, result, current = plan_items(ctx, items, root)
        bar = progress_bar(len(items), len(result.kept), ctx.stage.name, unit)
        try:
            if group is not None and len(todo) > 1:
                for item in todo:
                    current.pop(item.id, None)
                write_item_keys(root, current)  # a half-made item is never "current"

                def done(item_id: str, metrics: Mapping[str, Any]) -> None:
                    result.metrics[item_id] = dict(metrics)
                    current[item_id] = keys[item_id]
                    write_item_keys(root, current)
                    result.made.append(item_id)
                    bar.update(1)

                units = [(item, keys[item.id], root / item.id) for item in todo]
                run_unit(group, spec, units, done)
                todo = []
            for item in todo:
                current.pop(item.id, None)
                write_item_keys(root, current)  # a half-made item is never "current"
                metrics = run_unit(worker, spec, item, keys[item.id], root / item.id)
                result.metrics[item.id] = dict(metrics)
                current[item.id] = keys[item.id]
                write_item_keys(root, current)
                result.made.append(item.id)
                bar.update(1)
        finally:
            bar.close()
            release_worker_state()
        result.removed = finish_items(root, ids, current)
        return result


_STATE: dict[str, tuple[str, Any]] = {}


def worker_state(slot: str, key: Any, factory: Callable[[], T]) -> T:
    """This process's ``slot`` object for ``key``: made by ``factory`` on first use, and made
    again (after dropping the old one) when ``key`` changes.

    Workers keep their loaded models here, so a model is loaded once per process and two models
    of one slot are never in memory together.
    """
    token = sha256_json(key)
    held = _STATE.get(slot)
    if held is not None and held[0] == token:
        return held[1]  # type: ignore[no-any-return]
    _STATE.pop(slot, None)
    value = factory()
    _STATE[slot] = (token, value)
    return value


_RELEASE_HOOKS: list[Callable[[], None]] = []
_UNIT_HOOKS: list[Callable[[], None]] = []


def on_unit(hook: Callable[[], None]) -> Callable[[], None]:
    """Register ``hook`` to run before every unit of work (a part, an item), in whatever
    process runs it.

    A cache of computed values (an encoder's embeddings) clears itself here, so units share no
    computed state: a part's numbers are the same whether it runs after other parts in this
    process or alone on a Ray worker. Loaded models stay (:func:`worker_state`); only what
    they computed goes.
    """
    _UNIT_HOOKS.append(hook)
    return hook


def run_unit(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` as one unit of work: the :func:`on_unit` hooks first."""
    for hook in _UNIT_HOOKS:
        hook()
    return fn(*args)


def on_release(hook: Callable[[], None]) -> Callable[[], None]:
    """Register ``hook`` to run whenever all worker state is dropped: a process-wide cache
    (shared encoders and their embedding caches) clears itself there, so what a stage computes
    never depends on which stages ran before it in the same process."""
    _RELEASE_HOOKS.append(hook)
    return hook


def release_worker_state(slot: str | None = None) -> None:
    """Drop ``slot`` (every slot, and the registered caches, when None), freeing what it
    holds."""
    if slot is None:
        _STATE.clear()
        for hook in _RELEASE_HOOKS:
            hook()
    else:
        _STATE.pop(slot, None)


def executor_for(ctx: StageContext) -> Executor:
    """The executor ``[executor]`` chooses: this process, or a Ray cluster."""
    if ctx.config.executor.kind == "ray":
        from paretohqd.ray_executor import RayExecutor

        ray_executor: Executor = RayExecutor(ctx.config.executor)
        return ray_executor
    return LocalExecutor()
