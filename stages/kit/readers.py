"""Dataset readers: each turns one source into records, rejected rows and human preferences.

A malformed row never stops a reader: it goes to the quarantine table with its file, row number
and reason. A problem with the whole source (missing file, a mapped column that is not there)
is a :class:`~paretohqd.errors.DataError` naming the config key to fix.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paretohqd.config import Config, SourceConfig
from paretohqd.errors import DataError
from paretohqd.stages.kit.records import (
    Preference,
    Record,
    Rejected,
    as_prompt,
    excerpt,
    pairs_by_rank,
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


def iter_json_rows(path: Path, label: str, out: ReaderOutput) -> Iterator[tuple[int, Any]]:
    """Rows of a JSONL file (or a JSON array file). A line that is not UTF-8, not JSON, or
    holds text that is not valid Unicode goes to quarantine with its line number. A UTF-8
    byte-order mark at the start of the file is skipped."""
    with _open_bytes(path) as fh:
        head, skipped = _first_byte(fh)
        if head == b"[":
            try:
                rows = _parse_json((head + fh.read()).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}: not a valid UTF-8 JSON array ({exc})") from None
            for row, raw in enumerate(rows, start=1):
                why = _clean_text(raw)
                if why:
                    out.rejected.append(Rejected(label, str(path), row, why, excerpt(raw)))
                else:
                    yield row, raw
            return
        first = head + fh.readline()
        for lineno, data in enumerate([first, *fh] if head else [], start=1 + skipped):
            if not data.strip():
                continue
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = f"not UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start})"
                shown = data.decode("utf-8", "replace")
                out.rejected.append(Rejected(label, str(path), lineno, reason, excerpt(shown)))
                continue
            try:
                raw = _parse_json(line)
            except json.JSONDecodeError as exc:
                out.rejected.append(
                    Rejected(label, str(path), lineno, f"invalid JSON: {exc.msg}", excerpt(line))
                )
                continue
            why = _clean_text(raw)
            if why:
                out.rejected.append(Rejected(label, str(path), lineno, why, excerpt(line)))
                continue
            yield lineno, raw


def _guard(out: ReaderOutput, label: str, path: Path, row: int, raw: Any) -> Callable[[str], None]:
    def reject(reason: str) -> None:
        out.rejected.append(Rejected(label, str(path), row, reason, excerpt(raw)))

    return reject


def _extras(row: Mapping[str, Any], names: list[str]) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for name in names:
        value = row.get(name)
        if value is None:
            values[name] = None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"extra column {name!r} is {type(value).__name__}, expected a number")
        elif not math.isfinite(value):
            raise ValueError(f"extra column {name!r} is {value}, expected a finite number")
        else:
            values[name] = float(value)
    return values


def _limit_reached(src: SourceConfig, count: int) -> bool:
    return src.limit is not None and count >= src.limit


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
    count = 0
    for row, raw in iter_json_rows(path, label, out):
        if _limit_reached(src, count):
            break
        reject = _guard(out, label, path, row, raw)
        if not isinstance(raw, dict):
            reject(f"row is {type(raw).__name__}, expected an object with chosen/rejected")
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
            reject(str(exc))
            continue
        count += 1
        out.records += [a, b]
        if same_prompt:
            out.preferences.append(Preference(a, b, label))
    return out


# ---------------------------------------------------------------- generic tables


def _table_rows(
    src: SourceConfig, path: Path, label: str, out: ReaderOutput
) -> Iterator[tuple[int, Any]]:
    fmt = src.format
    if fmt == "auto":
        name = path.name.lower().removesuffix(".gz")
        fmt = (
            "parquet" if name.endswith(".parquet") else "csv" if name.endswith(".csv") else "jsonl"
        )
    if fmt == "jsonl":
        yield from iter_json_rows(path, label, out)
        return
    import polars as pl

    try:
        frame = pl.read_parquet(path) if fmt == "parquet" else pl.read_csv(path)
    except Exception as exc:  # polars raises many types for unreadable files
        # polars adds paragraphs of advice about its own options: keep the first line
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path}: cannot read as {fmt}: {what}; fix the file, or set `format` for source "
            f"{label!r}"
        ) from None
    wanted = set(_mapping(src, label).values()) | set(src.extra_columns)
    missing = sorted(wanted - set(frame.columns))
    if missing:
        raise DataError(
            f"{path}: column(s) {', '.join(missing)} not found (columns: "
            f"{', '.join(frame.columns)}); fix ingest.sources[].columns for source {label!r}"
        )
    yield from enumerate(frame.iter_rows(named=True), start=1)


def _messages(value: Any, key: str) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        raise ValueError(
            f"field {key!r} is {type(value).__name__}, expected text or a list of chat messages"
        )
    if not all(isinstance(m, dict) for m in value):
        raise ValueError(f"field {key!r} is not a list of chat messages")
    turns = []
    for m in value:
        if "role" not in m or not isinstance(m.get("content"), str):
            raise ValueError(f"field {key!r}: every message needs 'role' and text 'content'")
        turns.append((str(m["role"]), m["content"]))
    return turns


def _completion(value: Any, key: str) -> str:
    """A response given as text or as a chat list ending with the assistant's message."""
    if isinstance(value, str):
        return value
    turns = _messages(value, key)
    if not turns or turns[-1][0] != "assistant":
        raise ValueError(f"field {key!r}: the last message must be the assistant's")
    return turns[-1][1]


