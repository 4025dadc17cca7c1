"""The CLI through typer's CliRunner: init, run, status, sql, errors."""

from __future__ import annotations

import json
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
    assert code == 2 and "--force" in out
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
    assert code == 2 and "read-only" in out
    code, out = _invoke("sql", "select * from nope", "-c", c)
    assert code == 2 and "views: samples" in out and "Traceback" not in out
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
        assert code == 2 and "read-only" in out, query
    code, out = _invoke("sql", f"select * from read_csv('{tiny_config}')", "-c", c)
    assert code == 2 and "Permission" in out  # no file outside the run can be read
    assert not sneaky.exists() and not (tmp_path / "x.db").exists()
    code, out = _invoke("sql", "explain select count(*) from samples", "-c", c)
    assert code == 0, out
    samples = run / "samples.parquet"
    before = samples.read_bytes()
    code, out = _invoke("sql", "select 1 as x", "-c", c, "-o", str(samples))
    assert code == 2 and "inside the run directory" in out and samples.read_bytes() == before
    target = tmp_path / "r.parquet"
    assert _invoke("sql", "select 1 as x", "-c", c, "-o", str(target))[0] == 0
    code, out = _invoke("sql", "select 2 as x", "-c", c, "-o", str(target))
    assert code == 2 and "--force" in out and pl.read_parquet(target)["x"].to_list() == [1]
    assert _invoke("sql", "select 2 as x", "-c", c, "-o", str(target), "--force")[0] == 0
    assert pl.read_parquet(target)["x"].to_list() == [2]


def test_sql_before_any_run(tiny_config: Path) -> None:
    code, out = _invoke("sql", "select 1", "-c", str(tiny_config))
    assert code == 2 and "paretohqd run" in out


def test_config_error_is_one_line(tiny_config: Path) -> None:
    code, out = _invoke("run", "-c", str(tiny_config), "--set", "ingest.bogus=1")
    assert code == 2
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
    assert code == 2
    assert "[/b]x" in out and "cfg[0].toml" in out and "not found" in out


def test_a_missing_model_file_blocks_only_its_stage(tiny_config: Path) -> None:
    """status and earlier stages work; the stage itself reports the file when reached."""
    tiny_config.write_text(
        tiny_config.read_text()
        + '[[objectives]]\nname = "c"\nscorer = "heuristic"\n'
        + '[policy]\nllama2c = { checkpoint = "nope.bin", tokenizer = "nope-tok.bin" }\n'
    )
    c = str(tiny_config)
    code, out = _invoke("status", "-c", c)
    assert code == 0, out
    assert "policy.llama2c.checkpoint" in out and "does not exist" in out
    code, out = _invoke("run", "-c", c, "--until", "ingest")
    assert code == 0, out
    code, out = _invoke("run", "-c", c, "--until", "base_model")
    assert code == 2 and "stage 'base_model' cannot run" in out and "nope.bin" in out
