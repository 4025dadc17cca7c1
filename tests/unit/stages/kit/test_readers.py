"""Each reader on the real bundled data and on malformed rows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError
from testpaths import DATA

from paretohqd.config import SourceConfig
from paretohqd.errors import DataError
from paretohqd.stages.kit.readers import READERS, read_hh_rlhf, read_pandalm, read_table
from paretohqd.stages.kit.records import sample_id, split_transcript, to_messages


def _src(kind: str, **kw: object) -> SourceConfig:
    return SourceConfig(kind=kind, path="x", **kw)  # type: ignore[arg-type]


def _jsonl(path: Path, rows: list[object | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_hh_rlhf_bundled() -> None:
    out = read_hh_rlhf(
        _src("hh-rlhf", limit=50), DATA / "hh-rlhf/harmless-base/test.jsonl.gz", "hh"
    )
    assert len(out.records) == 100 and not out.rejected
    assert all(
        r.prompt.startswith("\n\nHuman:") and r.prompt.endswith("\n\nAssistant:")
        for r in out.records
    )
    assert all("\n\nAssistant:" not in r.response for r in out.records)
    assert 40 <= len(out.preferences) <= 50
    pref = out.preferences[0]
    assert pref.chosen.prompt == pref.rejected.prompt and pref.chosen.role == "chosen"


def test_split_transcript_uses_last_assistant_turn() -> None:
    t = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d"
    assert split_transcript(t) == ("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:", "d")
    with pytest.raises(ValueError, match="Assistant"):
        split_transcript("\n\nHuman: only")
    assert to_messages("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:") == [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


def test_hh_malformed_rows_are_quarantined(tmp_path: Path) -> None:
    good = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello",
        "rejected": "\n\nHuman: hi\n\nAssistant: go",
    }
    path = tmp_path / "bad.jsonl.gz"
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"chosen": "x"}),
        json.dumps({"chosen": 3, "rejected": "y"}),
        json.dumps([1, 2]),
        json.dumps({"chosen": "no turns", "rejected": "no turns"}),
    ]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines))
    out = read_hh_rlhf(_src("hh-rlhf"), path, "hh")
    assert len(out.records) == 2 and len(out.preferences) == 1
    reasons = {r.row: (r.reason, r.detail) for r in out.rejected}
    assert reasons[2][0] == "invalid_json"
    assert reasons[2][1] == (  # the whole message, its position included
        "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
    assert reasons[3] == ("missing_field", "missing field 'rejected'")
    assert reasons[4] == ("wrong_type", "field 'chosen' is int, expected text")
    assert reasons[5] == ("wrong_type", "row is list, expected an object with chosen/rejected")
    assert reasons[6][0] == "malformed" and "Assistant" in reasons[6][1]
    assert all(r.file == str(path) for r in out.rejected)


def test_oasst_bundled_trees_and_ranks() -> None:
    out = READERS["oasst"](_src("oasst"), DATA / "oasst-en100/en_100_tree.jsonl", "oasst")
    assert len(out.records) > 300 and not out.rejected
    ranked = [p for p in out.preferences]
    assert ranked and all(
        p.chosen.rank is not None
        and p.rejected.rank is not None
        and p.chosen.rank < p.rejected.rank
        for p in ranked
    )
    deep = [r for r in out.records if r.prompt.count("\n\nHuman:") > 1]
    assert deep, "replies deeper in the tree carry the conversation above them"


def test_pandalm_bundled_majority_votes() -> None:
    out = read_pandalm(_src("pandalm", limit=200), DATA / "pandalm/testset-v1.json", "pandalm")
    assert 300 <= len(out.records) <= 400
    raw = json.loads((DATA / "pandalm/testset-v1.json").read_text())
    by_row = {p.chosen.row: p for p in out.preferences}
    for row, item in enumerate(raw[:200], start=1):
        votes = [item[k] for k in ("annotator1", "annotator2", "annotator3")]
        if row in by_row:
            winner = 1 if votes.count(1) > votes.count(2) else 2
            assert by_row[row].chosen.response == item[f"response{winner}"]


def test_table_jsonl_prompt_response_and_messages(tmp_path: Path) -> None:
    p = _jsonl(
        tmp_path / "t.jsonl",
        [
            {"q": "What is 2+2?", "a": "4", "score": 1.5},
            {"q": "Hi", "a": None, "score": 2},
            {"q": "Hi", "a": "Hello", "score": "high"},
        ],
    )
    out = read_table(
        _src("table", columns={"prompt": "q", "response": "a"}, extra_columns=["score"]), p, "t"
    )
    assert [r.response for r in out.records] == ["4"]
    assert out.records[0].extras == {"score": 1.5}
    assert out.records[0].prompt == "\n\nHuman: What is 2+2?\n\nAssistant:"
    assert [(r.row, r.reason, r.detail) for r in out.rejected] == [
        (2, "wrong_type", "field 'a' is NoneType, expected text or a list of chat messages"),
        (3, "wrong_type", "extra column 'score' is str, expected a number"),
    ]
    m = _jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello!"},
                ]
            },
            {"messages": [{"role": "user", "content": "Hi"}]},
        ],
    )
    out = read_table(_src("table", columns={"messages": "messages"}), m, "m")
    assert out.records[0].prompt == "\n\nHuman: Be brief.\n\nHi\n\nAssistant:"
    assert out.records[0].response == "Hello!"
    assert out.rejected[0].reason == "malformed" and "assistant" in out.rejected[0].detail


def test_table_parquet_and_csv_pairs_and_missing_column(tmp_path: Path) -> None:
    frame = pl.DataFrame({"prompt": ["p1", "p2"], "good": ["yes", "fine"], "bad": ["no", "meh"]})
    frame.write_parquet(tmp_path / "t.parquet")
    frame.write_csv(tmp_path / "t.csv")
    cols = {"prompt": "prompt", "chosen": "good", "rejected": "bad"}
    for name in ("t.parquet", "t.csv"):
        out = read_table(_src("table", columns=cols), tmp_path / name, "t")
        assert len(out.records) == 4 and len(out.preferences) == 2
    with pytest.raises(
        DataError, match=r"column\(s\) answer not found.*columns: prompt, good, bad"
    ):
        read_table(
            _src("table", columns={"prompt": "prompt", "response": "answer"}),
            tmp_path / "t.parquet",
            "t",
        )
    with pytest.raises(ValidationError, match="must map"):  # at config load, before reading
        _src("table", columns={"prompt": "prompt"})


def test_trl_conversational_preference_rows(tmp_path: Path) -> None:
    p = _jsonl(
        tmp_path / "trl.jsonl",
        [
            {
                "prompt": [{"role": "user", "content": "Tell a joke"}],
                "chosen": [{"role": "assistant", "content": "Why did..."}],
                "rejected": [{"role": "assistant", "content": "No."}],
            }
        ],
    )
    out = read_table(
        _src("table", columns={"prompt": "prompt", "chosen": "chosen", "rejected": "rejected"}),
        p,
        "trl",
    )
    assert [r.response for r in out.records] == ["Why did...", "No."]
    assert out.preferences[0].chosen.response == "Why did..."


def test_empty_file_gives_no_records(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("")
    out = read_hh_rlhf(_src("hh-rlhf"), tmp_path / "e.jsonl", "e")
    assert out.records == [] and out.rejected == []


def test_hf_datasets_dir(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "chosen": ["\n\nHuman: a\n\nAssistant: yes"],
            "rejected": ["\n\nHuman: a\n\nAssistant: no"],
        }
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    out = READERS["hf-datasets"](_src("hf-datasets"), tmp_path / "ds", "hf")
    assert [r.response for r in out.records] == ["yes", "no"] and len(out.preferences) == 1
    dd = datasets.DatasetDict({"train": ds, "test": ds})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="hf_split"):
        READERS["hf-datasets"](_src("hf-datasets"), tmp_path / "dd", "hf")
    out = READERS["hf-datasets"](_src("hf-datasets", hf_split="test"), tmp_path / "dd", "hf")
    assert len(out.records) == 2
    labelled = datasets.Dataset.from_dict(
        {"input": ["q", "q2"], "output_1": ["a", "c"], "output_2": ["b", "d"], "label": [2, 9]}
    )
    labelled.save_to_disk(str(tmp_path / "lp"))
    src = _src(
        "hf-datasets", columns={**PAIR_COLUMNS, "label": "label"}, label_map={"1": "a", "2": "b"}
    )
    out = READERS["hf-datasets"](src, tmp_path / "lp", "hf")
    assert _oriented(out) == [("b", "a", False)]
    assert [(r.row, r.reason) for r in out.rejected] == [(2, "bad_label")]


def test_ids_are_content_hashes() -> None:
    assert sample_id("\n\nHuman: a\n\nAssistant:", " b ") == sample_id(
        "\n\nHuman: a\r\n\nAssistant:", "b"
    )
    assert sample_id("p", "r") == sample_id(" p", "r\n") != sample_id("p", "r2")


GOOD_HH = {"chosen": "\n\nHuman: hi\n\nAssistant: ok", "rejected": "\n\nHuman: hi\n\nAssistant: no"}


def _read(tmp_path: Path, name: str, data: bytes) -> object:
    from paretohqd.config import config_from_dict
    from paretohqd.stages.kit.readers import read_source

    (tmp_path / name).write_bytes(data)
    cfg = config_from_dict(
        {"ingest": {"sources": [{"kind": "hh-rlhf", "path": name}]}},
        base_dir=tmp_path,
        source="t",
    )
    return read_source(cfg, 0, cfg.ingest.sources[0])


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        (b'{"chosen": "\xff\xfe", "rejected": "x"}', "not UTF-8 (byte 0xff"),
        (
            b'{"chosen": "\\n\\nHuman: a\\ud800\\n\\nAssistant: b", "rejected": "c"}',
            "lone surrogate",
        ),
    ],
)
def test_a_line_that_is_not_text_is_quarantined(
    tmp_path: Path, bad_line: bytes, reason: str
) -> None:
    good = json.dumps(GOOD_HH).encode()
    out = _read(tmp_path, "d.jsonl", good + b"\n" + bad_line + b"\n" + good + b"\n")
    assert [(r.row, reason in r.detail) for r in out.rejected] == [(2, True)]  # type: ignore[attr-defined]
    assert len(out.preferences) == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("d.jsonl.gz", b"not gzip at all", "not a gzip file"),
        ("d.jsonl.gz", gzip.compress(json.dumps(GOOD_HH).encode() * 50)[:40], "cut short"),
    ],
)
def test_a_broken_file_is_one_line_naming_it(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    with pytest.raises(DataError, match=rf"ingest\.sources\[0\]\.path: .*{name}.*{message}"):
        _read(tmp_path, name, data)


def test_a_directory_without_data_files_is_one_line(tmp_path: Path) -> None:
    from paretohqd.config import config_from_dict
    from paretohqd.stages.kit.readers import read_source

    (tmp_path / "dir").mkdir()
    cfg = config_from_dict(
        {"ingest": {"sources": [{"kind": "hh-rlhf", "path": "dir"}]}}, base_dir=tmp_path, source="t"
    )
    (tmp_path / "dir/notes.txt").write_text("not data")
    with pytest.raises(DataError, match=r"sources\[0\]\.path: the directory .*dir holds no "):
        read_source(cfg, 0, cfg.ingest.sources[0])


# ---------------------------------------------------------------- labelled and scored pairs

PAIR_COLUMNS = {"prompt": "input", "response_a": "output_1", "response_b": "output_2"}


def _pair_row(i: int, label: object) -> dict[str, object]:
    return {"input": f"q{i}", "output_1": f"one {i}", "output_2": f"two {i}", "label": label}


def _oriented(out: object) -> list[tuple[str, str, bool]]:
    prefs = out.preferences  # type: ignore[attr-defined]
    return [(p.chosen.response, p.rejected.response, p.tie) for p in prefs]


def test_labelled_pairs_are_oriented_by_label_map(tmp_path: Path) -> None:
    """1 → output_1 wins, 2 → output_2 wins, whatever type the file gives the label; a tie is
    kept marked; an unmapped value is quarantined as bad_label with the value, no sample."""
    rows = [
        _pair_row(1, 1),
        _pair_row(2, 2),
        _pair_row(3, "2"),
        _pair_row(4, 2.0),
        _pair_row(5, 0),
        _pair_row(6, 3),
        _pair_row(7, None),
    ]
    src = _src(
        "table",
        columns={**PAIR_COLUMNS, "label": "label"},
        label_map={"1": "a", "2": "b", "0": "tie"},
    )
    out = read_table(src, _jsonl(tmp_path / "p.jsonl", rows), "judge")  # type: ignore[arg-type]
    assert _oriented(out) == [
        ("one 1", "two 1", False),
        ("two 2", "one 2", False),
        ("two 3", "one 3", False),
        ("two 4", "one 4", False),
        ("one 5", "two 5", True),
    ]
    assert [(r.row, r.reason) for r in out.rejected] == [(6, "bad_label"), (7, "bad_label")]
    assert "label 3 in field 'label' is not in label_map" in out.rejected[0].detail
    assert "label None" in out.rejected[1].detail
    assert len(out.records) == 10 and {r.response for r in out.records}.isdisjoint({"one 6"})

    dropped = read_table(src.model_copy(update={"ties": "drop"}), tmp_path / "p.jsonl", "judge")
    assert [t for *_, t in _oriented(dropped)] == [False] * 4 and dropped.ties_dropped == 1
    assert len(dropped.records) == 10  # a tie's responses stay samples


def test_scored_pairs_higher_wins(tmp_path: Path) -> None:
    rows = [
        {"input": "q", "output_1": "x", "output_2": "y", "s1": 0.2, "s2": 0.9},
        {"input": "q", "output_1": "x", "output_2": "z", "s1": 3, "s2": 1},
        {"input": "q", "output_1": "x", "output_2": "w", "s1": 1, "s2": 1},
        {"input": "q", "output_1": "x", "output_2": "v", "s1": "high", "s2": 1},
        {"input": "q", "output_1": "x", "output_2": "u", "s1": float("nan"), "s2": 1},
    ]
    src = _src("table", columns={**PAIR_COLUMNS, "score_a": "s1", "score_b": "s2"})
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")  # NaN as JSON allows
    out = read_table(src, path, "s")
    assert _oriented(out) == [("y", "x", False), ("x", "z", False), ("x", "w", True)]
    assert [(r.row, r.reason) for r in out.rejected] == [(4, "wrong_type"), (5, "bad_value")]
    csv = tmp_path / "s.csv"
    csv.write_text("input,output_1,output_2,s1,s2\nq,x,y,0.5,0.25\nq,x,z,n/a,1\n")
    out = read_table(src, csv, "s")  # a column with "n/a" is text: only that row fails
    assert _oriented(out) == [("x", "y", False)]
    assert [(r.row, r.reason) for r in out.rejected] == [(2, "wrong_type")]


def test_a_json_array_file_reads_and_a_broken_one_is_quarantined_whole(tmp_path: Path) -> None:
    good = tmp_path / "dataset.json"
    good.write_text(json.dumps([_pair_row(1, 1), _pair_row(2, 2)], indent=2))
    src = _src("table", columns={**PAIR_COLUMNS, "label": "label"}, label_map={"1": "a", "2": "b"})
    assert len(read_table(src, good, "j").preferences) == 2
    bad = tmp_path / "broken.json"
    bad.write_text('[\n  {"input": "q", "output_1": "a",\n  "output_2": "b" "label": 1}\n]\n')
    out = read_table(src, bad, "j")
    assert not out.records
    assert [(r.row, r.reason) for r in out.rejected] == [(3, "invalid_json")]
    assert "the JSON array file was not read" in out.rejected[0].detail
    one = tmp_path / "object.json"
    one.write_text(json.dumps({"data": [_pair_row(1, 1)]}, indent=2))
    out = read_table(src, one, "j")
    assert [(r.row, r.reason) for r in out.rejected] == [(1, "wrong_type")]
    assert "the file is one JSON object (keys: data)" in out.rejected[0].detail


# ---------------------------------------------------------------- many files per source


def _source(tmp_path: Path, **src: object) -> object:
    from paretohqd.config import config_from_dict
    from paretohqd.stages.kit.readers import read_source

    cfg = config_from_dict({"ingest": {"sources": [src]}}, base_dir=tmp_path, source="t")
    return read_source(cfg, 0, cfg.ingest.sources[0])


def test_a_directory_or_glob_reads_every_file_in_sorted_order(tmp_path: Path) -> None:
    for name in ("b/x/data.jsonl", "a/data.jsonl", "c/data.jsonl", ".hidden/data.jsonl"):
        (tmp_path / "d" / name).parent.mkdir(parents=True, exist_ok=True)
        _jsonl(tmp_path / "d" / name, [{"prompt": name, "response": "r"}])
    (tmp_path / "d/c/notes.txt").write_text("not data")
    by_dir = _source(tmp_path, kind="table", path="d")
    assert [r.prompt.split()[1] for r in by_dir.records] == [  # type: ignore[attr-defined]
        "a/data.jsonl",
        "b/x/data.jsonl",
        "c/data.jsonl",
    ]
    assert by_dir.files == 3  # type: ignore[attr-defined]
    by_glob = _source(tmp_path, kind="table", path="d/**/data.jsonl", limit=2)
    assert [Path(r.file).parent.name for r in by_glob.records] == ["a", "x"]  # type: ignore[attr-defined]
    with pytest.raises(DataError, match=r"sources\[0\]\.path: 'd/\*\*/none\.json' matches no"):
        _source(tmp_path, kind="table", path="d/**/none.json")


# ---------------------------------------------------------------- CSV / TSV options


def test_csv_semicolon_latin1_without_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("Qu'est-ce qu'un café ?;Une boisson.;2\nÇa va ?;Oui;1\n".encode("latin-1"))
    out = _source(
        tmp_path,
        kind="table",
        path="d.csv",
        delimiter=";",
        encoding="latin-1",
        has_header=False,
        columns={"prompt": "column_1", "response": "column_2"},
        extra_columns=["column_3"],
    )
    records = out.records  # type: ignore[attr-defined]
    assert [r.response for r in records] == ["Une boisson.", "Oui"]
    assert "café" in records[0].prompt and records[1].extras == {"column_3": 1.0}


def test_a_wrong_delimiter_says_which_it_likely_is(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("prompt;response\nhi;hello\n")
    with pytest.raises(DataError, match=r"one column found: is the delimiter ';'\?"):
        _source(tmp_path, kind="table", path="d.csv")
    (tmp_path / "d.tsv").write_text("prompt\tresponse\nhi\thello\n")
    assert len(_source(tmp_path, kind="table", path="d.tsv").records) == 1  # type: ignore[attr-defined]
    (tmp_path / "l.csv").write_bytes("prompt,response\ncafé,oui\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not utf-8 text .*set `encoding`"):
        _source(tmp_path, kind="table", path="l.csv")
