"""A judge-style dataset with no converter: a tree of ``*/dataset.json`` files of
input/output_1/output_2/label goes through ingest → reward_heads → score → pareto → select with
a config only, every pair oriented by its label (#18)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
from testpaths import FIXTURES

from paretohqd.config import load_config
from paretohqd.manifest import Manifest
from paretohqd.runner import Runner
from paretohqd.stages.kit.records import as_prompt, sample_id

CONFIG = """
[run]
name = "t"

[[ingest.sources]]
kind = "table"
name = "judge"
path = "tree/**/dataset.json"
columns = { prompt = "input", response_a = "output_1", response_b = "output_2", label = "label" }
label_map = { "1" = "a", "2" = "b" }

[[reward_heads]]
name = "helpful"
options = { epochs = 20 }

[[objectives]]
name = "helpful"
scorer = "embedding-head"
model = "run:reward_heads/helpful"

[[objectives]]
name = "concise"
scorer = "heuristic"
options = { metric = "conciseness", target = 40 }

[select]
k = 2
step = 0.5
"""


def _tree(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "pairwise-tree", tmp_path / "tree")
    (tmp_path / "paretohqd.toml").write_text(CONFIG)
    return tmp_path / "paretohqd.toml"


def test_a_labelled_pair_tree_runs_to_select_oriented_by_label(tmp_path: Path) -> None:
    import json

    config = load_config(_tree(tmp_path))
    ran = Runner(config).run(until="select")
    assert {name for name, outcome, _ in ran if outcome == "ran"} >= {
        "ingest",
        "reward_heads",
        "score",
        "pareto",
        "select",
    }
    run = config.run_dir
    samples = pl.read_parquet(run / "samples.parquet")
    prefs = pl.read_parquet(run / "preferences.parquet")
    quarantine = pl.read_parquet(run / "quarantine.parquet")

    # every pair with a mapped label is oriented by it: label 2 → output_2 is chosen
    expected = set()
    for file in sorted((tmp_path / "tree").glob("*/dataset.json")):
        for row in json.loads(file.read_text()):
            if row["label"] in (1, 2):
                win, lose = ("output_1", "output_2")[:: 1 if row["label"] == 1 else -1]
                prompt = as_prompt(row["input"])
                expected.add((sample_id(prompt, row[win]), sample_id(prompt, row[lose])))
    got = set(zip(prefs["chosen_id"], prefs["rejected_id"], strict=True))
    assert got == expected and len(got) == 14 and not prefs["tie"].any()

    # the unmapped label is quarantined with its value, file and row; the shared response is
    # an expected duplicate, not an error
    errors = quarantine.filter(~pl.col("expected"))
    assert errors.select("reason", "file", "row").rows() == [
        ("bad_label", "tree/garden/dataset.json", 4)
    ]
    assert "label 3 in field 'label' is not in label_map" in errors["detail"][0]
    shared = quarantine.filter(pl.col("expected"))
    assert shared.select("reason", "file", "row").rows() == [
        ("shared_response", "tree/kitchen/dataset.json", 5)
    ]

    # each sample names the file it came from, relative to the config
    assert set(samples["source_file"]) == {
        f"tree/{d}/dataset.json" for d in ("bikes", "garden", "kitchen")
    }
    meta = Manifest(run).stages["ingest"]["metadata"]
    assert meta["sources"]["judge"]["files"] == 3
    assert meta["quarantine"] == {"bad_label": 1, "shared_response": 1}
    heads = Manifest(run).stages["reward_heads"]["metadata"]["heads"]["helpful"]
    assert heads["pairs"] == 14
    assert (run / "selection.parquet").exists()
