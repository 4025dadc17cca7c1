"""Tokenisation with counted truncation, and length-sorted batches (shared by model scorers).

Sorting rows by token length before batching keeps padding minimal, which is most of the cost
of transformer inference on variable-length text; results are scattered back to input order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np


def tokenize_counting(
    tokenizer: Any,
    texts: list[str],
    text_pairs: list[str] | None = None,
    *,
    max_length: int,
    truncation_side: Literal["left", "right"],
    add_special_tokens: bool = True,
) -> tuple[dict[str, list[list[int]]], np.ndarray]:
    """Tokenise without padding, truncating over-long rows and saying which were truncated.

    Rows are first tokenised in full (so truncation can be *counted*); only the rows longer
    than ``max_length`` are tokenised again with truncation (``longest_first`` for pairs) on
    ``truncation_side``.

    Returns
    -------
    encodings
        ``input_ids``, ``attention_mask`` (and ``token_type_ids`` where the tokenizer makes
        them), one list per row.
    truncated
        bool array, True where the row was truncated.
    """
    tokenizer.truncation_side = truncation_side
    kwargs: dict[str, Any] = {"add_special_tokens": add_special_tokens, "verbose": False}
    args: tuple[Any, ...] = (texts,) if text_pairs is None else (texts, text_pairs)
    enc = dict(tokenizer(*args, truncation=False, **kwargs))
    lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64, count=len(texts))
    truncated = lengths > max_length
    long_rows = np.flatnonzero(truncated)
    if long_rows.size:
        sub_args: tuple[Any, ...] = tuple([a[i] for i in long_rows] for a in args)
        strategy = "longest_first" if text_pairs is not None else True
        sub = tokenizer(*sub_args, truncation=strategy, max_length=max_length, **kwargs)
        for key in enc:
            if key in sub:
                for j, i in enumerate(long_rows):
                    enc[key][i] = sub[key][j]
    out = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return out, truncated


def sorted_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of ``batch_size``, longest first (so OOM shows up at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, order.size, batch_size):
        yield order[start : start + batch_size]


def equal_length_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Row indices in batches of rows that all have one length (so nothing is padded), at most
    ``batch_size`` rows each, longest first; rows of one length keep their input order."""
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    bounds = np.flatnonzero(np.diff(lengths[order])) + 1
    for group in np.split(order, bounds):
        for start in range(0, group.size, batch_size):
            yield group[start : start + batch_size]


def pad_batch(tokenizer: Any, encodings: dict[str, list[list[int]]], rows: np.ndarray) -> Any:
    """Pad the given rows of ``encodings`` into a dict of tensors."""
    feats = {k: [v[i] for i in rows] for k, v in encodings.items()}
    return tokenizer.pad(feats, padding=True, return_tensors="pt")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def progress_bar(total: int, *, desc: str, enabled: bool = True) -> Any:
    """Scoring progress with rate and ETA: a bar on a terminal, log lines off one; nothing
    when not ``enabled`` (a call too small to report)."""
    from paretohqd.progress import progress

    return progress(total, desc=desc, unit="text", bar=enabled, lines=enabled)
