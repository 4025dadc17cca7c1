"""The CLI through typer's CliRunner: init, run, status, sql, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from paretohqd.cli import app

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_help_lists_commands() -> None:
    code, out = _invoke("--help")
    assert code == 0
    for cmd in ("init", "run", "status", "sql"):
        assert cmd in out


def test_init_writes_valid_starter(tmp_path: Path) -> None:
    code, out = _invoke("init", str(tmp_path / "proj"))
    assert code == 0 and (tmp_path / "proj/paretohqd.toml").exists()
    code, out = _invoke("init", str(tmp_path / "proj"))
    assert code == 3 and "--force" in out
    code, out = _invoke("status", "-c", str(tmp_path / "proj/paretohqd.toml"))
    assert code == 0 and "missing" in out


def test_run_status_sql_end_to_end(tiny_config: Path, tmp_path: Path) -> None:
    c = str(tiny_config)
    code, out = _invoke("run", "-c", c)
    assert code == 0, out
    assert "ingest" in out and "ran" in out
    code, out = _invoke("run", "-c", c)
    assert "skipped (fresh)" in out
    code, out = _invoke("status", "-c", c, "--set", "ingest.heldout_fraction=0.5")
    assert "stale" in out and "ingest.heldout_fraction" in out

    code, out = _invoke(
        "sql",
        "select source, count(*) as n from samples group by 1 order by 1",
        "-c",
        c,
        "--format",
        "json",
    )
    assert code == 0
    rows = json.loads(out)
    assert {r["source"] for r in rows} == {"hh", "oasst"} and all(r["n"] > 0 for r in rows)

    code, out = _invoke("sql", "select count(*) as n from preferences", "-c", c, "-f", "csv")
    assert out.splitlines()[0] == "n" and int(out.splitlines()[1]) > 0

    code, out = _invoke("sql", "--schema", "-c", c)
    assert "samples" in out and "prompt_id" in out and "quarantine" in out

    target = tmp_path / "out.parquet"
    code, out = _invoke(
        "sql", "select * from samples where split = 'eval'", "-c", c, "-o", str(target)
    )
    assert code == 0 and pl.read_parquet(target)["split"].unique().to_list() == ["eval"]


def test_sql_is_read_only_and_errors_are_short(tiny_config: Path) -> None:
    c = str(tiny_config)
    _invoke("run", "-c", c)
    code, out = _invoke("sql", "drop view samples", "-c", c)
    assert code == 3 and "read-only" in out
    code, out = _invoke("sql", "select * from nope", "-c", c)
    assert code == 3 and "views: samples" in out and "Traceback" not in out
    code, out = _invoke("sql", "select 1", "-c", c, "--format", "xml")
    assert code == 2 and "table, csv, json" in out


def test_sql_cannot_write_anything(tiny_config: Path, tmp_path: Path) -> None:
    """Statement types come from DuckDB's parser; DuckDB itself is locked to the run."""
    c = str(tiny_config)
    _invoke("run", "-c", c)
    run = tiny_config.parent / "runs" / "t"
    sneaky = tmp_path / "x.csv"
    for query in (
        f"EXPLAIN ANALYZE COPY (SELECT 42) TO '{sneaky}'",
        f"COPY (SELECT 42) TO '{sneaky}'",
        "SET enable_external_access = true",
        f"ATTACH '{tmp_path / 'x.db'}'",
        "CREATE TABLE t AS SELECT 1",
    ):
        code, out = _invoke("sql", query, "-c", c)
        assert code == 3 and "read-only" in out, query
    code, out = _invoke("sql", f"select * from read_csv('{tiny_config}')", "-c", c)
    assert code == 3 and "Permission" in out  # no file outside the run can be read
    assert not sneaky.exists() and not (tmp_path / "x.db").exists()
    code, out = _invoke("sql", "explain select count(*) from samples", "-c", c)
    assert code == 0, out
    samples = run / "samples.parquet"
    before = samples.read_bytes()
    code, out = _invoke("sql", "select 1 as x", "-c", c, "-o", str(samples))
    assert code == 3 and "inside the run directory" in out and samples.read_bytes() == before
    target = tmp_path / "r.parquet"
    assert _invoke("sql", "select 1 as x", "-c", c, "-o", str(target))[0] == 0
    code, out = _invoke("sql", "select 2 as x", "-c", c, "-o", str(target))
    assert code == 3 and "--force" in out and pl.read_parquet(target)["x"].to_list() == [1]
    assert _invoke("sql", "select 2 as x", "-c", c, "-o", str(target), "--force")[0] == 0
    assert pl.read_parquet(target)["x"].to_list() == [2]


