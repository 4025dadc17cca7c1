"""The Ray executor on an embedded 2-CPU cluster: the same parts, items and stage outputs as
the local executor, resumes that skip what is written, and keys recorded by the driver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest

ray = pytest.importorskip("ray")

from raykit import stage_context  # noqa: E402

from paretohqd.config import load_config  # noqa: E402
from paretohqd.executor import Item, LocalExecutor, read_item_keys  # noqa: E402
from paretohqd.manifest import Manifest  # noqa: E402
from paretohqd.ray_executor import RayExecutor  # noqa: E402
from paretohqd.runner import Runner  # noqa: E402

pytestmark = pytest.mark.ray


def _ctx(tmp_path: Path, kind: str = "ray", **executor: Any) -> Any:
    return stage_context(tmp_path, executor={"kind": kind, **executor})


def square_part(spec: dict[str, Any], index: int) -> pl.DataFrame:
    """A part worker; ``spec["log"]`` records which parts ran (workers are other processes)."""
    with open(spec["log"], "a") as fh:
        fh.write(f"{index}\n")
    return pl.DataFrame({"i": [index], "y": [index * index * spec["scale"]]})


def _ran(log: Path) -> list[int]:
    return sorted(int(x) for x in log.read_text().split()) if log.exists() else []


def test_parts_on_ray_equal_local_and_resume_what_is_missing(tmp_path: Path) -> None:
    local, remote = _ctx(tmp_path / "l", "local"), _ctx(tmp_path / "r")
    spec = {"scale": 3, "log": str(tmp_path / "local.log")}
    LocalExecutor().map_parts(local, square_part, spec, 7)
    # Parts 0-2 exist from an earlier (killed) attempt: only the other four are submitted.
    spec_r = {"scale": 3, "log": str(tmp_path / "ray.log")}
    store = remote.parts()
    LocalExecutor().map_parts(remote, square_part, spec_r, 3, store=store)
    (tmp_path / "ray.log").unlink()
    run = RayExecutor(remote.config.executor).map_parts(remote, square_part, spec_r, 7)
    assert (run.parts, run.resumed) == (7, 3)
    assert _ran(tmp_path / "ray.log") == [3, 4, 5, 6]
    read = [pl.read_parquet(p) for p in remote.parts().paths()]
    assert pl.concat(read).equals(pl.concat([pl.read_parquet(p) for p in local.parts().paths()]))


def square_group(spec: dict[str, Any], members: list[int]) -> list[pl.DataFrame]:
    """A part-group worker: several parts from one call, each marked with its group."""
    with open(spec["log"], "a") as fh:
        fh.write(f"{min(members)}\n")
    return [pl.DataFrame({"i": [i], "group": [str(members)]}) for i in members]


def test_part_groups_on_ray_equal_local_and_run_whole_when_a_part_is_missing(
    tmp_path: Path,
) -> None:
    local, remote = _ctx(tmp_path / "l", "local"), _ctx(tmp_path / "r")
    groups = [(0, 3), (1, 2), (4,), (5, 6)]
    spec = {"log": str(tmp_path / "local.log")}
    LocalExecutor().map_parts(local, square_part, spec, 7, groups=groups, group=square_group)
    spec_r = {"log": str(tmp_path / "ray.log")}
    store = remote.parts()
    # Parts 0 and 1 exist from an earlier attempt: groups (1, 2) and (0, 3) run whole anyway,
    # (4,) and (5, 6) too; no group is complete.
    LocalExecutor().map_parts(
        remote, square_part, spec_r, 2, store=store, groups=[(0,), (1,)], group=square_group
    )
    (tmp_path / "ray.log").unlink()
    run = RayExecutor(remote.config.executor).map_parts(
        remote, square_part, spec_r, 7, groups=groups, group=square_group
    )
    assert (run.parts, run.resumed) == (7, 2)
    assert _ran(tmp_path / "ray.log") == [0, 1, 4, 5]
    got = pl.concat([pl.read_parquet(p) for p in remote.parts().paths()])
    assert got["i"].to_list() == list(range(7))
    want = pl.concat([pl.read_parquet(p) for p in local.parts().paths()])
    assert got.slice(2).equals(want.slice(2))
    assert got["group"].to_list()[:2] == ["[0]", "[1]"]  # kept, not rewritten


def dying_part(spec: dict[str, Any], index: int) -> pl.DataFrame:
    """``square_part``, but the worker process dies (``os._exit``) in part 2 the first time."""
    import os

    flag = Path(spec["flag"])
    if index == 2 and not flag.exists():
        flag.write_text("died once")
        os._exit(1)
    return square_part(spec, index)


def test_a_worker_killed_mid_part_is_restarted_and_the_parts_are_the_same(tmp_path: Path) -> None:
    local, remote = _ctx(tmp_path / "l", "local"), _ctx(tmp_path / "r")
    LocalExecutor().map_parts(local, square_part, {"scale": 5, "log": str(tmp_path / "l.log")}, 5)
    spec = {"scale": 5, "log": str(tmp_path / "r.log"), "flag": str(tmp_path / "died")}
    run = RayExecutor(remote.config.executor).map_parts(remote, dying_part, spec, 5)
    assert (tmp_path / "died").exists()  # the worker did die once, in part 2
    assert (run.parts, run.resumed) == (5, 0)
    assert sorted(set(_ran(tmp_path / "r.log"))) == [0, 1, 2, 3, 4]
    got = pl.concat([pl.read_parquet(p) for p in remote.parts().paths()])
    assert got.equals(pl.concat([pl.read_parquet(p) for p in local.parts().paths()]))


def make_item(spec: dict[str, Any], item: Item, key: str, target: Path) -> dict[str, Any]:
    """An item worker: writes ``target`` whole and atomically, as the training workers do."""
    from paretohqd.atomic import atomic_path

    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "value.json").write_text(json.dumps({"id": item.id, "x": item.payload}))
    return {"x": item.payload * spec["scale"]}


def test_items_on_ray_are_made_once_and_keyed_by_the_driver(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, stages={"toy": {"max_parallel": 2}})
    items = [Item(p, {"x": i}, payload=i) for i, p in enumerate(["a", "b", "c"])]
    root = tmp_path / "items"
    ray_exec = RayExecutor(ctx.config.executor)
    first = ray_exec.map_items(ctx, make_item, {"scale": 2}, items, root)
    assert first.made == ["a", "b", "c"] and first.metrics["c"] == {"x": 4}
    assert set(read_item_keys(root)) == {"a", "b", "c"}
    changed = [items[0], Item("b", {"x": 9}, payload=9), Item("d", {"x": 3}, payload=3)]
    second = ray_exec.map_items(ctx, make_item, {"scale": 2}, changed, root)
    assert (second.made, second.kept, second.removed) == (["b", "d"], ["a"], ["c"])
    local_root = tmp_path / "local"
    LocalExecutor().map_items(_ctx(tmp_path, "local"), make_item, {"scale": 2}, changed, local_root)
    for name in ("a", "b", "d"):
        assert (root / name / "value.json").read_text() == (
            local_root / name / "value.json"
        ).read_text()
    assert read_item_keys(root) == read_item_keys(local_root)


def _score_config(tmp_path: Path, kind: str) -> Path:
    rows = [
        {"prompt": f"Question {i}?", "response": f"Answer {i} " + "w " * (i % 7)} for i in range(40)
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "paretohqd.toml").write_text(
        '[run]\nname = "t"\n[ingest]\nheldout_fraction = 0.0\n'
        '[[ingest.sources]]\nkind = "table"\npath = "d.jsonl"\n'
        '[[objectives]]\nname = "concise"\nscorer = "heuristic"\n'
        'options = { metric = "conciseness", target = 5 }\n'
        '[[objectives]]\nname = "long"\nscorer = "heuristic"\noptions = { metric = "verbosity" }\n'
        f'[score]\npart_size = 8\n[executor]\nkind = "{kind}"\n'
    )
    return tmp_path / "paretohqd.toml"


def test_the_score_stage_on_ray_writes_the_local_bytes(tmp_path: Path) -> None:
    (tmp_path / "l").mkdir(), (tmp_path / "r").mkdir()
    local = load_config(_score_config(tmp_path / "l", "local"))
    remote = load_config(_score_config(tmp_path / "r", "ray"))
    Runner(local).run(until="score")
    Runner(remote).run(until="score")
    assert (remote.run_dir / "scores.parquet").read_bytes() == (
        local.run_dir / "scores.parquet"
    ).read_bytes()
    # The executor is speed only: switching it back leaves the stages that ran fresh.
    plan = Runner(load_config(_score_config(tmp_path / "r", "local"))).plan()
    assert {i.stage.name: i.state for i in plan if i.stage.name in ("ingest", "score")} == {
        "ingest": "fresh",
        "score": "fresh",
    }
    assert Manifest(remote.run_dir).get("score") is not None


def test_a_run_root_a_node_cannot_see_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage check: the embedded cluster sees the run directory; a node that reads
    another file system (simulated: the nonce reads back empty) stops the run in one line."""
    import paretohqd.ray_executor as rx
    from paretohqd.errors import StageError

    run_dir = tmp_path / "run"
    rx.check_shared_storage(ray, run_dir)
    assert not list(run_dir.glob(".ray-storage-*"))  # the nonce file is removed
    monkeypatch.setattr(rx, "_CHECKED", set())
    monkeypatch.setattr(rx, "_read_nonce", lambda path: "")
    with pytest.raises(StageError, match=r"run.root is not shared: node\(s\) .* cannot read"):
        rx.check_shared_storage(ray, run_dir)
