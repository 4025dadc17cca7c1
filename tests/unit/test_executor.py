"""The executor seam: resumable parts and keyed items, run by the local executor."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from paretohqd.config import config_from_dict
from paretohqd.executor import ITEMS_FILE, Item, read_item_keys, worker_state
from paretohqd.hashing import FileHasher
from paretohqd.stage import Artifact, Stage, StageContext


def _ctx(tmp_path: Path, *, version: str = "1", external: dict[str, Any] | None = None) -> Any:
    config = config_from_dict(
        {"run": {"name": "r"}, "ingest": {"sources": [{"kind": "table", "path": "x"}]}},
        base_dir=tmp_path,
        source="test",
    )
    stage = Stage(name="toy", fn=lambda ctx: None, version=version)
    return StageContext(
        stage=stage,
        config=config,
        run_dir=tmp_path / "run",
        fingerprint="f" * 64,
        artifacts={"a": Artifact("a", "a.parquet")},
        hasher=FileHasher(tmp_path / "hashes.json"),
        external=external or {},
    )


CALLS: list[Any] = []


def square_part(spec: dict[str, int], index: int) -> pl.DataFrame:
    """A part worker: a plain module-level function of (spec, index)."""
    CALLS.append(index)
    if index == spec.get("fail_at"):
        raise KeyboardInterrupt
    return pl.DataFrame({"i": [index], "y": [index * index * spec["scale"]]})


def test_parts_resume_after_a_kill_without_loss_or_duplicates(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    CALLS.clear()
    with pytest.raises(KeyboardInterrupt):
        ctx.map_parts(square_part, {"scale": 2, "fail_at": 3}, 6)
    assert CALLS == [0, 1, 2, 3]
    CALLS.clear()
    run = ctx.map_parts(square_part, {"scale": 2}, 6)
    assert CALLS == [3, 4, 5] and (run.parts, run.resumed) == (6, 3)
    frame = pl.concat([pl.DataFrame(pl.from_arrow(t)) for t in ctx.read_parts()])
    assert frame["i"].to_list() == list(range(6))
    assert frame["y"].to_list() == [2 * i * i for i in range(6)]


def test_parts_of_another_fingerprint_are_never_reused(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    ctx.map_parts(square_part, {"scale": 1}, 3)
    other = _ctx(tmp_path)
    other.fingerprint = "e" * 64
    CALLS.clear()
    run = other.map_parts(square_part, {"scale": 5}, 3)
    assert CALLS == [0, 1, 2] and run.resumed == 0
    assert not ctx.parts().dir.exists()  # the stale directory was dropped


def keyed_part(spec: dict[str, Any], index: int) -> pl.DataFrame:
    """A part worker whose part ``index`` is defined by ``spec["defs"][index]``."""
    CALLS.append(spec["defs"][index])
    if spec["defs"][index] == spec.get("fail_on"):
        raise KeyboardInterrupt
    return pl.DataFrame({"def": [spec["defs"][index]], "scale": [spec["scale"]]})


def _keyed_run(ctx: Any, defs: list[str], **spec: Any) -> list[str]:
    """Run the keyed parts of ``defs``, complete the store, return the definitions made."""
    CALLS.clear()
    store = ctx.keyed_parts([{"def": d} for d in defs])
    ctx.map_parts(keyed_part, {"defs": defs, "scale": 1, **spec}, len(defs), store=store)
    rows = pl.concat([pl.read_parquet(p) for p in store.paths()])
    assert rows["def"].to_list() == defs  # in index order, whatever was reused
    store.complete()
    return list(CALLS)


def test_keyed_parts_are_reused_across_runs_by_their_own_definition(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    assert _keyed_run(ctx, ["a", "b", "c"]) == ["a", "b", "c"]
    # Another stage fingerprint (a preference added): only the new definition is made; the
    # parts of dropped definitions are pruned once the run completes.
    ctx.fingerprint = "e" * 64
    assert _keyed_run(ctx, ["d", "a", "c"]) == ["d"]
    root = tmp_path / "run/.parts/toy/keyed"
    assert len(list(root.glob("*.parquet"))) == 3
    # The stage's identity is part of every key: a new version makes everything again.
    assert _keyed_run(_ctx(tmp_path, version="2"), ["d", "a", "c"]) == ["d", "a", "c"]


def test_a_forced_keyed_run_redoes_completed_parts_but_resumes_an_attempt(
    tmp_path: Path,
) -> None:
    ctx = _ctx(tmp_path)
    _keyed_run(ctx, ["a", "b", "c"])
    ctx.force = True
    with pytest.raises(KeyboardInterrupt):
        _keyed_run(ctx, ["a", "b", "c"], fail_on="b")
    assert CALLS == ["a", "b"]
    assert _keyed_run(ctx, ["a", "b", "c"]) == ["b", "c"]  # "a" of the killed attempt kept
    assert _keyed_run(ctx, ["a", "b", "c"]) == ["a", "b", "c"]  # forced after completing


def square_group(spec: dict[str, Any], members: list[int]) -> list[pl.DataFrame]:
    """A part-group worker: one call for several parts, each table marked with its group."""
    CALLS.append(tuple(members))
    if spec.get("fail_at") in members:
        raise KeyboardInterrupt
    return [pl.DataFrame({"i": [i], "group": [str(members)]}) for i in members]


def test_groups_run_whole_when_a_part_is_missing_and_keep_written_parts(
    tmp_path: Path,
) -> None:
    ctx = _ctx(tmp_path)
    groups = [(0, 2), (1,), (3, 4, 5)]
    CALLS.clear()
    with pytest.raises(KeyboardInterrupt):
        ctx.map_parts(square_part, {"fail_at": 1}, 6, groups=groups, group=square_group)
    assert CALLS == [(0, 2), (1,)]
    store = ctx.parts()
    written = store._part(0).stat().st_mtime_ns
    store._part(2).unlink()  # one part of a written group lost: the group runs again
    CALLS.clear()
    run = ctx.map_parts(square_part, {}, 6, groups=groups, group=square_group)
    assert CALLS == [(0, 2), (1,), (3, 4, 5)] and run.resumed == 1
    assert store._part(0).stat().st_mtime_ns == written  # a written part is not rewritten
    frame = pl.concat([pl.DataFrame(pl.from_arrow(t)) for t in ctx.read_parts()])
    assert frame["i"].to_list() == list(range(6))
    assert frame["group"].to_list()[3:] == ["[3, 4, 5]"] * 3


def test_groups_must_partition_the_parts(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    for bad in ([(0, 1)], [(0, 1), (1, 2)], [(0, 1, 2), ()], [(0, 1, 5)]):
        with pytest.raises(ValueError, match="partition"):
            ctx.map_parts(square_part, {}, 3, groups=bad, group=square_group)
    with pytest.raises(ValueError, match="without a group worker"):
        ctx.map_parts(square_part, {}, 3, groups=[(0, 1, 2)])


def load_once(spec: dict[str, Any], index: int) -> pl.DataFrame:
    """A part worker holding a "model" in this process's worker state."""
    model = worker_state("toy.model", spec, lambda: CALLS.append("load") or "model")
    return pl.DataFrame({"i": [index], "model": [model]})


