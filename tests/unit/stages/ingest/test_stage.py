"""The ingest stage over the runner: schema, ids, split, quarantine, failure on no valid rows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from paretohqd.config import load_config
from paretohqd.errors import DataError
from paretohqd.runner import Runner
from paretohqd.stages.kit.records import prompt_id, sample_id


def test_samples_schema_ids_and_heldout(tiny_config: Path) -> None:
    cfg = load_config(tiny_config)
    Runner(cfg).run()
    samples = pl.read_parquet(cfg.run_dir / "samples.parquet")
    assert samples.columns[:6] == [
        "sample_id",
        "prompt_id",
        "prompt",
        "response",
        "source",
        "split",
    ]
    assert samples["sample_id"].n_unique() == samples.height
    row = samples.row(0, named=True)
    assert row["sample_id"] == sample_id(row["prompt"], row["response"])
    assert row["prompt_id"] == prompt_id(row["prompt"])
    # the held-out split is by prompt: no prompt is in both splits
    per_prompt = samples.group_by("prompt_id").agg(pl.col("split").n_unique())
    assert per_prompt["split"].max() == 1
    assert set(samples["split"]) == {"train", "eval"}
    prefs = pl.read_parquet(cfg.run_dir / "preferences.parquet")
    assert prefs.height > 0 and set(prefs["chosen_id"]) <= set(samples["sample_id"])


def test_duplicates_and_filters_go_to_quarantine(tmp_path: Path) -> None:
    rows = [{"prompt": "Say hi", "response": "hi"}] * 3 + [{"prompt": "Say hi", "response": ""}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "paretohqd.toml").write_text(
        '[ingest]\n[[ingest.sources]]\nkind = "table"\npath = "d.jsonl"\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    Runner(cfg).run()
    assert pl.read_parquet(cfg.run_dir / "samples.parquet").height == 1
    q = pl.read_parquet(cfg.run_dir / "quarantine.parquet")
    assert sorted(q["row"].to_list()) == [2, 3, 4]
    short = q.filter(pl.col("row") == 4).row(0, named=True)
    assert short["reason"] == "too_short" and short["detail"].startswith("response shorter")
    assert q.filter(pl.col("row") != 4)["reason"].to_list() == ["duplicate", "duplicate"]
    assert not q["expected"].any()
    assert q["file"].to_list()[0] == "d.jsonl"


@pytest.mark.parametrize("content", ["", "{broken\n", '{"prompt": "only a prompt"}\n'])
def test_nothing_valid_fails_and_says_why(tmp_path: Path, content: str) -> None:
    (tmp_path / "d.jsonl").write_text(content)
    (tmp_path / "paretohqd.toml").write_text(
        '[ingest]\n[[ingest.sources]]\nkind = "table"\npath = "d.jsonl"\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    with pytest.raises(DataError, match="no valid samples remain") as err:
        Runner(cfg).run()
    if content:
        assert "invalid JSON" in str(err.value) or "missing field" in str(err.value)
    assert not (cfg.run_dir / "samples.parquet").exists()


def test_missing_source_file_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "paretohqd.toml").write_text(
        '[ingest]\n[[ingest.sources]]\nkind = "hh-rlhf"\npath = "nope.jsonl"\n'
    )
    with pytest.raises(DataError, match=r"ingest\.sources\[0\]\.path"):
        Runner(load_config(tmp_path / "paretohqd.toml")).run()


def test_source_content_change_makes_ingest_stale(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"prompt": "a", "response": "b"}) + "\n")
    (tmp_path / "paretohqd.toml").write_text(
        '[ingest]\n[[ingest.sources]]\nkind = "table"\npath = "d.jsonl"\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    Runner(cfg).run()
    data.write_text(json.dumps({"prompt": "a", "response": "c"}) + "\n")
    plan = Runner(cfg).plan()
    assert plan[0].state == "stale" and plan[0].reasons == ["external input sources[0] changed"]


def test_an_edit_limit_never_reads_reruns_only_ingest(tmp_path: Path) -> None:
    """Ingest reruns (its file changed) and writes the same bytes: score, pareto and select
    stay fresh, because their fingerprints see the content of what they read."""
    rows = [
        {"prompt": f"Question {i}?", "response": f"Answer number {i} is {'long ' * i}."}
        for i in range(12)
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "paretohqd.toml").write_text(
        '[ingest]\nheldout_fraction = 0.0\n[[ingest.sources]]\nkind = "table"\npath = "d.jsonl"\n'
        "limit = 8\n"
        '[[objectives]]\nname = "concise"\nscorer = "heuristic"\n'
        'options = { metric = "conciseness", target = 5 }\n'
        '[[objectives]]\nname = "long"\nscorer = "heuristic"\noptions = { metric = "verbosity" }\n'
        "[select]\nk = 2\nstep = 0.5\n"
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    first = Runner(cfg).run()
    assert {name for name, outcome, _ in first if outcome == "ran"} >= {"ingest", "select"}
    rows[10]["response"] = "edited beyond the limit"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plan = {i.stage.name: i for i in Runner(cfg).plan()}
    assert plan["ingest"].state == "stale"
    assert plan["score"].reasons == ["input `samples` is remade upstream first"]
    again = Runner(cfg).run()
    assert [name for name, outcome, _ in again if outcome == "ran"] == ["ingest"]
    assert all(i.state == "fresh" for i in Runner(cfg).plan())


def test_a_broken_line_is_quarantined_and_ingest_says_so(tmp_path: Path) -> None:
    """Not silent: the invalid line is quarantined with its file and line, its full message
    (never cut), and ingest's output counts it by reason and says where to look."""
    good = [json.dumps({"prompt": f"Q{i}", "response": f"A{i}"}) for i in range(3)]
    (tmp_path / "d.jsonl").write_text("\n".join([good[0], '{"prompt": "x\u0001"', *good[1:]]))
    (tmp_path / "paretohqd.toml").write_text(
        '[[ingest.sources]]\nkind = "table"\npath = "d.jsonl"\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    said: list[tuple[str, str, str]] = []
    Runner(cfg).run(log=lambda *row: said.append(row))
    q = pl.read_parquet(cfg.run_dir / "quarantine.parquet")
    assert q.select("reason", "file", "row", "expected").rows() == [
        ("invalid_json", "d.jsonl", 2, False)
    ]
    assert q["detail"][0] == (
        "invalid JSON: Invalid control character at: line 1 column 14 (char 13)"
    )
    notes = [detail for stage, outcome, detail in said if outcome == "note"]
    assert notes[0] == "quarantined 1 row with problems: invalid_json 1"
    assert "from quarantine where not expected" in notes[-1]


def test_shared_responses_are_expected_and_repeated_pairs_are_not(tmp_path: Path) -> None:
    """In pairwise data one response meets several others: its repeats are shared_response
    (expected), and every pair still resolves; the same pair twice is a repeated_pair."""
    rows = [
        {"input": "Q", "output_1": "best", "output_2": "bad", "label": 1},
        {"input": "Q", "output_1": "worse", "output_2": "best", "label": 2},
        {"input": "Q", "output_1": "meh", "output_2": "best", "label": 0},
        {"input": "Q", "output_1": "best", "output_2": "bad", "label": 1},
    ]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "paretohqd.toml").write_text(
        '[[ingest.sources]]\nkind = "table"\npath = "d.json"\n'
        'columns = { prompt = "input", response_a = "output_1", response_b = "output_2", '
        'label = "label" }\nlabel_map = { "1" = "a", "2" = "b", "0" = "tie" }\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    Runner(cfg).run()
    q = pl.read_parquet(cfg.run_dir / "quarantine.parquet").sort("row")
    assert q.select("row", "reason", "expected").rows() == [
        (2, "shared_response", True),
        (3, "shared_response", True),
        (4, "repeated_pair", False),
        (4, "repeated_pair", False),
    ]
    samples = pl.read_parquet(cfg.run_dir / "samples.parquet")
    text = dict(zip(samples["sample_id"], samples["response"], strict=True))
    prefs = pl.read_parquet(cfg.run_dir / "preferences.parquet")
    assert [
        (text[c], text[r], t) for c, r, t in prefs.select("chosen_id", "rejected_id", "tie").rows()
    ] == [
        ("best", "bad", False),
        ("best", "worse", False),
        ("meh", "best", True),
    ]
    assert set(samples["source_file"]) == {"d.json"}


def test_dropped_ties_are_said(tmp_path: Path) -> None:
    rows = [
        {"input": "Q", "output_1": "yes", "output_2": "no", "label": "A"},
        {"input": "Q", "output_1": "maybe", "output_2": "perhaps", "label": "="},
    ]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "paretohqd.toml").write_text(
        '[[ingest.sources]]\nkind = "table"\nname = "j"\npath = "d.json"\nties = "drop"\n'
        'columns = { prompt = "input", response_a = "output_1", response_b = "output_2", '
        'label = "label" }\nlabel_map = { "A" = "a", "B" = "b", "=" = "tie" }\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    said: list[tuple[str, str, str]] = []
    Runner(cfg).run(log=lambda *row: said.append(row))
    assert pl.read_parquet(cfg.run_dir / "preferences.parquet").height == 1
    assert pl.read_parquet(cfg.run_dir / "samples.parquet").height == 4
    assert ("ingest", "note", 'left 1 tied pair(s) out of preferences (ties = "drop"): j 1') in said


def test_a_glob_source_is_stale_when_a_matching_file_appears(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "x.jsonl").write_text(json.dumps({"prompt": d, "response": d}) + "\n")
    (tmp_path / "paretohqd.toml").write_text(
        '[[ingest.sources]]\nkind = "table"\npath = "*/x.jsonl"\n'
    )
    cfg = load_config(tmp_path / "paretohqd.toml")
    Runner(cfg).run()
    assert Runner(cfg).plan()[0].state == "fresh"
    (tmp_path / "c").mkdir()
    (tmp_path / "c/x.jsonl").write_text(json.dumps({"prompt": "c", "response": "c"}) + "\n")
    assert Runner(cfg).plan()[0].reasons == ["external input sources[0] changed"]
    Runner(cfg).run()
    samples = pl.read_parquet(cfg.run_dir / "samples.parquet")
    assert samples["source_file"].to_list() == ["a/x.jsonl", "b/x.jsonl", "c/x.jsonl"]


def test_a_sources_license_and_hub_id_leave_ingest_fresh(tmp_path: Path) -> None:
    """They describe a source on the shards' cards; no sample changes, so ingest stays."""
    from paretohqd.config import config_from_dict
    from paretohqd.stages.ingest import stages

    def ingest_params(**card: str) -> object:
        cfg = config_from_dict(
            {"ingest": {"sources": [{"kind": "table", "path": "x", **card}]}},
            base_dir=tmp_path,
            source="paretohqd.toml",
        )
        return stages(cfg)[0].resolved_params(cfg)

    assert ingest_params(license="mit", hub_id="Anthropic/hh-rlhf") == ingest_params()
    assert ingest_params(name="other") != ingest_params()  # the check can fail