def test_sql_before_any_run(tiny_config: Path) -> None:
    code, out = _invoke("sql", "select 1", "-c", str(tiny_config))
    assert code == 3 and "paretohqd run" in out


def test_config_error_is_one_line(tiny_config: Path) -> None:
    code, out = _invoke("run", "-c", str(tiny_config), "--set", "ingest.bogus=1")
    assert code == 3
    assert "unknown key `ingest.bogus`" in out and "Traceback" not in out


def test_debug_shows_traceback(tiny_config: Path) -> None:
    result = runner.invoke(app, ["--debug", "run", "-c", str(tiny_config), "--set", "x.y=1"])
    assert result.exit_code != 0 and result.exception is not None


@pytest.mark.parametrize("query", ["select 1 as x", "describe samples"])
def test_sql_accepts_reading_statements(tiny_config: Path, query: str) -> None:
    _invoke("run", "-c", str(tiny_config))
    code, out = _invoke("sql", query, "-c", str(tiny_config))
    assert code == 0, out


def test_train_reward_runs_the_declared_tool(tmp_path: Path) -> None:
    from testpaths import DATA

    out = tmp_path / "head"
    code, text = _invoke(
        "train-reward",
        str(DATA / "hh-rlhf/harmless-base/test.jsonl.gz"),
        "-o",
        str(out),
        "--limit",
        "60",
    )
    assert code == 0, text
    assert "held-out pairwise accuracy" in text and (out / "README.md").exists()
    code, text = _invoke("train-reward", str(tmp_path / "nope.jsonl"), "-o", str(out))
    assert code != 0 and "does not exist" in text


def test_convert_llama2c_runs_the_declared_tool(tmp_path: Path) -> None:
    from testpaths import DATA

    src = DATA / "stories260K"
    out = tmp_path / "m"
    code, text = _invoke(
        "convert-llama2c", str(src / "stories260K.bin"), str(src / "tok512.bin"), str(out)
    )
    assert code == 0, text
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"not a conversion")
    code, text = _invoke(
        "convert-llama2c", str(src / "stories260K.bin"), str(src / "tok512.bin"), str(other)
    )
    assert code != 0 and "overwrite" in text


def test_tools_are_declared_by_stage_packages() -> None:
    from paretohqd.registry import package_tool

    assert package_tool("train-reward").description
    with pytest.raises(Exception, match="offer the tool 'nope'"):
        package_tool("nope")


def test_errors_print_verbatim_even_with_markup_like_text(tmp_path: Path) -> None:
    """Square brackets in messages and paths are user text, not terminal markup."""
    odd = tmp_path / "[/b]x" / "cfg[0].toml"
    code, out = _invoke("status", "-c", str(odd))
    assert code == 3
    assert "[/b]x" in out and "cfg[0].toml" in out and "not found" in out


def test_a_missing_model_file_blocks_only_its_stage(tiny_config: Path) -> None:
    """status and earlier stages work; the stage itself reports the file when reached."""
    tiny_config.write_text(
        tiny_config.read_text()
        + '[[objectives]]\nname = "c"\nscorer = "heuristic"\n'
        + 'options = { metric = "verbosity" }\n'
        + '[policy]\nllama2c = { checkpoint = "nope.bin", tokenizer = "nope-tok.bin" }\n'
    )
    c = str(tiny_config)
    code, out = _invoke("status", "-c", c)
    assert code == 0, out
    assert "policy.llama2c.checkpoint" in out and "does not exist" in out
    code, out = _invoke("run", "-c", c, "--until", "ingest")
    assert code == 0, out
    code, out = _invoke("run", "-c", c, "--until", "base_model")
    assert code == 3 and "stage 'base_model' cannot run" in out and "nope.bin" in out


def _manifest_stages(run_dir: Path) -> dict[str, object]:
    path = run_dir / "manifest.json"
    return json.loads(path.read_text())["stages"] if path.exists() else {}


