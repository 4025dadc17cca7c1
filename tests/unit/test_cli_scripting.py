"""The CLI for scripts: --json, status --check, exit codes, dag, env, --version, global options
after the command, completion, per-stage log files and "running (pid N)"."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paretohqd.cli import app, hoist
from paretohqd.errors import EXIT_BUSY, EXIT_NOT_FRESH, EXIT_USAGE, EXIT_USER
from paretohqd.lock import RunLock

runner = CliRunner()


def _json(*args: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    result = runner.invoke(app, list(args))
    return result.exit_code, json.loads(result.stdout)


def test_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"paretohqd {version('paretohqd')}"


def test_status_check_and_json_before_and_after_a_run(tiny_config: Path) -> None:
    c = str(tiny_config)
    code, data = _json("status", "-c", c, "--json", "--check")
    assert code == EXIT_NOT_FRESH and data["fresh"] is False
    states = {s["stage"]: s["state"] for s in data["stages"]}
    assert states["ingest"] == "missing" and data["run"] == "t"

    result = runner.invoke(app, ["run", "-c", c, "--json"])
    assert result.exit_code == 0, result.output
    ran = json.loads(result.stdout)  # stdout is the JSON document alone
    assert {s["stage"]: s["outcome"] for s in ran["stages"]}["ingest"] == "ran"
    assert "ingest" in result.stderr  # the live lines went to stderr

    code, data = _json("status", "-c", c, "--json", "--check")
    assert code == 0 and data["fresh"] is True
    ingest = next(s for s in data["stages"] if s["stage"] == "ingest")
    assert ingest["rows"] > 0 and ingest["log"].endswith("logs/ingest.log")
    assert runner.invoke(app, ["status", "-c", c, "--check"]).exit_code == 0

    code, summary = _json("summary", "-c", c, "--json")
    assert code == 0 and summary["run"] == "t"
    assert [s["stage"] for s in summary["stages"]] == [s["stage"] for s in data["stages"]]

    code, data = _json(
        "status", "-c", c, "--json", "--check", "--set", "ingest.heldout_fraction=0.3"
    )
    assert code == EXIT_NOT_FRESH
    stale = next(s for s in data["stages"] if s["stage"] == "ingest")
    assert stale["state"] == "stale" and "ingest.heldout_fraction" in stale["reasons"][0]


def test_stage_log_file_records_the_run_and_failures(tiny_config: Path) -> None:
    c = str(tiny_config)
    assert runner.invoke(app, ["run", "-c", c, "--until", "ingest"]).exit_code == 0
    log = tiny_config.parent / "runs/t/logs/ingest.log"
    text = log.read_text()
    assert "stage ingest started" in text and "ingest ran:" in text and "samples" in text
    # A failing stage: the console has one line, the log file the traceback.
    bad = tiny_config.parent / "bad.toml"
    bad.write_text(
        tiny_config.read_text().replace('name = "t"', 'name = "u"').replace("limit = 40", "")
        + '\n[[ingest.sources]]\nkind = "table"\npath = "missing.csv"\n'
    )
    result = runner.invoke(app, ["run", "-c", str(bad), "--until", "ingest"])
    assert result.exit_code == EXIT_USER and result.stderr.count("\n") == 1
    failed = (tiny_config.parent / "runs/u/logs/ingest.log").read_text()
    assert "stage ingest failed" in failed and "Traceback" in failed


def test_error_exit_codes_and_json_error(tiny_config: Path) -> None:
    c = str(tiny_config)
    result = runner.invoke(app, ["status", "-c", c, "--set", "ingest.bogus=1", "--json"])
    assert result.exit_code == EXIT_USER
    assert json.loads(result.stdout) == {
        "error": result.stderr.removeprefix("error: ").strip(),
        "exit_code": EXIT_USER,
    }
    assert runner.invoke(app, ["status", "--bogus"]).exit_code == EXIT_USAGE
    assert runner.invoke(app, ["dag", "-c", c, "--dot", "--mermaid"]).exit_code == EXIT_USAGE
    run_dir = tiny_config.parent / "runs" / "t"
    with RunLock(run_dir):  # another process's run, as the lock sees it
        result = runner.invoke(app, ["run", "-c", c, "--until", "ingest"])
    assert result.exit_code == EXIT_BUSY and "another paretohqd process" in result.stderr


def test_global_options_after_the_command(tiny_config: Path) -> None:
    import typer

    root = typer.main.get_command(app)
    assert hoist(["run", "--until", "score", "-q", "--debug"], root) == [
        "-q",
        "--debug",
        "run",
        "--until",
        "score",
    ]
    assert hoist(["run", "-vv"], root) == ["-vv", "run"]
    # An option's value and what follows `--` stay where they are.
    assert hoist(["run", "--set", "-q"], root) == ["run", "--set", "-q"]
    assert hoist(["sql", "--", "-q"], root) == ["sql", "--", "-q"]
    result = runner.invoke(app, ["run", "-c", str(tiny_config), "--until", "ingest", "-q"])
    assert result.exit_code == 0, result.output


def test_dag_formats(tiny_config: Path, heuristics: str) -> None:
    with tiny_config.open("a") as f:  # objectives: score and pareto join the graph
        f.write(heuristics)
    c = str(tiny_config)
    text = runner.invoke(app, ["dag", "-c", c]).stdout
    score = next(line for line in text.splitlines() if line.startswith("score "))
    assert "samples (ingest)" in score and "writes scores" in score
    mermaid = runner.invoke(app, ["dag", "-c", c, "--mermaid"]).stdout
    assert mermaid.startswith("flowchart TD") and "ingest -->|samples" in mermaid
    dot = runner.invoke(app, ["dag", "-c", c, "--dot"]).stdout
    assert dot.startswith("digraph") and '"score" -> "pareto"' in dot
    code, data = _json("dag", "-c", c, "--json")
    assert code == 0
    assert {"from": "ingest", "to": "score", "artifact": "samples"} in data["edges"]
    names = [s["stage"] for s in data["stages"]]
    for edge in data["edges"]:  # topological: every edge points forward
        assert names.index(edge["from"]) < names.index(edge["to"])


def test_env_reports_versions_and_devices() -> None:
    code, info = _json("env", "--json")
    assert code == 0
    assert info["python"] == sys.version.split()[0]
    assert info["packages"]["duckdb"] and info["packages"]["torch"]
    assert info["devices"]["cpu_count"] >= 1 and "cuda" in info["devices"]
    text = runner.invoke(app, ["env"]).stdout
    assert text.startswith("python") and "duckdb" in text


def test_shell_completion_completes_commands() -> None:
    env = {"_PARETOHQD_COMPLETE": "complete_bash", "COMP_WORDS": "paretohqd sta", "COMP_CWORD": "1"}
    result = runner.invoke(app, [], env=env, prog_name="paretohqd")
    assert result.exit_code == 0 and result.stdout.split() == ["status"]


def test_status_tells_running_from_interrupted(tiny_config: Path) -> None:
    """A stage in progress in another process reads "running (pid N)"; once that process is
    gone (killed: its lock died with it), the same manifest reads "interrupted"."""
    from paretohqd.manifest import Manifest

    c = str(tiny_config)
    run_dir = tiny_config.parent / "runs" / "t"
    run_dir.mkdir(parents=True)
    manifest = Manifest(run_dir)
    manifest.data.setdefault("running", {})["ingest"] = "2026-01-01T00:00:00+00:00"
    manifest.save()
    holder = textwrap.dedent(
        f"""
        import sys, time
        from paretohqd.lock import RunLock
        with RunLock({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        code, data = _json("status", "-c", c, "--json", "--check")
        ingest = next(s for s in data["stages"] if s["stage"] == "ingest")
        assert code == EXIT_NOT_FRESH and ingest["state"] == "running"
        assert ingest["reasons"] == [f"running (pid {proc.pid}) since 2026-01-01T00:00:00+00:00"]
    finally:
        proc.kill()
        proc.wait()
    code, data = _json("status", "-c", c, "--json")
    ingest = next(s for s in data["stages"] if s["stage"] == "ingest")
    assert ingest["state"] == "missing" and ingest["reasons"][0].startswith("interrupted run")


@pytest.mark.parametrize("verbosity", ["-q", "-v"])
def test_verbosity_flags_are_accepted(tiny_config: Path, verbosity: str) -> None:
    result = runner.invoke(app, [verbosity, "status", "-c", str(tiny_config)])
    assert result.exit_code == 0, result.output
