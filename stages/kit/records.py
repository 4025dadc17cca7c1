"""The one sample schema every reader produces, and the text normalisation behind its ids.

Prompts are stored as HH-RLHF style transcripts (``"\\n\\nHuman: ...\\n\\nAssistant:"``) for
every source: that is the format the published reward models were trained on, and one format
means no later stage knows which dataset a row came from. Ids are content hashes, so the same
(prompt, response) gets the same ``sample_id`` in every run and every source.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"


def normalise(text: str) -> str:
    """NFC, ``\\r\\n`` → ``\\n``, surrounding whitespace stripped."""
    return unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def prompt_id(prompt: str) -> str:
    """Stable id of a prompt (16 hex chars of sha256 of the normalised text)."""
    return _digest(normalise(prompt))


def sample_id(prompt: str, response: str) -> str:
    """Stable id of a (prompt, response) pair."""
    return _digest(normalise(prompt), normalise(response))


def render_turns(turns: Sequence[tuple[str, str]]) -> str:
    """Render (role, text) turns as an HH transcript ending with an open assistant turn."""
    out: list[str] = []
    pending_system = ""
    for role, text in turns:
        text = normalise(text)
        if role == "system":
            pending_system = f"{pending_system}{text}\n\n"
        elif role in ("user", "human", "prompter"):
            out.append(f"{HUMAN} {pending_system}{text}")
            pending_system = ""
        elif role == "assistant":
            out.append(f"{ASSISTANT} {text}")
        else:
            raise ValueError(f"unknown chat role {role!r} (expected system, user or assistant)")
    return "".join(out) + ASSISTANT


def as_prompt(text: str) -> str:
    """Turn a plain user prompt into a one-turn transcript (transcripts pass through)."""
    text = text.replace("\r\n", "\n")
    if text.lstrip().startswith("Human:") and text.rstrip().endswith("Assistant:"):
        body = text.strip()
        return "\n\n" + body
    return render_turns([("user", text)])


def to_messages(prompt: str) -> list[dict[str, str]]:
    """Parse a stored transcript back into chat messages (for chat-template prompts)."""
    messages: list[dict[str, str]] = []
    rest = prompt
    while rest:
        h = rest.find(HUMAN)
        a = rest.find(ASSISTANT)
        starts = [(i, r) for i, r in ((h, "user"), (a, "assistant")) if i >= 0]
        if not starts:
            break
        i, role = min(starts)
        marker = HUMAN if role == "user" else ASSISTANT
        rest = rest[i + len(marker) :]
        nxt = [j for j in (rest.find(HUMAN), rest.find(ASSISTANT)) if j >= 0]
        end = min(nxt) if nxt else len(rest)
        text = rest[:end].strip()
        rest = rest[end:]
        if text or role == "user":
            messages.append({"role": role, "content": text})
    return messages


def split_transcript(transcript: str) -> tuple[str, str]:
    """Split an HH transcript at its last ``\\n\\nAssistant:`` into (prompt, response)."""
    cut = transcript.rfind(ASSISTANT)
    if cut < 0:
        raise ValueError("no '\\n\\nAssistant:' turn in the transcript")
    prompt = transcript[: cut + len(ASSISTANT)]
    if not prompt.startswith("\n\n"):
        prompt = "\n\n" + prompt.lstrip()
    return prompt, transcript[cut + len(ASSISTANT) :].strip()


@dataclass
class Record:
    """One candidate sample, before filtering."""

    prompt: str
    response: str
    source: str
    file: str
    row: int
    group: str | None = None
    role: str | None = None
    rank: int | None = None
    extras: dict[str, float | None] = field(default_factory=dict)
    split: str = "train"


#: The quarantine's ``reason`` vocabulary: a short code per kind of problem, so that
#: ``group by reason`` gives a handful of rows; the full text goes to ``detail``.
REASONS: dict[str, str] = {
    "not_utf8": "a line or file that is not valid text in its encoding",
    "invalid_json": "a line (or a whole JSON file) that does not parse as JSON",
    "invalid_unicode": "text holding a lone UTF-16 surrogate",
    "missing_field": "a mapped or required field is absent",
    "wrong_type": "a row or field of the wrong type (a list where an object goes, ...)",
    "bad_value": "a number that is NaN, infinite or not a number where one is needed",
    "malformed": "a transcript with no assistant turn, a chat list that does not end with "
    "the assistant, an unknown chat role",
    "bad_label": "a pair's label that label_map does not map",
    "empty": "a prompt with no text, or a message tree with no usable reply",
    "too_short": "below a min_*_chars or min_tokens filter",
    "too_long": "above a max_*_chars or max_tokens filter",
    "duplicate": "the same (prompt, response) as an earlier sample, outside a pair",
    "repeated_pair": "the same two responses to a prompt as an earlier pair (listed twice or "
    "swapped): its relation counts once",
    "shared_response": "a response already ingested from another pair of the same prompt: "
    "expected in pairwise data, the pair still refers to the one sample",
}

#: Reasons that are not errors in the data: the quarantine marks them ``expected`` and ingest
#: counts them apart.
EXPECTED_REASONS = frozenset({"shared_response"})


class RowError(ValueError):
    """A row that cannot be used: ``reason`` is a code of :data:`REASONS`, the message the
    full ``detail``. A plain ``ValueError`` from a parser counts as ``malformed``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def reason_of(exc: ValueError) -> str:
    """The quarantine reason of a row-level error."""
    return exc.reason if isinstance(exc, RowError) else "malformed"


@dataclass
class Rejected:
    """A row that could not be used, and why (goes to ``quarantine.parquet``): ``reason`` is a
    code of :data:`REASONS`, ``detail`` the full message, never cut."""

    source: str
    file: str
    row: int
    reason: str
    detail: str
    excerpt: str = ""


@dataclass
class Preference:
    """A human preference between two records of one reader (by their ``group`` + role); a
    ``tie`` says neither is better (``chosen``/``rejected`` are then just the pair's order)."""

    chosen: Record
    rejected: Record
    source: str
    tie: bool = False


def excerpt(value: Any, limit: int = 200) -> str:
    """A short, printable excerpt of a raw row for the quarantine table."""
    text = value if isinstance(value, str) else repr(value)
    return text[:limit]


def text_field(row: Mapping[str, Any], key: str) -> str:
    """A required string field of a row, with a clear error when it is missing or not text."""
    if key not in row:
        raise RowError("missing_field", f"missing field {key!r}")
    value = row[key]
    if not isinstance(value, str):
        raise RowError("wrong_type", f"field {key!r} is {type(value).__name__}, expected text")
    return value


def pairs_by_rank(records: Iterable[Record], source: str) -> list[Preference]:
    """All (better, worse) pairs among records of one prompt by human rank (0 is best)."""
    ranked = [r for r in records if r.rank is not None]
    out = []
    for a in ranked:
        for b in ranked:
            if a.rank is not None and b.rank is not None and a.rank < b.rank:
                out.append(Preference(a, b, source))
    return out