def _error_lines(result: object) -> list[str]:
    from fuzzkit import PROGRESS

    text = result.output  # type: ignore[attr-defined]
    return [line for line in text.splitlines() if line.strip() and not PROGRESS.match(line)]


def test_disk_full_is_one_line_and_the_stage_resumes(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while ingest writes (pyarrow names no file): one line naming the output and what
    to do, exit 5, no manifest entry and no temp file; a rerun once there is space completes."""
    import errno

    import pyarrow.parquet as pq

    real = pq.write_table

    def full(table: object, where: object, **kw: object) -> None:
        Path(str(where)).write_bytes(b"PAR1 half")  # a partial file, as a full disk leaves
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space")

    monkeypatch.setattr(pq, "write_table", full)
    c = str(tiny_config)
    result = runner.invoke(app, ["run", "-c", c, "--until", "ingest"])
    run_dir = tiny_config.parent / "runs" / "t"
    [line] = _error_lines(result)
    assert result.exit_code == 5, result.output
    assert line.startswith("error: no space left on the device: ")
    assert str(run_dir / "samples.parquet") in line
    assert "free some space" in line and "--set run.root=DIR" in line
    assert "ingest" not in _manifest_stages(run_dir)
    assert not list(run_dir.glob(".*.tmp-*")) and not (run_dir / "samples.parquet").exists()
    code, out = _invoke("status", "-c", c)
    assert code == 0 and "interrupted run" in out
    monkeypatch.setattr(pq, "write_table", real)
    code, out = _invoke("run", "-c", c, "--until", "ingest")
    assert code == 0 and "ingest       ran" in out and "ingest" in _manifest_stages(run_dir)


@pytest.mark.parametrize(
    ("err", "says"),
    [("EROFS", "read-only file system"), ("EACCES", "make the directory writable")],
)
def test_an_unwritable_run_directory_is_one_line(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch, err: str, says: str
) -> None:
    """The rename into place refused (a read-only mount, no write permission): the message
    names the output, not the temporary file, and the stage stays incomplete."""
    import errno
    import os

    real = os.replace

    def refuse(src: object, dst: object) -> None:
        if str(dst).endswith("quarantine.parquet"):
            raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)), str(src))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", refuse)
    result = runner.invoke(app, ["run", "-c", str(tiny_config), "--until", "ingest"])
    run_dir = tiny_config.parent / "runs" / "t"
    [line] = _error_lines(result)
    assert result.exit_code == 5, result.output
    assert says in line and line.endswith("then run again (finished stages are kept)")
    assert f": {run_dir / 'quarantine.parquet'};" in line and ".tmp-" not in line
    assert "ingest" not in _manifest_stages(run_dir)


def test_other_os_errors_are_bugs_and_keep_their_traceback(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    import pyarrow.parquet as pq

    def missing(*_: object, **__: object) -> None:
        raise OSError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(pq, "write_table", missing)
    result = runner.invoke(app, ["run", "-c", str(tiny_config), "--until", "ingest"])
    assert result.exit_code == 1 and isinstance(result.exception, FileNotFoundError)


def _permissions_enforced() -> bool:
    """False for root with its usual capabilities, which writes into read-only directories."""
    import tempfile

    if os.geteuid() != 0:
        return True
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o555)
        try:
            Path(tmp, "probe").write_text("")
        except PermissionError:
            return True
        finally:
            os.chmod(tmp, 0o755)
    return False


@pytest.mark.skipif(not _permissions_enforced(), reason="root writes into read-only directories")
def test_a_read_only_run_directory(tiny_config: Path) -> None:
    """A real chmod: the run directory exists but cannot be written."""
    c = str(tiny_config)
    run_dir = tiny_config.parent / "runs" / "t"
    run_dir.mkdir(parents=True)
    run_dir.chmod(0o555)
    try:
        result = runner.invoke(app, ["run", "-c", c, "--until", "ingest"])
        [line] = _error_lines(result)
        assert result.exit_code == 5 and line.startswith("error: permission denied: ")
        assert str(run_dir) in line and "--set run.root=DIR" in line
        assert "ingest" not in _manifest_stages(run_dir)
    finally:
        run_dir.chmod(0o755)
    code, out = _invoke("run", "-c", c, "--until", "ingest")
    assert code == 0, out


def test_export_hub_writes_repos_and_says_where(tmp_path: Path, tiny_policy: Path) -> None:
    from hubrun import config_text, make_run
    from testpaths import DATA

    from paretohqd.config import load_config

    config = tmp_path / "paretohqd.toml"
    config.write_text(config_text(DATA))
    make_run(load_config(config), tiny_policy)
    out = tmp_path / "hub"
    code, text = _invoke(
        "export", "hub", "-c", str(config), "--out", str(out), "--namespace", "org"
    )
    assert code == 0, text
    assert "org/t-paretohqd-round1-pref-000-100" in text and "adapters/round1" in text
    assert (out / "models/t-paretohqd-round1-pref-000-100/adapter_model.safetensors").exists()
    code, text = _invoke("export", "hub", "-c", str(config), "--out", str(out))
    assert code == 3 and "--force" in text and len(text.strip().splitlines()) == 1
    code, text = _invoke(
        "export", "hub", "-c", str(config), "--out", str(out), "--namespace", "a b"
    )
    assert code == 2 and "--namespace 'a b'" in text


def test_export_trl_writes_sft_and_dpo_datasets(
    tiny_config: Path, tiny_policy: Path, heuristics: str
) -> None:
    from paretohqd.stages.kit.policy.loading import load_tokenizer
    from paretohqd.stages.kit.training.sft import encode_rows

    tiny_config.write_text(
        tiny_config.read_text()
        + heuristics
        + f'\n[select]\nk = 4\nstep = 0.5\n\n[policy]\nmodel = "{tiny_policy}"\n'
        + "\n[sft]\nmax_length = 48\n\n[modpo]\nsteps = 1\n"
    )
    c = str(tiny_config)
    code, out = _invoke("export", "trl", "-c", c)
    assert code == 3 and "paretohqd run --until sft" in out
    code, out = _invoke("run", "-c", c, "--until", "pairs")
    assert code == 0, out
    code, out = _invoke("export", "trl", "-c", c, "--pairs")
    assert code == 0, out
    assert "3 preferences, 12 rows (max_length 48" in out and "trl sft" in out
    assert "zero weighted margin" in out and "trl dpo" in out

    run = tiny_config.parent / "runs/t"
    sft = run / "export/trl/sft-round1"
    assert sorted(p.name for p in sft.iterdir()) == ["pref-000-100", "pref-050-050", "pref-100-000"]
    tok = load_tokenizer(str(tiny_policy), padding_side="right")
    for pref in sft.iterdir():
        exported = pl.read_parquet(pref / "train.parquet")
        shard = pl.read_parquet(run / "shards/round1" / pref.name / "data.parquet")
        assert exported["sample_id"].to_list() == shard["sample_id"].to_list()
        rows = list(zip(shard["prompt"].to_list(), shard["completion"].to_list(), strict=True))
        assert exported["input_ids"].to_list() == [e.ids for e in encode_rows(tok, rows, 48)]

    pairs = pl.read_parquet(run / "pairs.parquet")
    dpo = pl.read_parquet(run / "export/trl/dpo/pref-100-000/train.parquet")
    first = pairs["norm_margin"].list.get(0)
    assert dpo.height == int((first != 0).sum())
    assert set(dpo.columns) >= {"prompt", "chosen", "rejected", "margin"}
    assert (dpo["margin"] > 0).all()


def test_train_reward_label_map_needs_value_and_side(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text("[]")
    code, text = _invoke(
        "train-reward", str(tmp_path / "d.json"), "-o", str(tmp_path / "h"), "--label-map", "2"
    )
    assert code == 2 and "--label-map 2: expected VALUE=a|b|tie" in text
    code, text = _invoke(
        "train-reward",
        str(tmp_path / "d.json"),
        "-o",
        str(tmp_path / "h"),
        "--kind",
        "table",
        "--column",
        "prompt=input",
        "--column",
        "response_a=o1",
        "--column",
        "response_b=o2",
        "--column",
        "label=label",
        "--label-map",
        "2=second",
    )
    assert code == 3 and "label_map.2" in text and "'a', 'b' or 'tie'" in text
