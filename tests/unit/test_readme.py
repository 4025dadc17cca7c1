"""The README's examples against real runs of the commands they show.

An example's numbers may differ from run to run (timings, a retrained head's accuracy), so an
output line is compared by its *shape*: every number masked, the words, paths and punctuation
exact. A command whose output changes wording fails here until the README shows it again.
The figures quoted in prose come from the commands named beside them (see the closing notes);
the outputs checked here are the ones a user copies and compares against.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from paretohqd.cli import app
from paretohqd.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
runner = CliRunner()


def shape(line: str) -> str:
    """``line`` with every number (and duration like 0:30) masked."""
    return re.sub(r"\d+(?:[.:]\d+)*", "#", line.strip())


def block_after(marker: str) -> list[str]:
    """The lines of the first fenced block after ``marker`` in the README."""
    start = README.index(marker)
    fence = README.index("```", start)
    body = README.index("\n", fence) + 1
    end = README.index("```", body)
    return [line for line in README[body:end].splitlines() if line.strip()]


def test_exit_code_table_is_the_cli_s() -> None:
    table = re.findall(r"^\| (\d+) \| ", README[README.index("| exit code | meaning |") :], re.M)
    assert [int(c) for c in table] == sorted(EXIT_CODES)


def test_dag_example_is_the_demo_config_s() -> None:
    out = runner.invoke(app, ["dag", "-c", str(ROOT / "paretohqd.toml")])
    assert out.exit_code == 0, out.output
    real = out.stdout.splitlines()
    shown = [line for line in block_after("On the demo config:") if line != "..."]
    assert shown and all(line in real for line in shown), set(shown) - set(real)


def test_version_example() -> None:
    out = runner.invoke(app, ["--version"]).stdout.strip()
    assert shape(out) == shape("paretohqd 0.1.0")


def test_env_example_has_the_real_keys() -> None:
    real = [line.split()[0] for line in runner.invoke(app, ["env"]).stdout.splitlines()]
    shown = [line.split()[0] for line in block_after("`paretohqd env` prints") if line != "..."]
    assert all(key in real for key in shown), set(shown) - set(real)


def test_train_reward_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's train-reward line, from a real (small) run of the command (written under
    ``tmp_path``, so the relative ``--out`` of the example stays as shown)."""
    monkeypatch.chdir(tmp_path)
    data = ROOT / "data/hh-rlhf/harmless-base/test.jsonl.gz"
    out = runner.invoke(
        app, ["train-reward", str(data), "--out", "heads/harmless", "--limit", "60"]
    )
    assert out.exit_code == 0, out.output
    [shown] = [line for line in README.splitlines() if line.startswith("# wrote heads/harmless")]
    [real] = [line for line in out.stdout.splitlines() if line.startswith("wrote ")]
    assert shape(real) == shape(shown.removeprefix("# "))


@pytest.mark.parametrize("marker", ["**A head no better than chance fails its stage.**"])
def test_head_gate_example(tiny_config: Path, marker: str) -> None:
    tiny_config.write_text(
        tiny_config.read_text()
        + '\n[[reward_heads]]\nname = "harmless"\nsources = ["hh"]\nmin_accuracy = 0.99\n'
        + "options = { epochs = 5 }\n"
    )
    out = runner.invoke(app, ["run", "-c", str(tiny_config), "--until", "reward_heads"])
    assert out.exit_code == 3
    [shown] = [line for line in block_after(marker) if line.startswith("error:")]
    [real] = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert shape(real) == shape(shown)