def _prompt_value(value: Any, key: str) -> str:
    if isinstance(value, str):
        return as_prompt(value)
    return render_turns(_messages(value, key))


def _mapping(src: SourceConfig, label: str) -> dict[str, str]:
    """Validate a source's column mapping (default: prompt + response)."""
    cols = {"prompt": "prompt", "response": "response"} if not src.columns else src.columns
    known = {"prompt", "response", "chosen", "rejected", "messages"}
    unknown = sorted(set(cols) - known)
    if unknown:
        raise DataError(
            f"ingest source {label!r}: unknown column mapping key(s) {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(known))})"
        )
    shapes = [
        {"prompt", "response"},
        {"prompt", "chosen", "rejected"},
        {"chosen", "rejected"},
        {"messages"},
    ]
    if set(cols) not in shapes:
        raise DataError(
            f"ingest source {label!r}: columns must map prompt+response, prompt+chosen+rejected, "
            f"chosen+rejected (transcripts) or messages; got {', '.join(sorted(cols))}"
        )
    return cols


def read_table(src: SourceConfig, path: Path, label: str) -> ReaderOutput:
    """JSONL / Parquet / CSV with a column mapping.

    Mappings (keys are schema names, values the file's columns): ``prompt`` + ``response``;
    ``prompt`` + ``chosen`` + ``rejected`` (a human preference); ``chosen`` + ``rejected`` alone
    (HH transcripts); or ``messages`` (a chat list whose last message is the response). Values
    may be text or TRL-style lists of ``{"role", "content"}`` messages.
    """
    cols = _mapping(src, label)
    out = ReaderOutput()
    return _read_mapped(src, cols, path, label, _table_rows(src, path, label, out), out)


def _read_mapped(
    src: SourceConfig,
    cols: dict[str, str],
    path: Path,
    label: str,
    rows: Iterator[tuple[int, Any]],
    out: ReaderOutput,
) -> ReaderOutput:
    """The row logic of :func:`read_table`, over rows from any container."""
    count = 0
    for row, raw in rows:
        if _limit_reached(src, count):
            break
        reject = _guard(out, label, path, row, raw)
        if not isinstance(raw, dict):
            reject(f"row is {type(raw).__name__}, expected an object")
            continue
        try:
            for schema_name, column in cols.items():
                if column not in raw:
                    raise ValueError(f"missing field {column!r} (mapped as {schema_name})")
            extras = _extras(raw, src.extra_columns)
            group = f"{path}:{row}"
            if "messages" in cols:
                turns = _messages(raw[cols["messages"]], cols["messages"])
                if not turns or turns[-1][0] != "assistant":
                    raise ValueError("the last message must be the assistant's response")
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
            elif "prompt" in cols:
                prompt = _prompt_value(raw[cols["prompt"]], cols["prompt"])
                a = Record(
                    prompt,
                    _completion(raw[cols["chosen"]], cols["chosen"]),
                    label,
                    str(path),
                    row,
                    group,
                    "chosen",
                    extras=extras,
                )
                b = Record(
                    prompt,
                    _completion(raw[cols["rejected"]], cols["rejected"]),
                    label,
                    str(path),
                    row,
                    group,
                    "rejected",
                    extras=extras,
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
            reject(str(exc))
            continue
        count += 1
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
    count = 0
    for row, raw in iter_json_rows(path, label, out):
        if _limit_reached(src, count):
            break
        reject = _guard(out, label, path, row, raw)
        root = raw.get("prompt") if isinstance(raw, dict) else None
        if not isinstance(root, dict):
            reject("row has no 'prompt' message tree")
            continue
        try:
            n_before = len(out.records)
            _walk_oasst(root, [], out, label, str(path), row)
        except ValueError as exc:
            reject(str(exc))
            continue
        if len(out.records) == n_before:
            reject("tree has no usable assistant reply")
        count += 1
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
    count = 0
    for row, raw in iter_json_rows(path, label, out):
        if _limit_reached(src, count):
            break
        reject = _guard(out, label, path, row, raw)
        if not isinstance(raw, dict):
            reject(f"row is {type(raw).__name__}, expected an object")
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
            reject(str(exc))
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
        count += 1
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


def read_source(config: Config, index: int, src: SourceConfig) -> ReaderOutput:
    """Read one configured source, with errors that name its config key."""
    path = config.resolve(src.path)
    label = src.name or src.kind
    if not path.exists() and src.kind != "hf-datasets":
        raise DataError(
            f"ingest.sources[{index}].path: {path} does not exist (source {label!r}); "
            "paths are relative to the config file"
        )
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