def test_worker_state_is_loaded_once_per_map_and_dropped_after(tmp_path: Path) -> None:
    CALLS.clear()
    _ctx(tmp_path).map_parts(load_once, {"m": 1}, 3)
    assert CALLS == ["load"]  # one load for every part of the map
    other = _ctx(tmp_path)
    other.fingerprint = "e" * 64
    other.map_parts(load_once, {"m": 1}, 2)
    assert CALLS == ["load", "load"]  # the first map's model did not outlive it


def make_item(spec: dict[str, Any], item: Item, key: str, target: Path) -> dict[str, Any]:
    """An item worker: writes ``target`` and returns metrics."""
    CALLS.append(item.id)
    if item.id == spec.get("fail_at"):
        raise RuntimeError("boom")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    (target / "value.json").write_text(json.dumps({"payload": item.payload, "key": key}))
    return {"payload": item.payload}


def test_items_keep_what_did_not_change_and_prune_what_left(tmp_path: Path) -> None:
    ctx, root = _ctx(tmp_path), tmp_path / "run" / "adapters"
    items = [Item(p, {"data": p, "lr": 1}, payload=p.upper()) for p in ("a", "b", "c")]
    CALLS.clear()
    run = ctx.map_items(make_item, {}, items, root)
    assert run.made == ["a", "b", "c"] and run.kept == [] and CALLS == ["a", "b", "c"]
    assert set(read_item_keys(root)) == {"a", "b", "c"}

    changed = [items[0], Item("b", {"data": "b", "lr": 2}, "B"), Item("d", {"data": "d"}, "D")]
    CALLS.clear()
    run = ctx.map_items(make_item, {}, changed, root)
    assert (run.made, run.kept, run.removed) == (["b", "d"], ["a"], ["c"])
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["a", "b", "d"]
    assert sorted(read_item_keys(root)) == ["a", "b", "d"]


def test_item_keys_carry_the_stage_version_and_external_identities(tmp_path: Path) -> None:
    root = tmp_path / "run" / "adapters"
    items = [Item("a", {"data": 1})]
    _ctx(tmp_path).map_items(make_item, {}, items, root)
    CALLS.clear()
    assert _ctx(tmp_path).map_items(make_item, {}, items, root).kept == ["a"]
    assert _ctx(tmp_path, version="2").map_items(make_item, {}, items, root).made == ["a"]
    new_base = _ctx(tmp_path, version="2", external={"policy": "sha256:other"})
    assert new_base.map_items(make_item, {}, items, root).made == ["a"]
    assert CALLS == ["a", "a"]


