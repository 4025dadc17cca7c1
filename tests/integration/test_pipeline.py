"""The whole pipeline on a tiny config: every stage for real, then a rerun that skips them all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from testpaths import DATA

from paretohqd.catalog import connect
from paretohqd.config import load_config
from paretohqd.manifest import Manifest
from paretohqd.registry import artifacts_of, build_graph
from paretohqd.runner import Runner

STAGES = [
    "ingest",
    "reward_heads",
    "score",
    "pareto",
    "select",
    "select_linear",
    "base_model",
    "sft",
    "sft_linear",
    "sft_init",
    "regenerate",
    "score_round2",
    "pareto_round2",
    "select_round2",
    "sft_round2",
    "pama",
    "pairs",
    "modpo",
    "raco",
    "evaluate",
]

TOK = DATA / "stories260K/tok512.bin"
CKPT = DATA / "stories260K/stories260K.bin"
TOK = DATA / "stories260K/tok512.bin"
TAIL = f"""
[[reward_heads]]
name = "harmless"
sources = ["hh"]
min_accuracy = 0.0  # tiny data: the gate has its own test
options = {{ epochs = 10 }}

[[objectives]]
name = "harmless"
scorer = "embedding-head"
model = "run:reward_heads/harmless"

[[objectives]]
name = "concise"
scorer = "heuristic"
options = {{ metric = "conciseness", target = 40 }}

[select]
k = 4
step = 0.5
compare_linear = true

[policy]
llama2c = {{ checkpoint = "{CKPT}", tokenizer = "{TOK}" }}
device = "cpu"

[sft]
steps = 3
round2_steps = 2
max_length = 96
lr = 3e-3

[generation]
max_new_tokens = 8
batch_size = 8

[regenerate]
prompts = 6
part_size = 3

[modpo]
steps = 2
batch_size = 2

[raco]
steps = 2
batch_size = 2

[pama]
steps = 1
batch_size = 2
max_new_tokens = 8

[evaluate]
prompts = 3
part_size = 2
n_boot = 50
"""


def adapter_dirs(run: Path) -> list[Path]:
    """Round one's adapter directories."""
    return sorted(p for p in (run / "adapters/round1").iterdir() if p.is_dir())


