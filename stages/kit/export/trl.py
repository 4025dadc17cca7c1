"""TRL-ready copies of a run's training data: SFT shards and preference pairs.

A shard row read by TRL's ``SFTTrainer`` as it is would train on other tokens than the
project's :func:`~paretohqd.stages.kit.training.sft.encode_rows`: TRL tokenises ``prompt`` and
``prompt + completion + eos`` as text and cuts the *end* (``truncation_mode = "keep_start"``),
while the project encodes prompt and completion apart (a sentencepiece tokenizer gives the
completion its word-initial ``▁``) and cuts the prompt's *start*. The export therefore writes,
per preference, the project's exact token ids (``input_ids``, ``completion_mask``: TRL takes a
dataset that has them as already tokenised and masks the loss with the mask) next to the best
text for them: the prompt from the first token the project keeps, and the completion as it
follows the prompt in context (with the leading space that gives ``▁It``, not ``':' 'I' 't'``).
``text_exact`` says per row whether TRL's own text tokenisation of that text reproduces the ids;
it cannot when the project's cut falls inside a word (a sentencepiece text cannot start with a
word's second piece) or when the tokenizer splits ``</s>`` written as text (the llama2.c
conversion does, so that data cannot inject special tokens).

Pairs become TRL's ``prompt``/``chosen``/``rejected`` per preference w, oriented by the
preference-weighted normalised score margin Σ wᵢ (r̃ᵢ(a) − r̃ᵢ(b)); a pair with zero margin
prefers neither response for that w and is dropped (and counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The file each per-preference directory holds: ``datasets.load_dataset(DIR)`` reads it as the
#: ``train`` split, and ``trl sft --dataset_name DIR`` trains on it.
TRAIN_FILE = "train.parquet"


@dataclass(frozen=True)
class SftRow:
    """One shard row as TRL trains on it: text, the project's ids and loss mask, and flags."""

    prompt: str
    completion: str
    input_ids: list[int]
    completion_mask: list[int]
    truncated: bool
    text_exact: bool


def leading_space(tok: Any) -> str:
    """The text to put between a prompt and a completion so that TRL, tokenising them joined,
    gives the completion the tokens the project gives it alone.

    A sentencepiece-style tokenizer (a dummy prefix: Llama 2, the llama2.c models) encodes a
    text's start like a word after a space, so the project trains ``▁It`` and the joined text
    needs ``Assistant: It`` (the HH transcripts' own convention). A byte-level BPE (GPT-2,
    Llama 3, Qwen) encodes ``It`` alone without a space, so nothing goes between.
    """
    alone = tok("Hello", add_special_tokens=False)["input_ids"]
    after = tok("a Hello", add_special_tokens=False)["input_ids"]
    return " " if after[-len(alone) :] == alone else ""


def prompt_tail(tok: Any, prompt: str, keep: int) -> str:
    """The text of ``prompt``'s last ``keep`` tokens: from the character where the first kept
    token starts (one space later when that token carries the space as its ``▁`` and a text's
    start gets one anyway, see :func:`leading_space`)."""
    if keep <= 0:
        return ""
    enc = tok(prompt, add_special_tokens=False, return_offsets_mapping=True)
    n = len(enc["input_ids"])
    if keep >= n:
        return prompt
    start = enc["offset_mapping"][n - keep][0]
    candidates = [prompt[start:]]
    if prompt[start : start + 1] == " ":
        candidates.insert(0, prompt[start + 1 :])
    want = enc["input_ids"][n - keep :]
    for text in candidates:
        if tok(text, add_special_tokens=False)["input_ids"] == want:
            return text
    return candidates[-1]


def trl_text_ids(
    tok: Any, prompt: str, completion: str, max_length: int | None
) -> tuple[list[int], list[int]]:
    """Token ids and completion mask as TRL's ``SFTTrainer`` (1.x) makes them from text: the
    prompt and ``prompt + completion + eos`` tokenised with the tokenizer's special tokens, the
    completion starting where the two diverge, the end cut at ``max_length``
    (``truncation_mode = "keep_start"``)."""
    eos = tok.eos_token or ""
    if not completion.endswith(eos):
        completion += eos
    p = tok(prompt)["input_ids"]
    ids = tok(prompt + completion)["input_ids"]
    start = 0
    while start < min(len(p), len(ids)) and p[start] == ids[start]:
        start += 1
    mask = [0] * start + [1] * (len(ids) - start)
    if max_length is not None:
        ids, mask = ids[:max_length], mask[:max_length]
    return ids, mask


