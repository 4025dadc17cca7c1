"""Dataset readers: each turns one source into records, rejected rows and human preferences.

A malformed row never stops a reader: it goes to the quarantine table with its file, row number,
a reason code (:data:`~paretohqd.stages.kit.records.REASONS`) and the full detail. A problem with
the whole source (missing file, a mapped column that is not there) is a
:class:`~paretohqd.errors.DataError` naming the config key to fix.

A source's ``path`` is a file, a directory (every file of the source's format below it) or a
glob (``**`` recursive); :func:`source_files` lists them in sorted order and
:func:`read_source` reads them one after another into one output, so a dataset shipped as a
tree of ``*/dataset.json`` files needs no converter.
"""

from __future__ import annotations

import functools
import glob
import gzip
import io
import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretohqd.config import Config, SourceConfig, column_mapping_problem
from paretohqd.errors import DataError
from paretohqd.stages.kit.records import (
    Preference,
    Record,
    Rejected,
    RowError,
    as_prompt,
    excerpt,
    pairs_by_rank,
    reason_of,
    render_turns,
    split_transcript,
    text_field,
)


@dataclass
class ReaderOutput:
    """What one source yields."""

    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    preferences: list[Preference] = field(default_factory=list)
    rows: int = 0  # rows turned into records (what ``limit`` counts, across a source's files)
    ties_dropped: int = 0  # pairs judged a tie whose relation ``ties = "drop"`` left out
    files: int = 0  # files read (a directory or glob source has many)

    def extend(self, other: ReaderOutput) -> None:
        """Append another file's output (a source of many files reads into one)."""
        self.records += other.records
        self.rejected += other.rejected
        self.preferences += other.preferences
        self.rows += other.rows
        self.ties_dropped += other.ties_dropped