def test_every_stage_then_everything_skipped(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_config.write_text(tiny_config.read_text() + TAIL)
    config = load_config(tiny_config)
    results = Runner(config).run()
    assert {outcome for _, outcome, _ in results} == {"ran"}
    order = [name for name, _, _ in results]
    assert sorted(order) == sorted(STAGES)
    graph = build_graph(config)
    producer = {a.name: s.name for s in graph for a in s.outputs}
    for stage in graph:  # every stage ran after the stages it reads from
        assert all(order.index(producer[i]) < order.index(stage.name) for i in stage.inputs)
    run = config.run_dir
    prefs = ["pref-000-100", "pref-050-050", "pref-100-000"]
    for root in ("round1", "round2", "linear", "modpo", "raco", "pama"):
        adapters = (run / "adapters" / root).iterdir()
        assert sorted(p.name for p in adapters if p.is_dir()) == prefs, root
    con = connect(run, artifacts_of(build_graph(config)).values())
    shards = con.execute("select pref_id, count(*) from shards group by 1 order by 1").fetchall()
    assert shards == [(p, 4) for p in prefs]
    round2 = con.execute("select distinct pref_id from shards_round2 order by 1").fetchall()
    assert [r[0] for r in round2] == prefs
    summary = pl.read_parquet(run / "eval/summary.parquet")
    assert set(summary["method"]) == {
        "base",
        "sft_init",
        "paretohqd_round1",
        "paretohqd",
        "linear_round1",
        "modpo",
        "raco",
        "pama",
    }
    assert (run / "eval/report.html").read_text().count("data:image/png;base64") >= 1
    stages = Manifest(run).stages
    assert stages["select"]["metadata"]["mode"] == "ray"
    assert stages["select_linear"]["metadata"]["mode"] == "linear"
    hv = stages["evaluate"]["metadata"]["hypervolume"]
    assert set(hv) == set(summary["method"])
    assert stages["select"]["metadata"]["overlap"]["rows"] == 12

    # The baselines start from the shared SFT model and refer to it; ParetoHqD from the base.
    assert (run / "models/sft_init/config.json").exists()
    assert (run / "models/sft_init/adapter/adapter_config.json").exists()
    methods = pl.read_parquet(run / "eval/methods.parquet")
    start = dict(zip(methods["method"], methods["start"], strict=True))
    assert start["modpo"] == start["raco"] == start["pama"] == "sft"
    assert start["paretohqd"] == start["paretohqd_round1"] == "base"
    assert methods.filter(pl.col("method") == "paretohqd")["steps"].item() == 3 * (3 + 2)
    assert (methods["hv_lo"] <= methods["hv_hi"]).all()

    # The CLI shows the overlap, the comparison with intervals, and the selection plot.
    from typer.testing import CliRunner

    from paretohqd.cli import app

    cli = CliRunner()
    out = cli.invoke(app, ["summary", "-c", str(tiny_config)])
    assert out.exit_code == 0, out.output
    assert "shard overlap" in out.output and "select_round2" in out.output
    out = cli.invoke(app, ["report", "-c", str(tiny_config)])
    assert out.exit_code == 0, out.output
    assert "HV interval" in out.output and "sft_init" in out.output
    out = cli.invoke(app, ["plot", "selection", "-c", str(tiny_config)])
    assert out.exit_code == 0, out.output
    assert (run / "plots/selection_round1.png").stat().st_size > 10_000
    # A config naming fewer objectives than the run was built with: the plot draws the run's.
    fewer = ["--set", 'pareto.objectives=["concise"]', "-o", str(run / "plots/fewer.png")]
    out = cli.invoke(app, ["plot", "selection", "-c", str(tiny_config), *fewer])
    assert out.exit_code == 0, out.output
    assert (run / "plots/fewer.png").stat().st_size > 10_000

    again = Runner(load_config(tiny_config)).run()
    assert {outcome for _, outcome, _ in again} == {"skipped"}

    # Forced, a per-preference stage trains every adapter again, and training is deterministic:
    # the same weights, bit for bit (unforced, unchanged items are kept: test_executor.py).
    before = {p.name: (p / "adapter_model.safetensors").read_bytes() for p in adapter_dirs(run)}
    Runner(load_config(tiny_config)).run(only=["sft"], force=True)
    assert sorted(Manifest(run).stages["sft"]["metadata"]["trained"]) == prefs
    after = {p.name: (p / "adapter_model.safetensors").read_bytes() for p in adapter_dirs(run)}
    assert after == before

    # Interrupted after its first part, then resumed in a fresh stage run, regenerate and
    # evaluate give exactly the values of the uninterrupted run (not just the row counts).
    import paretohqd.stages.evaluate.stage as evaluate_stage
    import paretohqd.stages.regenerate.stage as regenerate_stage

    for spec_class, output in (
        (regenerate_stage.RegenerateSpec, "generations.parquet"),
        (evaluate_stage.EvaluateSpec, "eval/generations.parquet"),
    ):
        whole = pl.read_parquet(run / output)
        stage = "regenerate" if spec_class is regenerate_stage.RegenerateSpec else "evaluate"
        real = spec_class.finish

        def one_then_stop(spec: object, index: int, result: object, real: object = real) -> object:
            if index > 0:
                raise KeyboardInterrupt
            return real(spec, index, result)  # type: ignore[operator]

        with monkeypatch.context() as patch:
            patch.setattr(spec_class, "finish", one_then_stop)
            with pytest.raises(KeyboardInterrupt):
                Runner(load_config(tiny_config)).run(only=[stage], force=True)
        Runner(load_config(tiny_config)).run(only=[stage], force=True)
        assert pl.read_parquet(run / output).equals(whole), stage

    # Evaluation is seeded: forcing it again reproduces the numbers exactly. A failure while
    # building the report keeps the generated parts, and the rerun reuses them.
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("report failed")

    with monkeypatch.context() as patch:
        patch.setattr(evaluate_stage, "build_outputs", broken)
        with pytest.raises(RuntimeError, match="report failed"):
            Runner(load_config(tiny_config)).run(only=["evaluate"], force=True)
    assert list((run / ".parts" / "evaluate").rglob("*.parquet"))
    Runner(load_config(tiny_config)).run(only=["evaluate"], force=True)
    assert pl.read_parquet(run / "eval/summary.parquet").equals(summary)
    assert Manifest(run).stages["evaluate"]["metadata"]["models"] > 0

    check_adding_preferences_reuses_work(tiny_config)


#: The stages that train per-preference adapters and the method each one's models report as.
METHOD_STAGES = {
    "sft": "paretohqd_round1",
    "sft_round2": "paretohqd",
    "sft_linear": "linear_round1",
    "modpo": "modpo",
    "raco": "raco",
    "pama": "pama",
}


def check_adding_preferences_reuses_work(config_path: Path) -> None:
    """Two preferences more on the grid: only what they change is made again. Adapters are
    trained for the new preferences and for those whose data changed (a larger grid grows the
    pool); regenerate generates only for representatives that were retrained, and evaluate
    only for models that are new or whose weights changed: every other model's rows stay
    exactly as they were."""
    from paretohqd.stages.evaluate.stage import model_groups, models_to_evaluate
    from paretohqd.stages.kit.policy.generate import mixed_groups

    run = load_config(config_path).run_dir
    mix = load_config(config_path).generation.mix_adapters
    before = Manifest(run).stages
    old_models = models_to_evaluate(Runner(load_config(config_path)).context("evaluate"))
    old = pl.read_parquet(run / "eval/generations.parquet")
    old_index = {r["pref_id"]: r["selection_hash"] for r in _selection(run).iter_rows(named=True)}
    config_path.write_text(config_path.read_text().replace("step = 0.5", "step = 0.25"))
    Runner(load_config(config_path)).run()
    stages = Manifest(run).stages
    changed = {
        r["pref_id"]
        for r in _selection(run).iter_rows(named=True)
        if old_index.get(r["pref_id"]) != r["selection_hash"]
    }
    assert {"pref-025-075", "pref-075-025"} <= changed
    assert set(stages["sft"]["metadata"]["trained"]) == changed
    assert set(stages["sft"]["metadata"]["kept"]) == set(old_index) - changed != set()

    reps = stages["regenerate"]["metadata"]["representatives"]
    assert reps == before["regenerate"]["metadata"]["representatives"]
    # A part is reused when no representative of its mixed-adapter group was retrained.
    regen = stages["regenerate"]["metadata"]["parts"]
    chunks = regen["total"] // len(reps)
    groups = mixed_groups([(p, "base") for p in reps], chunks, mix)
    clean = sum(len(g) for g in groups if not {reps[i // chunks] for i in g} & changed)
    assert regen["reused"] == clean < regen["total"]

    retrained = {
        (method, pref)
        for stage, method in METHOD_STAGES.items()
        for pref in stages[stage]["metadata"]["trained"]
    }
    models = {(m, p) for m, p in old.select("method", "pref_id").unique().iter_rows()}
    assert {("base", "base"), ("sft_init", "sft_init")} <= models - retrained
    # Reused: the parts of every group that existed before and holds no retrained model (at
    # least those: a retrained adapter with the very same weights is reused too).
    parts = stages["evaluate"]["metadata"]["parts"]
    eval_chunks = parts["total"] // stages["evaluate"]["metadata"]["models"]
    new_models = models_to_evaluate(Runner(load_config(config_path)).context("evaluate"))

    def sets(listed: list[Any]) -> set[tuple[tuple[str, str], ...]]:
        return {
            tuple(tuple(listed[i // eval_chunks][:2]) for i in g)
            for g in model_groups(listed, eval_chunks, mix)
        }

    clean_sets = {s for s in sets(new_models) & sets(old_models) if not set(s) & retrained}
    unchanged = sorted({m for s in clean_sets for m in s})
    assert unchanged and eval_chunks * len(unchanged) <= parts["reused"] < parts["total"]
    keys = pl.DataFrame(unchanged, schema=["method", "pref_id"], orient="row")
    kept = old.join(keys, on=["method", "pref_id"], how="semi")
    new = pl.read_parquet(run / "eval/generations.parquet")
    assert new.join(kept, on=list(kept.columns), how="semi").height == kept.height


def _selection(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "selection.parquet").select("pref_id", "selection_hash").unique()
