"""The ingest stage function: read every source, filter, dedupe, split, write."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from paretohqd.atomic import write_parquet
from paretohqd.config import Config, IngestConfig
from paretohqd.errors import DataError
from paretohqd.stage import StageContext
from paretohqd.stages.kit.readers import read_source
from paretohqd.stages.kit.records import (
    EXPECTED_REASONS,
    Preference,
    Record,
    Rejected,
    normalise,
    prompt_id,
    sample_id,
    to_messages,
)

if TYPE_CHECKING:
    import polars as pl

SAMPLE_COLUMNS = (
    "sample_id",
    "prompt_id",
    "prompt",
    "response",
    "source",
    "split",
    "source_file",
)


def _heldout(pid: str, seed: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    h = hashlib.sha256(f"{seed}:{pid}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 < fraction


def _token_lengths(cfg: IngestConfig, config: Config, records: list[Record]) -> list[int]:
    from transformers import AutoTokenizer

    name = cfg.tokenizer or ""
    local = config.resolve(name)
    tok = AutoTokenizer.from_pretrained(str(local) if local.exists() else name)
    texts = [r.prompt + " " + r.response for r in records]
    lengths: list[int] = []
    for i in range(0, len(texts), 1024):
        enc = tok(texts[i : i + 1024], add_special_tokens=False)["input_ids"]
        lengths += [len(x) for x in enc]
    return lengths


def _pair_keys(records: list[Record]) -> dict[str, frozenset[str]]:
    """Each pair group's members as a set of sample ids: two groups with the same set are the
    same pair read twice, where groups that merely share one response are not."""
    members: dict[str, set[str]] = {}
    for rec in records:
        if rec.group is not None:
            members.setdefault(rec.group, set()).add(sample_id(rec.prompt, rec.response))
    return {group: frozenset(ids) for group, ids in members.items()}


def _duplicate(
    rec: Record, first: Record, pair_keys: Mapping[str, frozenset[str]], detail: str
) -> tuple[str, str]:
    """The reason and detail of a record whose sample was already kept from ``first``.

    In pairwise data one response often meets several others: a repeat from a pair with
    another partner is ``shared_response``, an expected drop (the pair still refers to the one
    sample kept). The same two responses as an earlier pair (a pair listed twice, or swapped)
    is ``repeated_pair``, worth a look (a file read twice shows up here); anything else is
    ``duplicate``."""
    if rec.group is None or first.group is None or rec.group == first.group:
        return "duplicate", detail
    if pair_keys[rec.group] == pair_keys[first.group]:
        return "repeated_pair", f"{detail}: the same pair as that row; its relation counts once"
    return "shared_response", f"{detail}: a response shared by two pairs, both kept"


def filter_records(config: Config, records: list[Record]) -> tuple[list[Record], list[Rejected]]:
    """Apply the length filters and exact-duplicate removal; rejected rows say why.

    Duplicates are told apart by :func:`_duplicate`: only a response shared by several pairs
    is an expected drop."""
    cfg = config.ingest
    kept: list[Record] = []
    rejected: list[Rejected] = []
    lengths = (
        _token_lengths(cfg, config, records)
        if cfg.tokenizer and (cfg.min_tokens is not None or cfg.max_tokens is not None)
        else None
    )
    pair_keys = _pair_keys(records)
    seen: dict[str, Record] = {}
    for i, rec in enumerate(records):
        problem: tuple[str, str] | None = None
        p, r = normalise(rec.prompt), normalise(rec.response)
        if not any(m["content"] for m in to_messages(rec.prompt)):
            problem = ("empty", "prompt is empty (no text in any turn)")
        elif len(p) < cfg.min_prompt_chars:
            problem = ("too_short", f"prompt shorter than min_prompt_chars={cfg.min_prompt_chars}")
        elif cfg.max_prompt_chars is not None and len(p) > cfg.max_prompt_chars:
            problem = ("too_long", f"prompt longer than max_prompt_chars={cfg.max_prompt_chars}")
        elif len(r) < cfg.min_response_chars:
            problem = (
                "too_short",
                f"response shorter than min_response_chars={cfg.min_response_chars}",
            )
        elif cfg.max_response_chars is not None and len(r) > cfg.max_response_chars:
            problem = (
                "too_long",
                f"response longer than max_response_chars={cfg.max_response_chars}",
            )
        elif lengths is not None and cfg.min_tokens is not None and lengths[i] < cfg.min_tokens:
            problem = ("too_short", f"{lengths[i]} tokens < min_tokens={cfg.min_tokens}")
        elif lengths is not None and cfg.max_tokens is not None and lengths[i] > cfg.max_tokens:
            problem = ("too_long", f"{lengths[i]} tokens > max_tokens={cfg.max_tokens}")
        if problem is None and cfg.dedupe:
            sid = sample_id(rec.prompt, rec.response)
            first = seen.get(sid)
            if first is not None:
                where = f"{_rel(first.file, config.base_dir)} row {first.row}"
                problem = _duplicate(rec, first, pair_keys, f"duplicate of sample {sid} ({where})")
            else:
                seen[sid] = rec
        if problem is not None:
            reason, detail = problem
            rejected.append(
                Rejected(rec.source, rec.file, rec.row, reason, detail, rec.response[:200])
            )
        else:
            kept.append(rec)
    return kept, rejected


def run_ingest(ctx: StageContext) -> Mapping[str, Any]:
    """Read, filter, split and write samples, preferences and quarantine."""
    import polars as pl

    config = ctx.config
    records, rejected, preferences, per_source = _read_sources(config)
    kept, dropped = filter_records(config, records)
    rejected += dropped
    if not kept:
        raise _nothing_valid(config, rejected)

    samples = _samples_table(config, kept)
    write_parquet(ctx.path("samples"), samples)
    prefs = _preferences_table(preferences, samples)
    write_parquet(ctx.path("preferences"), prefs)
    quarantine = _quarantine_table(rejected, config.base_dir)
    write_parquet(ctx.path("quarantine"), quarantine)
    by_reason = dict(Counter(r.reason for r in rejected).most_common())
    return {
        "sources": {k: dict(v) for k, v in per_source.items()},
        "samples": samples.height,
        "prompts": samples["prompt_id"].n_unique(),
        "preferences": prefs.height,
        "ties": int(prefs["tie"].sum()),
        "quarantined": quarantine.height,
        "quarantine": by_reason,
        "notes": quarantine_notes(by_reason) + _tie_notes(per_source),
        "splits": dict(Counter(samples["split"].to_list())),
        "prompts_per_split": {
            split: int(n)
            for split, n in samples.group_by("split").agg(pl.col("prompt_id").n_unique()).rows()
        },
    }


def _nothing_valid(config: Config, rejected: list[Rejected]) -> DataError:
    """Why no sample survived: the commonest reasons and the first rejected row (file and
    row), or, when nothing was read at all, the files that held no rows."""
    if not rejected:
        files = ", ".join(
            _rel(str(config.resolve(src.path)), config.base_dir) for src in config.ingest.sources
        )
        return DataError(
            f"ingest: no valid samples remain: the sources hold no rows ({files}); "
            "check ingest.sources[].path"
        )
    reasons = Counter(r.reason for r in rejected)
    why = "; ".join(f"{n}× {reason}" for reason, n in reasons.most_common(5))
    first = rejected[0]
    return DataError(
        f"ingest: no valid samples remain ({why}; the first is "
        f"{_rel(first.file, config.base_dir)} row {first.row}: {first.detail}); fix those "
        "rows, or the source's columns"
    )


def _tie_notes(per_source: Mapping[str, Mapping[str, int]]) -> list[str]:
    """A line on pairs judged a tie whose relation ``ties = "drop"`` left out, if any."""
    dropped = {k: v.get("ties_dropped", 0) for k, v in per_source.items()}
    n = sum(dropped.values())
    if not n:
        return []
    where = ", ".join(f"{k} {v}" for k, v in dropped.items() if v)
    return [f'left {n} tied pair(s) out of preferences (ties = "drop"): {where}']


def _rows(n: int) -> str:
    return f"{n} row" if n == 1 else f"{n} rows"


def quarantine_notes(by_reason: Mapping[str, int]) -> list[str]:
    """The lines ingest prints after it ran: quarantined rows by reason, errors apart from
    expected drops, and the query that lists them (nothing when nothing was quarantined)."""
    errors = {k: n for k, n in by_reason.items() if k not in EXPECTED_REASONS}
    expected = {k: n for k, n in by_reason.items() if k in EXPECTED_REASONS}
    lines = []
    if errors:
        counts = ", ".join(f"{reason} {n}" for reason, n in errors.items())
        lines.append(f"quarantined {_rows(sum(errors.values()))} with problems: {counts}")
    if expected:
        counts = ", ".join(f"{reason} {n}" for reason, n in expected.items())
        lines.append(f"dropped {_rows(sum(expected.values()))} as expected: {counts}")
    if errors:
        lines.append(
            'see them: paretohqd sql "select reason, file, row, detail from quarantine '
            'where not expected order by file, row"'
        )
    return lines


def _read_sources(
    config: Config,
) -> tuple[list[Record], list[Rejected], list[Preference], dict[str, dict[str, int]]]:
    """Every source's records (tagged with the source's split), rejected rows and preference
    pairs, in config order, and counts per source (keyed by its name, or its kind when it has
    none) for the manifest."""
    records: list[Record] = []
    rejected: list[Rejected] = []
    preferences: list[Preference] = []
    per_source: dict[str, dict[str, int]] = {}
    for i, src in enumerate(config.ingest.sources):
        out = read_source(config, i, src)
        label = src.name or src.kind
        stats = per_source.setdefault(label, Counter())
        stats["records"] += len(out.records)
        stats["rejected_rows"] += len(out.rejected)
        stats["preferences"] += len(out.preferences)
        stats["ties_dropped"] += out.ties_dropped
        stats["files"] += out.files
        for rec in out.records:
            rec.split = src.split
        records += out.records
        rejected += out.rejected
        preferences += out.preferences
    return records, rejected, preferences, per_source


def _samples_table(config: Config, kept: list[Record]) -> pl.DataFrame:
    """The samples table: one row per kept record, ids from its text, held-out prompts moved
    to the ``eval`` split (by a seeded hash of the prompt id, so a prompt never straddles
    splits), and one Float64 column per extra field any record has (null where it lacks it)."""
    import polars as pl

    cfg = config.ingest
    extra_names = sorted({k for rec in kept for k in rec.extras})
    rows: dict[str, list[Any]] = {c: [] for c in SAMPLE_COLUMNS}
    rows.update({c: [] for c in ("rank", *extra_names)})
    for rec in kept:
        pid = prompt_id(rec.prompt)
        heldout = _heldout(pid, config.run.seed, cfg.heldout_fraction)
        rows["sample_id"].append(sample_id(rec.prompt, rec.response))
        rows["prompt_id"].append(pid)
        rows["prompt"].append(rec.prompt)
        rows["response"].append(normalise(rec.response))
        rows["source"].append(rec.source)
        rows["split"].append("eval" if heldout else rec.split)
        rows["source_file"].append(_rel(rec.file, config.base_dir))
        rows["rank"].append(rec.rank)
        for name in extra_names:
            rows[name].append(rec.extras.get(name))
    schema = (
        {c: pl.Utf8 for c in SAMPLE_COLUMNS}
        | {"rank": pl.Int32}
        | {n: pl.Float64 for n in extra_names}
    )
    return pl.DataFrame(rows, schema=schema)


def _preferences_table(preferences: list[Preference], samples: pl.DataFrame) -> pl.DataFrame:
    """The preference pairs whose both sides survived filtering, once each, in the split of
    their prompt (a pair whose chosen and rejected texts are the same sample says nothing).
    ``tie`` marks a pair judged equal (chosen/rejected are then the pair's a/b order): the
    consumers that need a winner (reward heads, the pairwise methods' human sign, the chosen
    SFT start) leave ties out."""
    import polars as pl

    valid = set(samples["sample_id"].to_list())
    split_of = dict(zip(samples["prompt_id"].to_list(), samples["split"].to_list(), strict=True))
    pref_rows: dict[str, list[Any]] = {
        k: [] for k in ("prompt_id", "chosen_id", "rejected_id", "source", "split", "tie")
    }
    seen_pairs: set[tuple[str, str]] = set()
    for pref in preferences:
        c = sample_id(pref.chosen.prompt, pref.chosen.response)
        r = sample_id(pref.rejected.prompt, pref.rejected.response)
        if c == r or c not in valid or r not in valid or (c, r) in seen_pairs:
            continue
        if pref.tie and (r, c) in seen_pairs:
            continue
        seen_pairs.add((c, r))
        pref_rows["tie"].append(pref.tie)
        pid = prompt_id(pref.chosen.prompt)
        pref_rows["prompt_id"].append(pid)
        pref_rows["chosen_id"].append(c)
        pref_rows["rejected_id"].append(r)
        pref_rows["source"].append(pref.source)
        pref_rows["split"].append(split_of[pid])
    schema = {k: pl.Boolean if k == "tie" else pl.Utf8 for k in pref_rows}
    return pl.DataFrame(pref_rows, schema=schema)


def _quarantine_table(rejected: list[Rejected], base_dir: Path) -> pl.DataFrame:
    """Every rejected row with its file relative to the config (portable across machines), a
    reason code to group by, the full detail, whether the drop is expected (not an error) and
    an excerpt, so a user can find and fix it."""
    import polars as pl

    return pl.DataFrame(
        {
            "source": [r.source for r in rejected],
            "file": [_rel(r.file, base_dir) for r in rejected],
            "row": [r.row for r in rejected],
            "reason": [r.reason for r in rejected],
            "detail": [r.detail for r in rejected],
            "expected": [r.reason in EXPECTED_REASONS for r in rejected],
            "excerpt": [r.excerpt for r in rejected],
        },
        schema={
            "source": pl.Utf8,
            "file": pl.Utf8,
            "row": pl.Int64,
            "reason": pl.Utf8,
            "detail": pl.Utf8,
            "expected": pl.Boolean,
            "excerpt": pl.Utf8,
        },
    )


def _rel(file: str, base: Path) -> str:
    """``file`` relative to the config's directory where it lies below it (as written, or
    with symbolic links resolved), else as it is."""
    for path, root in (
        (Path(file).absolute(), base.absolute()),
        (Path(file).resolve(), base.resolve()),
    ):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return file