def test_a_failed_item_is_not_current_and_is_redone(tmp_path: Path) -> None:
    ctx, root = _ctx(tmp_path), tmp_path / "run" / "adapters"
    items = [Item("a", {"v": 1}), Item("b", {"v": 1})]
    with pytest.raises(RuntimeError):
        ctx.map_items(make_item, {"fail_at": "b"}, items, root)
    assert read_item_keys(root) == {"a": read_item_keys(root)["a"]}
    CALLS.clear()
    run = ctx.map_items(make_item, {}, items, root)
    assert run.kept == ["a"] and run.made == ["b"] and CALLS == ["b"]
    (root / ITEMS_FILE).write_text("not json")  # a damaged record means: redo everything
    assert ctx.map_items(make_item, {}, items, root).made == ["a", "b"]


def test_item_ids_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="repeat"):
        _ctx(tmp_path).map_items(make_item, {}, [Item("a", {}), Item("a", {})], tmp_path / "x")


def test_worker_state_loads_once_per_key() -> None:
    made: list[int] = []

    def factory(n: int) -> Any:
        return lambda: made.append(n) or n

    assert worker_state("test", 1, factory(1)) == 1
    assert worker_state("test", 1, factory(1)) == 1
    assert worker_state("test", 2, factory(2)) == 2
    assert made == [1, 2]


def test_a_forced_run_makes_every_item_again(tmp_path: Path) -> None:
    root = tmp_path / "run" / "adapters"
    items = [Item("a", {"v": 1}), Item("b", {"v": 1})]
    _ctx(tmp_path).map_items(make_item, {}, items, root)
    forced = _ctx(tmp_path)
    forced.force = True
    CALLS.clear()
    assert forced.map_items(make_item, {}, items, root).made == ["a", "b"]
    assert CALLS == ["a", "b"]


def test_releasing_all_state_clears_registered_caches() -> None:
    from paretohqd.executor import _RELEASE_HOOKS, on_release, release_worker_state

    cache = {"text": 1.0}
    hook = on_release(cache.clear)
    try:
        release_worker_state("some-slot")  # one slot: the caches stay
        assert cache
        release_worker_state()
        assert not cache
    finally:
        _RELEASE_HOOKS.remove(hook)


def test_every_part_and_item_starts_with_the_unit_hooks(tmp_path: Path) -> None:
    from paretohqd.executor import _UNIT_HOOKS, LocalExecutor, on_unit

    starts: list[str] = []
    hook = on_unit(lambda: starts.append("start"))
    try:
        ctx = _ctx(tmp_path)
        LocalExecutor().map_parts(ctx, square_part, {"scale": 1}, 3)
        assert starts == ["start"] * 3
        items = [Item(i, {"x": i}) for i in ("a", "b")]
        LocalExecutor().map_items(ctx, make_item, {}, items, tmp_path / "items")
        assert starts == ["start"] * 5
    finally:
        _UNIT_HOOKS.remove(hook)


def test_new_base_weights_remake_the_items_other_inputs_do_not(tmp_path: Path) -> None:
    """An adapter is keyed on the models it sits on (a converted policy, the shared start)."""
    root = tmp_path / "run" / "adapters"
    items = [Item("a", {"data": 1})]

    def ctx(base: str, shards: str) -> Any:
        c = _ctx(tmp_path)
        c.artifacts = {
            "base_model": Artifact("base_model", "models/base", kind="dir", role="policy"),
            "shards": Artifact("shards", "shards", kind="dir", role="shards"),
        }
        c.input_fingerprints = {"base_model": base, "shards": shards}
        return c

    ctx("base-1", "s-1").map_items(make_item, {}, items, root)
    assert ctx("base-1", "s-2").map_items(make_item, {}, items, root).kept == ["a"]
    assert ctx("base-2", "s-2").map_items(make_item, {}, items, root).made == ["a"]


def test_executor_settings_are_checked_and_ray_is_asked_for_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from paretohqd.errors import ConfigError
    from paretohqd.executor import LocalExecutor, executor_for
    from paretohqd.ray_executor import RayExecutor, ensure_ray
    from paretohqd.runner import Runner

    ctx = _ctx(tmp_path)
    assert isinstance(executor_for(ctx), LocalExecutor)
    ray_config = config_from_dict(
        {
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "executor": {"kind": "ray", "stages": {"scroe": {"actors": 2}}},
        },
        base_dir=tmp_path,
        source="test",
    )
    ctx.config = ray_config
    assert isinstance(executor_for(ctx), RayExecutor)
    with pytest.raises(ConfigError, match=r"executor.stages names 'scroe'.*stages: ingest"):
        Runner(ray_config)
    monkeypatch.setitem(sys.modules, "ray", None)  # not installed
    with pytest.raises(ConfigError, match=r"pip install 'paretohqd\[ray\]'"):
        ensure_ray(ray_config.executor)
