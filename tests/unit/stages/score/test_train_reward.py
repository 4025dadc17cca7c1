"""The train-reward tool reads pairs with the ingest readers: a labelled-pair tree gives pairs
oriented by its label, exactly as ingest orients them."""

from __future__ import annotations

import json
from pathlib import Path

from testpaths import FIXTURES

from paretohqd.stages.kit.records import as_prompt
from paretohqd.stages.score.train_reward import read_pairs

COLUMNS = {"prompt": "input", "response_a": "output_1", "response_b": "output_2", "label": "label"}


def test_labelled_pairs_reach_the_head_oriented_by_label() -> None:
    tree = FIXTURES / "pairwise-tree"
    pairs = read_pairs(tree, kind="table", columns=COLUMNS, label_map={"1": "a", "2": "b"})
    expected = []
    for file in sorted(tree.glob("*/dataset.json")):  # the order the reader reads them in
        for row in json.loads(file.read_text()):
            if row["label"] in (1, 2):
                win, lose = ("output_1", "output_2")[:: 1 if row["label"] == 1 else -1]
                expected.append((as_prompt(row["input"]), row[win], row[lose]))
    assert pairs == expected and len(pairs) == 14


def test_a_glob_reads_too_and_ties_train_nothing(tmp_path: Path) -> None:
    rows = [
        {"input": "q", "output_1": "a", "output_2": "b", "label": "A"},
        {"input": "q", "output_1": "c", "output_2": "d", "label": "tie"},
    ]
    (tmp_path / "x").mkdir()
    (tmp_path / "x/dataset.json").write_text(json.dumps(rows))
    pairs = read_pairs(
        tmp_path / "*/dataset.json",
        kind="table",
        columns=COLUMNS,
        label_map={"A": "a", "B": "b", "tie": "tie"},
    )
    assert pairs == [(as_prompt("q"), "a", "b")]
