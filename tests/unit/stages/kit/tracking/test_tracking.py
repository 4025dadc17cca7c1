"""Trackers: each adapter's steps stream to a real backend (TensorBoard; W&B offline when it is
installed) and read back equal to the adapter's saved log; ``[tracking]`` is validated and
enters no fingerprint."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from paretohqd.config import config_from_dict, load_config
from paretohqd.errors import ConfigError
from paretohqd.stages.kit.tracking import AdapterRun, TrackingSpec, open_tracker, tracking_spec
from paretohqd.stages.kit.tracking.backends import require
from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings

ROWS = [
    ("\n\nHuman: What colour is the sky?\n\nAssistant:", " The sky is blue."),
    ("\n\nHuman: What do cats say?\n\nAssistant:", " Cats say meow."),
    ("\n\nHuman: Where is Tom?\n\nAssistant:", " Tom is at home."),
]
FAST = SFTSettings(steps=4, batch_size=2, lr=1e-2, max_length=64, seed=0, threads=1)


def _scalars(directory: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every ``tag`` event TensorBoard reads from ``directory``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _spec(tmp_path: Path) -> TrackingSpec:
    return TrackingSpec("tensorboard", "paretohqd", "demo", str(tmp_path / "tb"))


def test_tensorboard_receives_every_step_of_the_loop(tiny_policy: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from paretohqd.stages.kit.training.loop import train_adapter

    run = AdapterRun("paretohqd_round1", tracking=_spec(tmp_path)).of("pref-030-070", [0.3, 0.7])
    train_adapter(str(tiny_policy), SftObjective(ROWS), FAST, tmp_path / "a", run=run)
    log = pl.read_parquet(tmp_path / "a" / "training_log.parquet")
    events = tmp_path / "tb" / "demo" / "paretohqd_round1" / "pref-030-070"
    got = _scalars(events, "loss")
    assert [s for s, _ in got] == log["step"].to_list() == [0, 1, 2, 3]
    assert [v for _, v in got] == pytest.approx(log["loss"].to_list(), rel=1e-6)
    assert [v for _, v in _scalars(events, "lr")] == pytest.approx(log["lr"].to_list())


def test_tensorboard_tracks_each_adapter_of_a_fused_pass(tiny_policy: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from paretohqd.stages.kit.training.fused import FusedJob, train_fused

    base = AdapterRun("modpo", tracking=_spec(tmp_path))
    jobs = [
        FusedJob(SftObjective(rows), tmp_path / pref, pref, run=base.of(pref, w))
        for pref, rows, w in (("pref-a", ROWS, [1, 0]), ("pref-b", ROWS[::-1], [0, 1]))
    ]
    assert train_fused(str(tiny_policy), jobs, FAST, lambda *_: None) is None
    losses = {}
    for pref in ("pref-a", "pref-b"):
        losses[pref] = pl.read_parquet(tmp_path / pref / "training_log.parquet")["loss"].to_list()
        got = _scalars(tmp_path / "tb" / "demo" / "modpo" / pref, "loss")
        assert [v for _, v in got] == pytest.approx(losses[pref], rel=1e-6)
    assert losses["pref-a"] != losses["pref-b"]  # each run got its own adapter's steps


def test_a_failed_adapter_closes_its_run(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    run = AdapterRun("sft", "pref-x", tracking=_spec(tmp_path))
    with pytest.raises(RuntimeError), open_tracker(run) as tracker:
        tracker.log(0, {"loss": 2.0})
        raise RuntimeError("diverged")
    assert _scalars(tmp_path / "tb" / "demo" / "sft" / "pref-x", "loss") == [(0, 2.0)]


def test_titles_and_names_say_method_and_preference() -> None:
    run = AdapterRun("paretohqd_round1").of("pref-030-070", [0.3, 0.7])
    assert run.name == "paretohqd_round1/pref-030-070"
    assert run.title == "paretohqd_round1 · pref 0.30/0.70"
    assert AdapterRun("sft_init").title == "sft_init"


def _config(tmp_path: Path, tracking: dict[str, Any] | None) -> Any:
    data: dict[str, Any] = {
        "run": {"name": "r"},
        "ingest": {"sources": [{"kind": "table", "path": "x"}]},
    }
    if tracking is not None:
        data["tracking"] = tracking
    return config_from_dict(data, base_dir=tmp_path, source="t.toml")


def test_tracking_spec_resolves_defaults(tmp_path: Path) -> None:
    assert tracking_spec(_config(tmp_path, None)) is None
    pytest.importorskip("tensorboard")
    spec = tracking_spec(_config(tmp_path, {"backend": "tensorboard"}))
    assert spec is not None
    assert (spec.group, spec.project) == ("r", "paretohqd")
    assert Path(spec.log_dir) == tmp_path / "runs" / "r" / "tracking"


def load_config_text(tmp_path: Path, extra: str) -> Any:
    path = tmp_path / "paretohqd.toml"
    path.write_text('[ingest]\nsources = [{ kind = "table", path = "x" }]\n' + extra)
    return load_config(path)


def test_tracking_table_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tracking\.backend"):
        load_config_text(tmp_path, '[tracking]\nbackend = "neptune"\n')
    with pytest.raises(ConfigError, match="choose a backend"):
        load_config_text(tmp_path, '[tracking]\noptions = { mode = "offline" }\n')


def test_a_missing_backend_names_its_extra() -> None:
    from paretohqd.stages.kit.tracking.backends import PACKAGES

    absent = [b for b, pkg in PACKAGES.items() if importlib.util.find_spec(pkg) is None]
    if not absent:
        pytest.skip("every tracker package is installed")
    with pytest.raises(ConfigError, match=rf'pip install "paretohqd\[{absent[0]}\]"'):
        require(absent[0])


def test_tracking_enters_no_fingerprint(tmp_path: Path) -> None:
    """The demo's whole graph plans the same fingerprints with and without a tracker: turning
    one on retrains nothing."""
    import tomllib

    from testpaths import REPO

    from paretohqd.runner import Runner

    def plan(tracking: dict[str, Any] | None) -> dict[str, str]:
        data = tomllib.loads((REPO / "paretohqd.toml").read_text())
        data["run"]["root"] = str(tmp_path / "runs")
        if tracking is not None:
            data["tracking"] = tracking
        config = config_from_dict(data, base_dir=REPO, source="paretohqd.toml")
        return {item.stage.name: item.fingerprint for item in Runner(config).plan()}

    plain = plan(None)
    assert {"sft", "sft_round2", "modpo", "raco", "pama", "evaluate"} <= set(plain)
    tracked = {"backend": "wandb", "project": "p", "group": "g", "options": {"mode": "offline"}}
    assert plan(tracked) == plain


def _wandb_history(path: Path) -> tuple[str, list[tuple[int, float]]]:
    """The run name and (step, loss) rows of an offline ``.wandb`` file: LevelDB-style log
    blocks (7-byte header, then records of crc, length, type) of ``wandb_internal`` protobuf
    records. wandb >= 0.20 ships no Python reader of its own."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf, name, rows = 7, b"", "", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        buf, pos = buf + data[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind not in (1, 4):  # FULL or LAST: a whole record
            continue
        rec = pb.Record()
        rec.ParseFromString(buf)
        buf = b""
        if rec.WhichOneof("record_type") == "run":
            name = rec.run.display_name
        elif rec.WhichOneof("record_type") == "history":
            row = {
                i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item
            }
            rows.append((row["_step"], row["loss"]))
    return name, rows


def test_wandb_offline_holds_one_run_per_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two adapters' runs open at once (the fused trainer's case), offline: each run file holds
    its own steps under its own name."""
    pytest.importorskip("wandb")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    spec = TrackingSpec("wandb", "paretohqd", "demo", str(tmp_path / "wb"), {"mode": "offline"})
    runs = [AdapterRun("modpo", tracking=spec).of(p) for p in ("pref-a", "pref-b")]
    with open_tracker(runs[0], {"lr": 0.1}) as a, open_tracker(runs[1], {"lr": 0.1}) as b:
        for step in range(3):
            a.log(step, {"loss": 1.0 + step})
            b.log(step, {"loss": 10.0 + step})
    found = dict(_wandb_history(f) for f in (tmp_path / "wb").glob("wandb/offline-run-*/*.wandb"))
    assert found == {
        "modpo/pref-a": [(0, 1.0), (1, 2.0), (2, 3.0)],
        "modpo/pref-b": [(0, 10.0), (1, 11.0), (2, 12.0)],
    }