Reader = Callable[[SourceConfig, Path, str], ReaderOutput]


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _clean_text(value: Any) -> str | None:
    """Why a parsed row cannot be stored as UTF-8 text (a lone UTF-16 surrogate from a JSON
    ``\\ud800`` escape), else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"text holds a lone surrogate {value[exc.start]!r} (not valid Unicode)"
        return None
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return next((why for item in items if (why := _clean_text(item))), None)


_BOM = b"\xef\xbb\xbf"


def _first_byte(fh: io.BufferedIOBase) -> tuple[bytes, int]:
    """The first byte of the file that is not a UTF-8 byte-order mark or whitespace, and how
    many line breaks came before it (so quarantined rows keep their real line numbers)."""
    head = fh.read(1)
    if head == _BOM[:1]:
        rest = fh.read(2)
        head = fh.read(1) if rest == _BOM[1:] else head + rest
    skipped = 0
    while head and head.isspace():
        skipped += head == b"\n"
        head = fh.read(1)
    return head, skipped


def _parse_json(text: str) -> Any:
    """``json.loads``; nesting too deep for the parser is a :class:`json.JSONDecodeError`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _parses(line: bytes) -> bool:
    try:
        _parse_json(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True


def _whole_document(data: bytes) -> Any:
    """``data`` parsed as one JSON document, or None where it is not one."""
    try:
        return _parse_json(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def iter_json_rows(path: Path, label: str, out: ReaderOutput) -> Iterator[tuple[int, Any]]:
    """Rows of a JSONL file (or a JSON array file). A line that is not UTF-8, not JSON, or
    holds text that is not valid Unicode goes to quarantine with its line number; a JSON array
    file that does not parse is quarantined whole (``invalid_json`` at the line of the error),
    so one broken file of many does not stop the others, and so is a file that is one
    pretty-printed JSON object (``wrong_type``: it holds no rows). A UTF-8 byte-order mark at
    the start of the file is skipped."""

    def reject(row: int, reason: str, detail: str, shown: Any) -> None:
        out.rejected.append(Rejected(label, str(path), row, reason, detail, excerpt(shown)))

    with _open_bytes(path) as fh:
        head, skipped = _first_byte(fh)
        if head == b"[":
            data = head + fh.read()
            try:
                rows = _parse_json(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                detail = (
                    f"not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}): the JSON "
                    "array file was not read"
                )
                reject(1 + skipped, "not_utf8", detail, "")
                return
            except json.JSONDecodeError as exc:
                detail = f"invalid JSON: {exc}: the JSON array file was not read"
                reject(
                    exc.lineno + skipped, "invalid_json", detail, exc.doc[exc.pos : exc.pos + 200]
                )
                return
            for row, raw in enumerate(rows, start=1):
                why = _clean_text(raw)
                if why:
                    reject(row, "invalid_unicode", why, raw)
                else:
                    yield row, raw
            return
        first = head + fh.readline()
        lines: Iterable[bytes] = itertools.chain([first], fh) if head else []
        if head == b"{" and not _parses(first):
            # not JSON Lines from its first line on: a pretty-printed single object, or a line
            # broken in two (then every line is judged on its own, as usual)
            data = first + fh.read()
            whole = _whole_document(data)
            if isinstance(whole, dict):
                keys = ", ".join(list(map(str, whole))[:5])
                detail = (
                    f"the file is one JSON object (keys: {keys}), not JSON Lines or an array of "
                    "objects: the file was not read"
                )
                reject(1 + skipped, "wrong_type", detail, data[:200].decode("utf-8", "replace"))
                return
            lines = data.splitlines(keepends=True)
        for lineno, data in enumerate(lines, start=1 + skipped):
            if not data.strip():
                continue
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                detail = f"not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start})"
                reject(lineno, "not_utf8", detail, data.decode("utf-8", "replace"))
                continue
            try:
                raw = _parse_json(line)
            except json.JSONDecodeError as exc:
                reject(lineno, "invalid_json", f"invalid JSON: {exc}", line)
                continue
            why = _clean_text(raw)
            if why:
                reject(lineno, "invalid_unicode", why, line)
                continue
            yield lineno, raw


def _guard(
    out: ReaderOutput, label: str, path: Path, row: int, raw: Any
) -> Callable[[ValueError], None]:
    """A function that quarantines this row for a row-level error."""

    def reject(exc: ValueError) -> None:
        out.rejected.append(Rejected(label, str(path), row, reason_of(exc), str(exc), excerpt(raw)))

    return reject


def _not_an_object(raw: Any, expected: str = "an object") -> RowError:
    return RowError("wrong_type", f"row is {type(raw).__name__}, expected {expected}")


def _extras(row: Mapping[str, Any], names: list[str]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for name in names:
        value = row.get(name)
        if value is None:
            values[name] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise RowError(
                "wrong_type", f"extra column {name!r} is {type(value).__name__}, expected a number"
            )
        elif not math.isfinite(value):
            raise RowError(
                "bad_value", f"extra column {name!r} is {value}, expected a finite number"
            )
        else:
            values[name] = float(value)
    return values


def _limit_reached(src: SourceConfig, rows: int) -> bool:
    return src.limit is not None and rows >= src.limit


# ---------------------------------------------------------------- HH-RLHF transcripts


def _transcript_pair(
    chosen: str,
    rejected: str,
    *,
    label: str,
    file: str,
    row: int,
    group: str,
    extras: dict[str, float | None],
) -> tuple[Record, Record, bool]:
    cp, cr = split_transcript(chosen)
    rp, rr = split_transcript(rejected)
    a = Record(cp, cr, label, file, row, group, "chosen", extras=extras)
    b = Record(rp, rr, label, file, row, group, "rejected", extras=extras)
    return a, b, cp == rp


def read_hh_rlhf(src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    """HH-RLHF jsonl(.gz): each line has ``chosen`` and ``rejected`` transcripts.

    Both become samples, split at the last ``"\\n\\nAssistant:"``; the pair is kept as a human
    preference when both share the same prompt.
    """
    out = ReaderOutput()
    for row, raw in iter_json_rows(path, label, out):
        if _limit_reached(src, out.rows):
            break
        reject = _guard(out, label, path, row, raw)
        if not isinstance(raw, dict):
            reject(_not_an_object(raw, "an object with chosen/rejected"))
            continue
        try:
            a, b, same_prompt = _transcript_pair(
                text_field(raw, "chosen"),
                text_field(raw, "rejected"),
                label=label,
                file=str(path),
                row=row,
                group=f"{path}:{row}",
                extras=_extras(raw, src.extra_columns),
            )
        except ValueError as exc:
            reject(exc)
            continue
        out.rows += 1
        out.records += [a, b]
        if same_prompt:
            out.preferences.append(Preference(a, b, label))
    return out


# ---------------------------------------------------------------- generic tables


def table_format(src: SourceConfig, path: Path) -> str:
    """The format a ``table`` file is read as: ``src.format``, or by its name under ``auto``
    (.parquet, .csv, .tsv; anything else JSON Lines or a JSON array)."""
    if src.format != "auto":
        return src.format
    name = path.name.lower().removesuffix(".gz")
    for fmt in ("parquet", "csv", "tsv"):
        if name.endswith(f".{fmt}"):
            return fmt
    return "jsonl"


#: Characters a CSV file is commonly delimited by, for the hint when one column is found.
_DELIMITERS = (",", ";", "\t", "|")


def _delimiter_hint(text: str, used: str) -> str | None:
    """The likeliest other delimiter of a CSV file read as one column: the commonest of
    :data:`_DELIMITERS` on its first line, if any occurs."""
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    counts = {d: first.count(d) for d in _DELIMITERS if d != used}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else None


def _csv_frame(src: SourceConfig, path: Path, fmt: str, label: str, text_columns: set[str]) -> Any:
    """A CSV/TSV file as a polars frame, decoded with the source's ``encoding``; mapped text
    columns stay text (a prompt "42" is not a number), numeric ones are inferred. Without a
    header the columns are ``column_1``, ``column_2``, ... (numbered from 1, as rows are)."""
    import codecs

    import polars as pl

    with _open_bytes(path) as fh:
        data = fh.read()
    utf8 = codecs.lookup(src.encoding).name == "utf-8"
    try:
        text = data.decode("utf-8-sig" if utf8 else src.encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not {src.encoding} text (byte {data[exc.start]:#04x} at offset "
            f'{exc.start}); set `encoding` for source {label!r} (e.g. "latin-1" or "cp1252")'
        ) from None
    delimiter = src.delimiter or ("\t" if fmt == "tsv" else ",")
    options: dict[str, Any] = {
        "separator": delimiter,
        "quote_char": src.quote_char or None,
        "has_header": src.has_header,
    }
    buffer = text.encode("utf-8")
    try:
        if not src.has_header:
            width = pl.read_csv(io.BytesIO(buffer), n_rows=1, infer_schema=False, **options).width
            options["new_columns"] = [f"column_{i}" for i in range(1, width + 1)]
            names = set(options["new_columns"])
        else:
            names = set(pl.read_csv(io.BytesIO(buffer), n_rows=0, **options).columns)
        overrides = {c: pl.Utf8 for c in text_columns & names}
        frame = pl.read_csv(io.BytesIO(buffer), schema_overrides=overrides, **options)
    except Exception as exc:  # polars raises many types for unreadable files
        hint = _delimiter_hint(text, delimiter)
        also = f"; is the delimiter {hint!r}?" if hint else ""
        raise DataError(
            f"{path}: cannot read as {fmt}: {_first_line(exc)}{also} (read with delimiter "
            f"{delimiter!r}); fix the file, or set `delimiter`, `quote_char` or `format` for "
            f"source {label!r}"
        ) from None
    wanted = set(_mapping(src, label).values())
    if frame.width == 1 and len(wanted) > 1:
        hint = _delimiter_hint(text, delimiter)
        guess = f"is the delimiter {hint!r}?" if hint else "is it a CSV file?"
        raise DataError(
            f"{path}: one column found: {guess} (read with delimiter {delimiter!r}); set "
            f"`delimiter` for source {label!r}"
        )
    return frame


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (polars adds paragraphs of advice about its
    own options that name nothing in this config)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _table_rows(
    src: SourceConfig, path: Path, label: str, out: ReaderOutput
) -> Iterator[tuple[int, Any]]:
    fmt = table_format(src, path)
    if fmt in ("jsonl", "json"):
        yield from iter_json_rows(path, label, out)
        return
    import polars as pl

    cols = _mapping(src, label)
    if fmt == "parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises many types for unreadable files
            raise DataError(
                f"{path}: cannot read as parquet: {_first_line(exc)}; fix the file, or set "
                f"`format` for source {label!r}"
            ) from None
    else:
        text_columns = {c for k, c in cols.items() if k not in ("label", "score_a", "score_b")}
        frame = _csv_frame(src, path, fmt, label, text_columns)
    wanted = set(cols.values()) | set(src.extra_columns)
    missing = sorted(wanted - set(frame.columns))
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found (columns: "
            f"{', '.join(frame.columns)}); fix ingest.sources[].columns for source {label!r}"
        )
    yield from enumerate(frame.iter_rows(named=True), start=1)


def _messages(value: Any, key: str) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise RowError(
            "wrong_type",
            f"field {key!r} is {type(value).__name__}, expected text or a list of chat messages",
        )
    if not all(isinstance(m, dict) for m in value):
        raise RowError("wrong_type", f"field {key!r} is not a list of chat messages")
    turns = []
    for m in value:
        if "role" not in m or not isinstance(m.get("content"), str):
            raise RowError(
                "malformed", f"field {key!r}: every message needs 'role' and text 'content'"
            )
        turns.append((str(m["role"]), m["content"]))
    return turns


def _completion(value: Any, key: str) -> str:
    """A response given as text or as a chat list ending with the assistant's message."""
    if isinstance(value, str):
        return value
    turns = _messages(value, key)
    if not turns or turns[-1][0] != "assistant":
        raise RowError("malformed", f"field {key!r}: the last message must be the assistant's")
    return turns[-1][1]


def _prompt_value(value: Any, key: str) -> str:
    if isinstance(value, str):
        return as_prompt(value)
    return render_turns(_messages(value, key))


def _mapping(src: SourceConfig, label: str) -> dict[str, str]:
    """Validate a source's column mapping (default: prompt + response). The config checks it
    at load too; this covers mappings a reader derives (hf-datasets)."""
    cols = {"prompt": "prompt", "response": "response"} if not src.columns else src.columns
    problem = column_mapping_problem(cols)
    if problem:
        raise DataError(f"ingest source {label!r}: {problem}")
    return cols


def label_key(value: Any) -> str:
    """A label value as the text ``label_map`` keys it by: ``1``, ``1.0`` and ``"1"`` are all
    ``"1"`` (TOML keys are text, and a CSV or JSON file may hold either)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if isinstance(value, str) else str(value)


def _score(raw: Mapping[str, Any], column: str) -> float:
    """A pair's score: a number, or text that is one (a CSV column with a blank or "n/a" in
    some rows is read as text, and only those rows should fail)."""
    value = raw[column]
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise RowError(
                "wrong_type", f"score field {column!r} is {value!r}, expected a number"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(
            "wrong_type", f"score field {column!r} is {type(value).__name__}, expected a number"
        )
    if not math.isfinite(value):
        raise RowError("bad_value", f"score field {column!r} is {value}, expected a finite number")
    return float(value)


def _verdict(src: SourceConfig, cols: Mapping[str, str], raw: Mapping[str, Any], label: str) -> str:
    """Which response of a pair won: ``a``, ``b`` or ``tie``, by its label (through
    ``label_map``) or by its two scores (higher wins, equal is a tie)."""
    if "label" in cols:
        value = raw[cols["label"]]
        verdict = src.label_map.get(label_key(value))
        if verdict is None:
            mapped = ", ".join(repr(k) for k in src.label_map)
            raise RowError(
                "bad_label",
                f"label {value!r} in field {cols['label']!r} is not in label_map (mapped: "
                f"{mapped}); add it to label_map of source {label!r} or fix the row",
            )
        return verdict
    a, b = _score(raw, cols["score_a"]), _score(raw, cols["score_b"])
    return "a" if a > b else "b" if b > a else "tie"


def read_table(src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    """JSONL / JSON array / Parquet / CSV / TSV with a column mapping.

    Mappings (keys are schema names, values the file's columns): ``prompt`` + ``response``;
    ``prompt`` + ``chosen`` + ``rejected`` (a human preference); ``chosen`` + ``rejected`` alone
    (HH transcripts); ``messages`` (a chat list whose last message is the response);
    ``prompt`` + ``response_a`` + ``response_b`` + ``label`` (a labelled pair, oriented by
    ``label_map``) or + ``score_a`` + ``score_b`` (higher wins). Values may be text or
    TRL-style lists of ``{"role", "content"}`` messages.
    """
    cols = _mapping(src, label)
    out = ReaderOutput()
    return _read_mapped(src, cols, path, label, _table_rows(src, path, label, out), out)


def _pair(
    src: SourceConfig,
    cols: Mapping[str, str],
    raw: Mapping[str, Any],
    out: ReaderOutput,
    rec: Callable[..., Record],
    label: str,
) -> list[Record]:
    """The two records of a labelled or scored pair and, oriented by its verdict, their
    preference (a tie is kept with ``tie`` set, or left out under ``ties = "drop"``)."""
    prompt = _prompt_value(raw[cols["prompt"]], cols["prompt"])
    a = rec(prompt, _completion(raw[cols["response_a"]], cols["response_a"]), role="a")
    b = rec(prompt, _completion(raw[cols["response_b"]], cols["response_b"]), role="b")
    verdict = _verdict(src, cols, raw, label)
    if verdict == "a":
        out.preferences.append(Preference(a, b, label))
    elif verdict == "b":
        out.preferences.append(Preference(b, a, label))
    elif src.ties == "keep":
        out.preferences.append(Preference(a, b, label, tie=True))
    else:
        out.ties_dropped += 1
    return [a, b]


def _read_mapped(
    src: SourceConfig,
    cols: dict[str, str],
    path: Path,
    label: str,
    rows: Iterator[tuple[int, Any]],
    out: ReaderOutput,
) -> ReaderOutput:
    """The row logic of :func:`read_table`, over rows from any container."""
    for row, raw in rows:
        if _limit_reached(src, out.rows):
            break
        reject = _guard(out, label, path, row, raw)
        if not isinstance(raw, dict):
            reject(_not_an_object(raw))
            continue
        n_prefs = len(out.preferences)
        try:
            for schema_name, column in cols.items():
                if column not in raw:
                    raise RowError(
                        "missing_field", f"missing field {column!r} (mapped as {schema_name})"
                    )
            extras = _extras(raw, src.extra_columns)
            group = f"{path}:{row}"

            rec = functools.partial(
                Record, source=label, file=str(path), row=row, group=group, extras=extras
            )

            if "messages" in cols:
                turns = _messages(raw[cols["messages"]], cols["messages"])
                if not turns or turns[-1][0] != "assistant":
                    raise RowError("malformed", "the last message must be the assistant's response")
                recs = [
                    Record(
                        render_turns(turns[:-1]), turns[-1][1], label, str(path), row, extras=extras
                    )
                ]
            elif "response" in cols:
                recs = [
                    Record(
                        _prompt_value(raw[cols["prompt"]], cols["prompt"]),
                        _completion(raw[cols["response"]], cols["response"]),
                        label,
                        str(path),
                        row,
                        extras=extras,
                    )
                ]
            elif "response_a" in cols:
                recs = _pair(src, cols, raw, out, rec, label)
            elif "prompt" in cols:
                prompt = _prompt_value(raw[cols["prompt"]], cols["prompt"])
                a = rec(prompt, _completion(raw[cols["chosen"]], cols["chosen"]), role="chosen")
                b = rec(
                    prompt, _completion(raw[cols["rejected"]], cols["rejected"]), role="rejected"
                )
                recs = [a, b]
                out.preferences.append(Preference(a, b, label))
            else:
                a, b, same = _transcript_pair(
                    text_field(raw, cols["chosen"]),
                    text_field(raw, cols["rejected"]),
                    label=label,
                    file=str(path),
                    row=row,
                    group=group,
                    extras=extras,
                )
                recs = [a, b]
                if same:
                    out.preferences.append(Preference(a, b, label))
        except ValueError as exc:
            del out.preferences[n_prefs:]
            reject(exc)
            continue
        out.rows += 1
        out.records += recs
    return out


# ---------------------------------------------------------------- OpenAssistant trees


def read_oasst(src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    """OpenAssistant message trees (one tree per line, as in the ``*_tree.jsonl`` exports).

    Every assistant reply becomes a sample whose prompt is the conversation above it; sibling
    replies with a human ``rank`` give preference pairs (rank 0 is best). Deleted or failed-review
    messages are skipped.
    """
    out = ReaderOutput()
    for row, raw in iter_json_rows(path, label, out):
        if _limit_reached(src, out.rows):
            break
        reject = _guard(out, label, path, row, raw)
        root = raw.get("prompt") if isinstance(raw, dict) else None
        if not isinstance(root, dict):
            reject(RowError("missing_field", "row has no 'prompt' message tree"))
            continue
        try:
            n_before = len(out.records)
            _walk_oasst(root, [], out, label, str(path), row)
        except ValueError as exc:
            reject(exc)
            continue
        if len(out.records) == n_before:
            reject(RowError("empty", "tree has no usable assistant reply"))
        out.rows += 1
    return out


def _walk_oasst(
    node: dict[str, Any],
    turns: list[tuple[str, str]],
    out: ReaderOutput,
    label: str,
    file: str,
    row: int,
) -> None:
    if node.get("deleted") or node.get("review_result") is False:
        return
    role = node.get("role")
    text = node.get("text")
    if role not in ("prompter", "assistant") or not isinstance(text, str):
        raise ValueError(f"message {node.get('message_id')!r} has no role/text")
    here = [*turns, ("user" if role == "prompter" else "assistant", text)]
    replies = [r for r in node.get("replies", []) or [] if isinstance(r, dict)]
    if role == "prompter":
        prompt = render_turns(here)
        group = f"{file}:{node.get('message_id')}"
        siblings = []
        for reply in replies:
            if reply.get("role") != "assistant" or reply.get("deleted"):
                continue
            if reply.get("review_result") is False or not isinstance(reply.get("text"), str):
                continue
            rank = reply.get("rank")
            rec = Record(
                prompt,
                reply["text"],
                label,
                file,
                row,
                group,
                rank=int(rank) if isinstance(rank, int | float) else None,
            )
            out.records.append(rec)
            siblings.append(rec)
        out.preferences += pairs_by_rank(siblings, label)
    for reply in replies:
        _walk_oasst(reply, here, out, label, file, row)


# ---------------------------------------------------------------- PandaLM pairwise


def read_pandalm(src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    """PandaLM-style pairwise files: instruction, input, response1, response2, annotator votes.

    Votes are 1 or 2 (which response is better) or 0 (tie); the majority makes a preference, a
    tie or split vote keeps both samples without one.
    """
    out = ReaderOutput()
    for row, raw in iter_json_rows(path, label, out):
        if _limit_reached(src, out.rows):
            break
        reject = _guard(out, label, path, row, raw)
        if not isinstance(raw, dict):
            reject(_not_an_object(raw))
            continue
        try:
            instruction = text_field(raw, "instruction")
            extra_input = raw.get("input") or ""
            if not isinstance(extra_input, str):
                raise ValueError("field 'input' is not text")
            prompt = as_prompt(f"{instruction}\n\n{extra_input}".strip())
            r1, r2 = text_field(raw, "response1"), text_field(raw, "response2")
            votes = [raw[k] for k in sorted(raw) if k.startswith("annotator")]
            extras = _extras(raw, src.extra_columns)
        except ValueError as exc:
            reject(exc)
            continue
        group = f"{path}:{row}"
        a = Record(prompt, r1, label, str(path), row, group, extras=extras)
        b = Record(prompt, r2, label, str(path), row, group, extras=extras)
        out.records += [a, b]
        ones, twos = votes.count(1), votes.count(2)
        if ones > twos and ones * 2 > len(votes):
            out.preferences.append(Preference(a, b, label))
        elif twos > ones and twos * 2 > len(votes):
            out.preferences.append(Preference(b, a, label))
        out.rows += 1
    return out


# ---------------------------------------------------------------- Hugging Face datasets


def read_hf_datasets(src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    """A ``datasets`` directory saved with ``save_to_disk``, or a hub id when online.

    Rows are read with the same column mapping as :func:`read_table`; with no mapping, a
    dataset with ``chosen``/``rejected`` transcripts (like Anthropic/hh-rlhf) is read as HH-RLHF.
    """
    try:
        import datasets
    except ImportError:
        raise DataError(
            "the hf-datasets reader needs the `datasets` package: pip install datasets"
        ) from None
    if path.exists():
        ds: Any = datasets.load_from_disk(str(path))
    else:
        ds = datasets.load_dataset(src.path, split=src.hf_split or "train")
    if isinstance(ds, datasets.DatasetDict):
        if src.hf_split is None and len(ds) != 1:
            raise DataError(
                f"{path} holds splits {', '.join(ds)}; "
                f"choose one with hf_split for source {label!r}"
            )
        ds = ds[src.hf_split or next(iter(ds))]
    columns = src.columns
    if (
        not columns
        and {"chosen", "rejected"} <= set(ds.column_names)
        and ("prompt" not in ds.column_names)
    ):
        columns = {"chosen": "chosen", "rejected": "rejected"}
    wanted = set(columns.values() or {"prompt", "response"}) | set(src.extra_columns)
    missing = sorted(wanted - set(ds.column_names))
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found (columns: "
            f"{', '.join(ds.column_names)}); fix ingest.sources[].columns for source {label!r}"
        )
    tmp = src.model_copy(update={"columns": columns})
    cols = _mapping(tmp, label)
    rows = ((i + 1, dict(r)) for i, r in enumerate(ds))
    return _read_mapped(tmp, cols, path, label, rows, ReaderOutput())


READERS: dict[str, Reader] = {
    "hh-rlhf": read_hh_rlhf,
    "table": read_table,
    "oasst": read_oasst,
    "pandalm": read_pandalm,
    "hf-datasets": read_hf_datasets,
}


#: Characters that make a source path a glob.
GLOB_CHARS = re.compile(r"[*?[]")

#: File name endings each reader reads when its ``path`` is a directory (``.gz`` allowed too,
#: except for Parquet).
_JSON_SUFFIXES = (".jsonl", ".json")
_TABLE_SUFFIXES = {
    "auto": (*_JSON_SUFFIXES, ".parquet", ".csv", ".tsv"),
    "jsonl": _JSON_SUFFIXES,
    "json": _JSON_SUFFIXES,
    "parquet": (".parquet",),
    "csv": (".csv",),
    "tsv": (".tsv",),
}


def _suffixes(src: SourceConfig) -> tuple[str, ...]:
    return _TABLE_SUFFIXES[src.format] if src.kind == "table" else _JSON_SUFFIXES


def _of_format(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return name.endswith(suffixes) or (
        name.endswith(".gz")
        and name.removesuffix(".gz").endswith(suffixes)
        and not name.endswith(".parquet.gz")
    )


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def source_files(config: Config, index: int, src: SourceConfig) -> list[Path]:
    """The files a source reads, in sorted order: its ``path`` as one file; every file of the
    source's format below a directory (hidden files and directories skipped); or every file a
    glob matches (``**`` crosses directories). An ``hf-datasets`` path is one dataset
    directory (or a hub id). Nothing to read is a :class:`DataError` naming the key."""
    label = src.name or src.kind
    key = f"ingest.sources[{index}].path"
    path = config.resolve(src.path)
    if src.kind == "hf-datasets":
        return [path]
    if not path.exists() and GLOB_CHARS.search(src.path):  # a file named "a[1].jsonl" is a file
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
        files = [p for p in found if p.is_file()]
        if not files:
            raise DataError(
                f"{key}: {src.path!r} matches no files (source {label!r}); globs are relative "
                "to the config file, and `**` matches any number of directories"
            )
        return files
    if path.is_dir():
        suffixes = _suffixes(src)
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file() and not _hidden(p, path) and _of_format(p, suffixes)
        )
        if not files:
            raise DataError(
                f"{key}: the directory {path} holds no {'/'.join(suffixes)} files (source "
                f"{label!r}); point at the files, or set `format` for source {label!r}"
            )
        return files
    if not path.exists():
        raise DataError(
            f"{key}: {path} does not exist (source {label!r}); paths are relative to the "
            "config file"
        )
    return [path]


def read_source(config: Config, index: int, src: SourceConfig) -> ReaderOutput:
    """Read one configured source (every file of it, in sorted order, ``limit`` counting
    across them), with errors that name its config key."""
    label = src.name or src.kind
    out = ReaderOutput()
    for path in source_files(config, index, src):
        if _limit_reached(src, out.rows):
            break
        left = None if src.limit is None else src.limit - out.rows
        part = src if left == src.limit else src.model_copy(update={"limit": left})
        out.extend(_read_file(index, part, path, label))
        out.files += 1
    return out


def _read_file(index: int, src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    try:
        return READERS[src.kind](src, path, label)
    except (OSError, EOFError) as exc:  # a directory, a bad or cut .gz, unreadable bytes
        if src.kind == "hf-datasets":
            where = path if path.exists() else f"{src.path!r} (no such directory; as a hub id)"
            raise DataError(
                f"ingest.sources[{index}].path: {where} (source {label!r}): "
                f"{_file_problem(exc)}; give a directory saved with save_to_disk, or a hub "
                "dataset id while online"
            ) from None
        what = "a directory, not a file" if path.is_dir() else _file_problem(exc)
        raise DataError(
            f"ingest.sources[{index}].path: {path} (source {label!r}): {what}; fix or replace "
            "the file"
        ) from None


def _file_problem(exc: BaseException) -> str:
    """One line on what is wrong with a whole file."""
    if isinstance(exc, gzip.BadGzipFile):
        return "not a gzip file although it ends in .gz"
    if isinstance(exc, EOFError):
        return "cut short (the compressed stream ends early)"
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    lines = text.strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__