def sft_rows(
    tok: Any, rows: Sequence[tuple[str, str]], *, max_length: int, template: str
) -> list[SftRow]:
    """Shard rows (prompt, completion) as TRL SFT rows with exactly the project's tokens.

    The ids and mask are :func:`~paretohqd.stages.kit.training.sft.encode_rows`'s on the prompt
    rendered with ``template``; the text is the prompt from its first kept token and the whole
    completion after :func:`leading_space` (TRL's ``keep_start`` cut at the same ``max_length``
    then drops what the project cut from a long completion, EOS included).
    """
    from paretohqd.stages.kit.policy.loading import bos_prefix, render_prompt
    from paretohqd.stages.kit.training.sft import IGNORE, encode_rows

    rendered = [render_prompt(tok, p, template) for p, _ in rows]
    encoded = encode_rows(tok, list(zip(rendered, [c for _, c in rows], strict=True)), max_length)
    lead = leading_space(tok)
    out = []
    for prompt, (_, completion), enc in zip(rendered, rows, encoded, strict=True):
        mask = [0 if label == IGNORE else 1 for label in enc.labels]
        n_bos = len(bos_prefix(tok, tok(prompt, add_special_tokens=False)["input_ids"]))
        text = prompt_tail(tok, prompt, mask.count(0) - n_bos)
        completion_text = lead + completion
        exact = trl_text_ids(tok, text, completion_text, max_length) == (enc.ids, mask)
        out.append(SftRow(text, completion_text, enc.ids, mask, enc.truncated, exact))
    return out


def sft_table(rows: Sequence[SftRow], extra: dict[str, list[Any]]) -> Any:
    """The rows as an Arrow table: TRL's columns first, then ``extra`` (ids, ranks)."""
    import pyarrow as pa

    return pa.table(
        {
            "prompt": [r.prompt for r in rows],
            "completion": [r.completion for r in rows],
            "input_ids": pa.array([r.input_ids for r in rows], pa.list_(pa.int64())),
            "completion_mask": pa.array([r.completion_mask for r in rows], pa.list_(pa.int8())),
            "truncated": [r.truncated for r in rows],
            "text_exact": [r.text_exact for r in rows],
            **extra,
        }
    )


def pair_prompts(
    tok: Any, prompts: Sequence[str], a: Sequence[str], b: Sequence[str], *, max_length: int
) -> tuple[list[str], list[bool]]:
    """Each pair's prompt cut on the left as the project cuts it for the pair's longer
    response (:func:`~paretohqd.stages.kit.training.sft.encode_rows`), so that both responses
    fit ``max_length`` after it: TRL's DPO trainer only cuts the end (``keep_start``), which
    would push a long prompt's responses out of the window. A tail that re-tokenises to more
    tokens than the project keeps is cut a token further. Also whether the prompt was cut."""
    from paretohqd.stages.kit.policy.loading import bos_prefix
    from paretohqd.stages.kit.training.sft import IGNORE, encode_rows

    out, cut = [], []
    for prompt, ra, rb in zip(prompts, a, b, strict=True):
        longer = max(ra, rb, key=lambda r: len(tok(r, add_special_tokens=False)["input_ids"]))
        (enc,) = encode_rows(tok, [(prompt, longer)], max_length)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        keep = enc.labels.count(IGNORE) - len(bos_prefix(tok, p_ids))
        text = prompt_tail(tok, prompt, keep)
        # A tail starting inside a word re-tokenises longer (its dummy ``▁``): cut further.
        while keep > 0 and len(tok(text, add_special_tokens=False)["input_ids"]) > keep:
            keep -= 1
            text = prompt_tail(tok, prompt, keep)
        out.append(text)
        cut.append(keep < len(p_ids))
    return out, cut


@dataclass(frozen=True)
class Oriented:
    """One preference's pairs oriented by its weighted margin: row indices, whether ``a`` is
    the chosen response, the margins, and how many pairs had zero margin."""

    keep: np.ndarray
    a_chosen: np.ndarray
    margin: np.ndarray
    dropped: int


def orient_pairs(norm_margins: np.ndarray, weights: Sequence[float]) -> Oriented:
    """Orient pairs for preference ``weights``: chosen is the response with the larger
    preference-weighted normalised score (``norm_margins`` are a − b, one column per
    objective); pairs whose weighted margin is zero are dropped."""
    margin = np.asarray(norm_margins, dtype=np.float64) @ np.asarray(weights, dtype=np.float64)
    keep = np.flatnonzero(margin != 0.0)
    return Oriented(keep, margin[keep] > 0, np.abs(margin[keep]), int(len(margin) - len(keep)))


def dpo_table(
    prompts: Sequence[str],
    a: Sequence[str],
    b: Sequence[str],
    oriented: Oriented,
    *,
    lead: str,
    extra: dict[str, Sequence[Any]],
) -> Any:
    """TRL's preference format (``prompt``, ``chosen``, ``rejected``) for the kept pairs, the
    responses after ``lead`` (:func:`leading_space`), with the weighted margin and ``extra``
    columns (ids) of the kept rows."""
    import pyarrow as pa

    k, first = oriented.keep, oriented.a_chosen
    chosen = [lead + (a[i] if f else b[i]) for i, f in zip(k, first, strict=True)]
    rejected = [lead + (b[i] if f else a[i]) for i, f in zip(k, first, strict=True)]
    return pa.table(
        {
            "prompt": [prompts[i] for i in k],
            "chosen": chosen,
            "rejected": rejected,
            "margin": oriented.margin,
            **{name: [values[i] for i in k] for name, values in extra.items()},
        }
    )


def write_train(table: Any, directory: Path) -> Path:
    """Write ``table`` as ``directory/train.parquet`` atomically; return the file."""
    from paretohqd.atomic import write_parquet

    path = Path(directory) / TRAIN_FILE
    write_parquet(path, table)
    return path
