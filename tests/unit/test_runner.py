"""The incremental runner: fingerprints, skipping, staleness reasons, interruption, locking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from paretohqd.atomic import write_parquet
from paretohqd.config import config_from_dict
from paretohqd.errors import LockError, StageError
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner
from paretohqd.stage import Artifact, Stage, StageContext


def _config(tmp_path: Path, seed: int = 0) -> Any:
    return config_from_dict(
        {
            "run": {"name": "r", "seed": seed},
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
        },
        base_dir=tmp_path,
        source="test",
    )


class Toy:
    """A four-stage graph a -> b -> c and a -> d whose params come from ``knobs``."""

    def __init__(self) -> None:
        self.knobs = {"a": 1, "b": 1, "c": 1, "d": 1}
        self.calls: list[str] = []
        self.fail_in: str | None = None

    def _fn(self, name: str, upstream: str | None) -> Any:
        def fn(ctx: StageContext) -> dict[str, Any]:
            self.calls.append(name)
            base = pl.read_parquet(ctx.path(upstream))["x"] if upstream else pl.Series([0, 1, 2])
            if self.fail_in == name:
                raise KeyboardInterrupt
            write_parquet(ctx.path(name), pl.DataFrame({"x": base + self.knobs[name]}))
            return {"knob": self.knobs[name]}

        return fn

    def stages(self) -> list[Stage]:
        def mk(name: str, upstream: str | None) -> Stage:
            return Stage(
                name=name,
                fn=self._fn(name, upstream),
                inputs=(upstream,) if upstream else (),
                outputs=(Artifact(name, f"{name}.parquet"),),
                params=lambda c, n=name: {"toy": {n: self.knobs[n]}, "run": {"seed": c.run.seed}},
            )

        return [mk("a", None), mk("b", "a"), mk("c", "b"), mk("d", "a")]


def test_unchanged_config_skips_everything(tmp_path: Path) -> None:
    toy = Toy()
    runner = Runner(_config(tmp_path), toy.stages())
    first = runner.run()
    assert [r[1] for r in first] == ["ran"] * 4
    toy.calls.clear()
    second = Runner(_config(tmp_path), toy.stages()).run()
    assert [r[1:] for r in second] == [("skipped", "fresh")] * 4
    assert toy.calls == []


def test_param_change_reruns_stage_and_descendants_only(tmp_path: Path) -> None:
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    toy.knobs["b"] = 5
    plan = {i.stage.name: i for i in Runner(_config(tmp_path), toy.stages()).plan()}
    assert plan["a"].state == "fresh" and plan["d"].state == "fresh"
    assert plan["b"].state == "stale" and plan["b"].reasons == ["param toy.b: 1 → 5"]
    assert plan["c"].state == "stale"
    assert plan["c"].reasons == ["input `b` is remade upstream first"]
    toy.calls.clear()
    Runner(_config(tmp_path), toy.stages()).run()
    assert toy.calls == ["b", "c"]
    assert pl.read_parquet(tmp_path / "runs/r/c.parquet")["x"].to_list() == [7, 8, 9]


def test_identical_outputs_keep_downstream_fresh(tmp_path: Path) -> None:
    """Inputs enter fingerprints by content: a stage that runs again and writes the same
    bytes (here: a parameter its output ignores changed) leaves its consumers fresh."""
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    stages = toy.stages()
    b = stages[1]
    stages[1] = Stage(
        name=b.name,
        fn=b.fn,
        inputs=b.inputs,
        outputs=b.outputs,
        params=lambda c: {"toy": {"b": 1, "comment": "same output"}},
    )
    toy.calls.clear()
    rows = Runner(_config(tmp_path), stages).run()
    assert toy.calls == ["b"]
    assert [r[:2] for r in rows] == [
        ("a", "skipped"),
        ("b", "ran"),
        ("c", "skipped"),
        ("d", "skipped"),
    ]
    manifest = Manifest(tmp_path / "runs/r")
    content = manifest.get("b")["outputs"]["b"]["content"]  # type: ignore[index]
    assert manifest.get("c")["components"]["inputs"] == {"b": f"content:{content}"}  # type: ignore[index]


def test_changed_output_content_reruns_consumers(tmp_path: Path) -> None:
    """The same stage fingerprint but other bytes on disk after a forced run (a
    non-deterministic stage) reruns the consumers: they are keyed on what they read."""
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    toy.knobs["a"] = 2  # the function now writes other values under the old params
    stages = toy.stages()
    stages[0] = Stage(
        name="a",
        fn=stages[0].fn,
        outputs=stages[0].outputs,
        params=lambda c: {"toy": {"a": 1}, "run": {"seed": c.run.seed}},
    )
    toy.calls.clear()
    Runner(_config(tmp_path), stages).run(only=["a"], force=True)
    plan = {i.stage.name: i for i in Runner(_config(tmp_path), stages).plan()}
    assert plan["a"].state == "fresh"
    assert plan["b"].reasons == ["input `a` changed upstream"]
    assert plan["d"].reasons == ["input `a` changed upstream"]


def test_shared_param_change_reruns_everything(tmp_path: Path) -> None:
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    toy.calls.clear()
    Runner(_config(tmp_path, seed=1), toy.stages()).run()
    assert toy.calls == ["a", "b", "c", "d"]


def test_selection_flags(tmp_path: Path) -> None:
    toy = Toy()
    runner = Runner(_config(tmp_path), toy.stages())
    runner.run(until="b")
    assert toy.calls == ["a", "b"]
    toy.calls.clear()
    runner.run(only=["d"])
    assert toy.calls == ["d"]
    toy.calls.clear()
    runner.run(from_="b", force=True)  # b and what depends on it, not d (a sibling)
    assert toy.calls == ["b", "c"]
    toy.calls.clear()
    runner.run(until="d", force=True)  # d and what it needs, not b or c
    assert toy.calls == ["a", "d"]
    toy.calls.clear()
    rows = runner.run(dry_run=True, force=True)
    assert toy.calls == [] and {r[1] for r in rows} == {"would run"}
    with pytest.raises(StageError, match="no stage named 'zz'"):
        runner.run(only=["zz"])


def test_missing_input_is_a_clear_error(tmp_path: Path) -> None:
    toy = Toy()
    with pytest.raises(StageError, match="needs `a` from stage 'a'"):
        Runner(_config(tmp_path), toy.stages()).run(only=["b"])


def test_interrupted_stage_never_looks_complete_and_rerun_completes(tmp_path: Path) -> None:
    toy = Toy()
    toy.fail_in = "c"
    with pytest.raises(KeyboardInterrupt):
        Runner(_config(tmp_path), toy.stages()).run()
    manifest = Manifest(tmp_path / "runs/r")
    assert manifest.get("b") is not None and manifest.get("c") is None
    assert not (tmp_path / "runs/r/c.parquet").exists()
    plan = {i.stage.name: i for i in Runner(_config(tmp_path), toy.stages()).plan()}
    assert plan["c"].state == "missing" and "interrupted" in plan["c"].reasons[0]
    toy.fail_in = None
    toy.calls.clear()
    Runner(_config(tmp_path), toy.stages()).run()
    assert toy.calls == ["c", "d"]


def test_deleted_output_makes_stage_stale(tmp_path: Path) -> None:
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    (tmp_path / "runs/r/d.parquet").unlink()
    plan = {i.stage.name: i for i in Runner(_config(tmp_path), toy.stages()).plan()}
    assert plan["d"].state == "stale" and "d.parquet missing" in plan["d"].reasons[0]


def test_manifest_records_rows_schema_and_timing(tmp_path: Path) -> None:
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    entry = Manifest(tmp_path / "runs/r").get("b")
    assert entry is not None
    assert entry["outputs"]["b"]["rows"] == 3
    assert entry["outputs"]["b"]["schema"] == [["x", "int64"]]
    assert entry["seconds"] >= 0 and entry["cpu_seconds"] >= 0
    assert entry["metadata"] == {"knob": 1}
    assert (tmp_path / "runs/r/config.toml").exists()


def test_second_concurrent_run_refuses(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs/r"
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from pathlib import Path
            from paretohqd.lock import RunLock
            with RunLock(Path({str(run_dir)!r})):
                print("locked", flush=True)
                time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=f"pid {holder.pid}"):
            Runner(_config(tmp_path), Toy().stages()).run()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    # the kernel released the dead holder's lock: no stale lock file blocks us
    assert [r[1] for r in Runner(_config(tmp_path), Toy().stages()).run()] == ["ran"] * 4


def test_each_stage_starts_without_what_earlier_stages_loaded(tmp_path: Path) -> None:
    """A stage's results must not depend on which stages ran before it in the process."""
    from paretohqd.executor import _RELEASE_HOOKS, on_release, worker_state

    cache: dict[str, float] = {}
    hook = on_release(cache.clear)
    seen: list[Any] = []

    def first(ctx: StageContext) -> None:
        worker_state("model", "m", lambda: "loaded")
        cache["embedding"] = 1.0
        write_parquet(ctx.path("a"), pl.DataFrame({"x": [1]}))

    def second(ctx: StageContext) -> None:
        seen.append((dict(cache), worker_state("model", "m", lambda: "fresh")))
        write_parquet(ctx.path("b"), pl.DataFrame({"x": [1]}))

    stages = [
        Stage(name="a", fn=first, outputs=(Artifact("a", "a.parquet"),)),
        Stage(name="b", fn=second, inputs=("a",), outputs=(Artifact("b", "b.parquet"),)),
    ]
    try:
        Runner(_config(tmp_path), stages).run()
    finally:
        _RELEASE_HOOKS.remove(hook)
    assert seen == [({}, "fresh")]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"stages": 3}'])
def test_a_corrupt_manifest_is_one_clear_error(tmp_path: Path, text: str) -> None:
    toy = Toy()
    Runner(_config(tmp_path), toy.stages()).run()
    manifest = tmp_path / "runs" / "r" / "manifest.json"
    manifest.write_text(text)
    with pytest.raises(StageError, match=r"manifest\.json .*move it away"):
        Runner(_config(tmp_path), toy.stages()).run()
    assert manifest.read_text() == text  # nothing overwritten
