"""Malformed data files through ``paretohqd run``.

A bad row is quarantined with its row number and reason while the valid rows are ingested
unchanged (exit 0); a file that cannot be read at all, or leaves nothing valid, is one line
that names it (exit 3) and ingest stays incomplete.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import polars as pl
import pytest
from fuzzkit import GOOD, GOOD_RESPONSES, Case, check, config, jsonl


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def _csv(rows: list[tuple[str, str]], header: str = "prompt,response") -> str:
    return "\n".join([header, *(",".join(r) for r in rows)]) + "\n"


def _row(**fields: object) -> str:
    return json.dumps({"prompt": "a bad row", **fields})


def _hh(i: int, reply: str = "sure") -> dict[str, str]:
    return {
        "chosen": f"\n\nHuman: q{i}\n\nAssistant: {reply} {i}",
        "rejected": f"\n\nHuman: q{i}\n\nAssistant: no {i}",
    }


def _oasst(i: int) -> dict[str, object]:
    reply = {"role": "assistant", "text": f"reply {i}", "rank": 0}
    return {"prompt": {"role": "prompter", "text": f"hello {i}", "replies": [reply]}}


def _pandalm(i: int) -> dict[str, object]:
    return {
        "instruction": f"task {i}",
        "input": "",
        "response1": f"one {i}",
        "response2": f"two {i}",
        "annotator1": 1,
    }


def _quarantine(id_: str, line: str | bytes, row: int, reason: str, **kw: object) -> Case:
    """Five good rows and one bad one: the good rows are kept, the bad one quarantined."""
    return Case(
        id_,
        {"d.jsonl": jsonl(line)},
        config(),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((row, reason),),
        **kw,
    )


EXTRA = config(source='extra_columns = ["v"]')
GOOD_V = [json.dumps({**r, "v": float(i)}) for i, r in enumerate(GOOD)]
COLUMN_OBJECTIVE = '[[objectives]]\nname = "v"\nscorer = "column"\noptions = { column = "v" }\n'

QUARANTINED = [
    _quarantine("broken-json-line", '{"prompt": "q", "response": ', 6, "invalid JSON"),
    _quarantine("response-is-a-number", _row(response=42), 6, "field 'response' is int"),
    _quarantine("response-is-null", _row(response=None), 6, "field 'response' is NoneType"),
    _quarantine("missing-response-field", _row(), 6, "missing field 'response'"),
    _quarantine("row-is-an-array", "[1, 2]", 6, "row is list, expected an object"),
    _quarantine("row-is-a-string", '"just text"', 6, "row is str, expected an object"),
    _quarantine("row-is-null", "null", 6, "row is NoneType"),
    _quarantine("non-utf8-bytes", b'{"prompt": "q", "response": "\xff\xfe"}', 6, "not UTF-8"),
    _quarantine("lone-surrogate", r'{"prompt": "q", "response": "\ud800"}', 6, "lone surrogate"),
    _quarantine("huge-garbage-line", "{" + "x" * 2_000_000, 6, "invalid JSON"),
    _quarantine(
        "deeply-nested-line", "[" * 100_000, 6, "nested too deeply", note="RecursionError traceback"
    ),
    _quarantine(
        "deeply-nested-field",
        '{"prompt": "q", "response": ' + "[" * 50_000 + "]" * 50_000 + "}",
        6,
        "nested too deeply",
        note="RecursionError traceback",
    ),
    _quarantine("nested-garbage-object", _row(response={"a": [1, {"b": None}]}), 6, "is dict"),
    _quarantine("chat-list-of-numbers", _row(response=[1, 2]), 6, "not a list of chat messages"),
    _quarantine(
        "chat-unknown-role",
        _row(prompt=[{"role": "robot", "content": "hi"}], response="x"),
        6,
        "unknown chat role 'robot'",
    ),
    _quarantine("empty-response", _row(response=""), 6, "response shorter than min_response"),
    _quarantine(
        "whitespace-prompt",
        _row(prompt="   ", response="ok"),
        6,
        "prompt is empty",
        note="kept: the length filter counted the transcript's role markers",
    ),
    _quarantine(
        "duplicate-row",
        json.dumps(GOOD[0]),
        6,
        "duplicate of sample cccb398ad01e5262 (d.jsonl row 1)",
        note="the reason held the absolute path, where the file column is relative",
    ),
    Case(
        "utf8-bom",
        {"d.jsonl": b"\xef\xbb\xbf" + jsonl()},
        config(),
        code=0,
        kept=GOOD_RESPONSES,
        note="the first row was quarantined as invalid JSON",
    ),
    Case(
        "blank-lines-before-bad-row",
        {"d.jsonl": b"\n\n" + jsonl("{oops")},
        config(),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((8, "invalid JSON"),),
        note="rows were numbered from the first non-blank line (row 6, not 8)",
    ),
    Case(
        "huge-valid-line-over-limit",
        {"d.jsonl": jsonl(_row(response="y" * 1_000_000))},
        config(tables="[ingest]\nmax_response_chars = 10000\n"),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "response longer than max_response_chars"),),
    ),
    Case(
        "json-array-with-a-number",
        {"d.json": "[" + ", ".join(map(json.dumps, GOOD)) + ", 7]"},
        config(path="d.json"),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "row is int"),),
    ),
    Case(
        "nan-in-extra-column",
        {"d.jsonl": "\n".join([*GOOD_V, _row(response="r", v=float("nan"))])},
        EXTRA,
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "extra column 'v' is nan, expected a finite number"),),
        note="stored as null: the row passed ingest and failed the column objective later",
    ),
    Case(
        "inf-in-extra-column",
        {"d.jsonl": "\n".join([*GOOD_V, '{"prompt": "p", "response": "r", "v": -Infinity}'])},
        EXTRA,
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "extra column 'v' is -inf"),),
        note="stored as null, as for NaN",
    ),
    Case(
        "text-in-extra-column",
        {"d.jsonl": "\n".join([*GOOD_V, _row(response="r", v="high")])},
        EXTRA,
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "extra column 'v' is str, expected a number"),),
    ),
    Case(
        "bool-in-extra-column",
        {"d.jsonl": "\n".join([*GOOD_V, _row(response="r", v=True)])},
        EXTRA,
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "extra column 'v' is bool"),),
    ),
    Case(
        "csv-empty-cell",
        {"d.csv": _csv([(r["prompt"], r["response"]) for r in GOOD] + [("q5", "")])},
        config(path="d.csv"),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "field 'response' is NoneType"),),
    ),
    Case(
        "parquet-null-response",
        {"d.parquet": _parquet(pl.DataFrame([*GOOD, {"prompt": "q", "response": None}]))},
        config(path="d.parquet"),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "field 'response' is NoneType"),),
    ),
    Case(
        "hh-rlhf-missing-rejected",
        {"d.jsonl": jsonl(*map(json.dumps, map(_hh, range(5))), '{"chosen": "x"}', good=False)},
        config(kind="hh-rlhf"),
        code=0,
        kept=tuple(f"{w} {i}" for i in range(5) for w in ("sure", "no")),
        quarantined=((6, "missing field 'rejected'"),),
    ),
    Case(
        "hh-rlhf-no-assistant-turn",
        {
            "d.jsonl": jsonl(
                *map(json.dumps, map(_hh, range(5))),
                json.dumps({"chosen": "\n\nHuman: x", "rejected": "y"}),
                good=False,
            )
        },
        config(kind="hh-rlhf"),
        code=0,
        kept=tuple(f"{w} {i}" for i in range(5) for w in ("sure", "no")),
        quarantined=((6, "Assistant"),),
    ),
    Case(
        "oasst-row-without-tree",
        {"d.jsonl": jsonl(*map(json.dumps, map(_oasst, range(5))), '{"prompt": 3}', good=False)},
        config(kind="oasst"),
        code=0,
        kept=tuple(f"reply {i}" for i in range(5)),
        quarantined=((6, "no 'prompt' message tree"),),
    ),
    Case(
        "pandalm-instruction-not-text",
        {
            "d.jsonl": jsonl(
                *map(json.dumps, map(_pandalm, range(5))), '{"instruction": 3}', good=False
            )
        },
        config(kind="pandalm"),
        code=0,
        kept=tuple(f"{w} {i}" for i in range(5) for w in ("one", "two")),
        quarantined=((6, "field 'instruction' is int"),),
    ),
    Case(
        "messages-without-assistant",
        {
            "d.jsonl": jsonl(
                *(
                    json.dumps(
                        {
                            "m": [
                                {"role": "user", "content": r["prompt"]},
                                {"role": "assistant", "content": r["response"]},
                            ]
                        }
                    )
                    for r in GOOD
                ),
                json.dumps({"m": [{"role": "user", "content": "q"}]}),
                good=False,
            )
        },
        config(source='columns = { messages = "m" }'),
        code=0,
        kept=GOOD_RESPONSES,
        quarantined=((6, "the last message must be the assistant's"),),
    ),
]


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


FATAL = [
    Case(
        "empty-file",
        {"d.jsonl": ""},
        config(),
        says=("no valid samples remain", "d.jsonl"),
        note="did not name the file",
    ),
    Case(
        "whitespace-only-file",
        {"d.jsonl": " \n\n\t\n"},
        config(),
        says=("the sources hold no rows", "d.jsonl"),
        note="did not name the file",
    ),
    Case(
        "every-row-bad",
        {"d.jsonl": jsonl("{x", "[1]", good=False)},
        config(),
        says=("no valid samples remain", "invalid JSON", "d.jsonl row 1"),
        note="did not name a file or row",
    ),
    Case(
        "nonexistent-path",
        {},
        config(path="nope.jsonl"),
        says=("ingest.sources[0].path", "nope.jsonl", "does not exist"),
    ),
    Case(
        "directory-as-path",
        {"d.jsonl": None},
        config(),
        says=("ingest.sources[0].path", "a directory, not a file"),
    ),
    Case(
        "gz-that-is-not-gzip",
        {"d.jsonl.gz": jsonl()},
        config(path="d.jsonl.gz"),
        says=("d.jsonl.gz", "not a gzip file"),
    ),
    Case(
        "gz-cut-short",
        {"d.jsonl.gz": _gz(jsonl())[:40]},
        config(path="d.jsonl.gz"),
        says=("d.jsonl.gz", "cut short"),
    ),
    Case(
        "json-array-cut-short",
        {"d.json": "[" + json.dumps(GOOD[0])},
        config(path="d.json"),
        says=("d.json", "not a valid UTF-8 JSON array"),
    ),
    Case(
        "csv-missing-column",
        {"d.csv": _csv([("a", "b")], "prompt,answer")},
        config(path="d.csv"),
        says=("d.csv", "response not found", "columns: prompt, answer"),
    ),
    Case(
        "csv-numbers-as-responses",
        {"d.csv": _csv([("a", "1"), ("b", "2")])},
        config(path="d.csv"),
        says=("field 'response' is int", "d.csv row 1"),
    ),
    Case(
        "csv-ragged-rows",
        {"d.csv": "prompt,response\na,b\nc,d,e,f\n"},
        config(path="d.csv"),
        says=("d.csv", "cannot read as csv"),
        note="polars' advice made it 3 lines",
    ),
    Case(
        "csv-binary-garbage",
        {"d.csv": b'\x00\x01\xff,\n"unterminated'},
        config(path="d.csv"),
        says=("d.csv", "cannot read as csv"),
        note="polars' advice made it 10 lines",
    ),
    Case("csv-empty", {"d.csv": ""}, config(path="d.csv"), says=("d.csv", "empty CSV")),
    Case(
        "csv-header-only",
        {"d.csv": "prompt,response\n"},
        config(path="d.csv"),
        says=("the sources hold no rows", "d.csv"),
        note="did not name the file",
    ),
    Case(
        "parquet-missing-column",
        {"d.parquet": _parquet(pl.DataFrame({"prompt": ["a"], "resp": ["b"]}))},
        config(path="d.parquet"),
        says=("d.parquet", "response not found"),
    ),
    Case(
        "parquet-int-responses",
        {"d.parquet": _parquet(pl.DataFrame({"prompt": ["a", "b"], "response": [1, 2]}))},
        config(path="d.parquet"),
        says=("field 'response' is int", "d.parquet row 1"),
    ),
    Case(
        "parquet-garbage",
        {"d.parquet": b"PAR1 not really"},
        config(path="d.parquet"),
        says=("d.parquet", "cannot read as parquet"),
    ),
    Case(
        "jsonl-read-as-parquet",
        {"d.jsonl": jsonl()},
        config(source='format = "parquet"'),
        says=("d.jsonl", "cannot read as parquet", "`format`"),
    ),
    Case(
        "parquet-missing-extra-column",
        {"d.parquet": _parquet(pl.DataFrame(GOOD))},
        config(path="d.parquet", source='extra_columns = ["v"]'),
        says=("d.parquet", "v not found"),
    ),
    Case(
        "hf-datasets-offline-hub-id",
        {},
        config(kind="hf-datasets", path="nobody/nothing"),
        says=("ingest.sources[0].path", "'nobody/nothing'", "hub"),
        note="said 'fix or replace the file' of a hub id",
    ),
    Case(
        "hf-datasets-path-is-a-file",
        {"d.jsonl": jsonl()},
        config(kind="hf-datasets"),
        says=("ingest.sources[0].path", "d.jsonl", "save_to_disk"),
    ),
    Case(
        "column-objective-null-value",
        {"d.jsonl": "\n".join([*GOOD_V[:4], json.dumps(GOOD[4])])},
        config(source='extra_columns = ["v"]', objective=False, tables=COLUMN_OBJECTIVE),
        args=("run", "--until", "score"),
        says=("objective 'v' gave nan for sample",),
        missing=("score",),
        complete=("ingest",),
    ),
    Case(
        "column-objective-column-not-carried",
        {"d.jsonl": jsonl()},
        config(objective=False, tables=COLUMN_OBJECTIVE),
        args=("run", "--until", "score"),
        says=("objective 'v'", "column 'v' is not in the samples", "options.column"),
        missing=("score",),
        complete=("ingest",),
        note="ScorerError traceback",
    ),
]

CASES = QUARANTINED + FATAL


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_data(case: Case, tmp_path: Path) -> None:
    check(case, tmp_path)


def test_a_quarantined_nan_leaves_the_column_objective_scoring(tmp_path: Path) -> None:
    """The row with NaN is quarantined at ingest, so scoring the column goes through."""
    case = Case(
        "nan-then-score",
        {"d.jsonl": "\n".join([*GOOD_V, _row(response="r", v=float("nan"))])},
        config(source='extra_columns = ["v"]', objective=False, tables=COLUMN_OBJECTIVE),
        args=("run", "--until", "score"),
        code=0,
        complete=("ingest", "score"),
        kept=GOOD_RESPONSES,
        quarantined=((6, "extra column 'v' is nan"),),
    )
    check(case, tmp_path)
    scores = pl.read_parquet(tmp_path / "runs/t/scores.parquet")
    assert sorted(scores["v"].to_list()) == [0.0, 1.0, 2.0, 3.0, 4.0]
