"""The ``hf-classifier`` kind: any ``AutoModelForSequenceClassification`` as a reward model.

The reward is one logit (``logit_index``) of the classifier over the (prompt, response) text in
one of four input formats: ``pair`` (prompt and response as a tokenizer text pair),
``response`` (the response alone), ``text`` (prompt + response + the tokenizer's EOS token as
one string: what TRL's ``RewardTrainer`` trains on for plain-text pairs) or ``chat`` (the
tokenizer's chat template over a user turn and an assistant turn: what it trains on for
conversational pairs). Rows are batched sorted by token length, run under
``torch.inference_mode``, and restored to input order; rows longer than ``max_length`` are
truncated on ``truncation_side`` and counted in ``last_stats["truncated"]``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from paretohqd.config import check_device
from paretohqd.stages.kit.scoring.batching import (
    pad_batch,
    progress_bar,
    resolve_device,
    sorted_batches,
    tokenize_counting,
)
from paretohqd.stages.kit.scoring.scorers import ScorerError, content_hash, resolve_path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class HFClassifierOptions(BaseModel):
    """Options of the ``hf-classifier`` kind."""

    model_config = ConfigDict(extra="forbid")

    input_format: Literal["pair", "response", "text", "chat"] = Field(
        "pair",
        description="pair: (prompt, response) text pair; response: alone; text: prompt + "
        "response + EOS as one string (TRL RewardTrainer's plain-text input); chat: template",
    )
    logit_index: int = Field(0, ge=0, description="which output logit is the reward")
    max_length: int | None = Field(
        None, ge=8, description="tokens per row (default: the model's maximum)"
    )
    truncation_side: Literal["left", "right"] = Field(
        "left", description="which end over-long rows lose (left keeps the response's end)"
    )
    batch_size: int = Field(16, ge=1, description="rows per forward pass")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda, cuda:1 ...")

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto: bfloat16 on cuda, float32 on cpu"
    )
    trust_remote_code: bool = Field(False, description="allow the model's own Python code")
    revision: str | None = Field(None, description="hub revision (hub ids only)")
    progress: bool = Field(True, description="show a progress bar on a terminal")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)


def _offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def locate_model(name: str, model: str | None, base_dir: Path) -> tuple[str, Path | None]:
    """Resolve ``model`` to a local directory, or keep it as a hub id when it can be one.

    Returns ``(source, local_dir)``: ``local_dir`` is None for a hub id.
    """
    if not model:
        raise ScorerError(
            f"objective {name!r}: this scorer needs 'model' (a model directory or hub id)"
        )
    local = resolve_path(model, base_dir)
    if local.exists():
        if not (local / "config.json").is_file():
            raise ScorerError(
                f"objective {name!r}: {local} is not a model directory (no config.json)"
            )
        return str(local), local
    looks_local = model.startswith((".", "/", "~")) or not _HUB_ID.match(model)
    if looks_local:
        raise ScorerError(
            f"objective {name!r}: model directory {local} does not exist; fix 'model' "
            "(relative paths are relative to the config)"
        )
    if _offline():
        raise ScorerError(
            f"objective {name!r}: model {model!r} is not a local directory ({local}) and "
            "HF_HUB_OFFLINE is set; download it first or point 'model' at a directory"
        )
    return model, None


class HFClassifierScorer:
    """A sequence-classification model's logit as the reward."""

    #: Scores depend on the prompt and response alone: cached by text.
    text_only = True

    def __init__(
        self,
        *,
        name: str,
        source: str,
        local_dir: Path | None,
        options: HFClassifierOptions,
        hasher: Any = None,
    ) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.name = name
        self.hasher = hasher
        self.source = source
        self.local_dir = local_dir
        self.options = options
        self.last_stats: dict[str, int] = {}
        self._sha256: str | None = None
        where = str(local_dir) if local_dir is not None else f"hub model {source!r}"
        common: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
        if local_dir is None and options.revision:
            common["revision"] = options.revision
        try:
            config = AutoConfig.from_pretrained(source, **common)
        except (OSError, ValueError, KeyError) as exc:
            raise ScorerError(
                f"objective {name!r}: cannot read the config of {where}: {_first_line(exc)}"
            ) from None
        archs = list(getattr(config, "architectures", None) or [])
        auto_map = getattr(config, "auto_map", None) or {}
        if not (
            any(a.endswith("ForSequenceClassification") for a in archs)
            or (options.trust_remote_code and "AutoModelForSequenceClassification" in auto_map)
        ):
            raise ScorerError(
                f"objective {name!r}: {where} is not a sequence-classification model "
                f"(architectures: {archs or 'none'}); use a reward/classifier model, or the "
                "embedding-head kind for a sentence encoder"
            )
        num_labels = int(getattr(config, "num_labels", 1))
        if options.logit_index >= num_labels:
            raise ScorerError(
                f"objective {name!r}: logit_index {options.logit_index} but {where} has "
                f"{num_labels} output logits (0..{num_labels - 1})"
            )
        self.device = resolve_device(options.device)
        if options.dtype == "auto":
            self.dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        else:
            self.dtype = options.dtype
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **common)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source, dtype=getattr(torch, self.dtype), **common
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ScorerError(
                f"objective {name!r}: cannot load {where}: {_first_line(exc)}"
            ) from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ScorerError(
                    f"objective {name!r}: the tokenizer of {where} has no pad or eos token"
                )
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        if options.input_format == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ScorerError(
                f"objective {name!r}: input_format 'chat' but the tokenizer of {where} has no "
                "chat template; use input_format 'pair' or 'response'"
            )
        self.max_length = options.max_length or self._model_max_length()
        self.revision = getattr(self.model.config, "_commit_hash", None) or options.revision

    def _model_max_length(self) -> int:
        limits = [
            int(v)
            for v in (
                getattr(self.tokenizer, "model_max_length", None),
                getattr(self.model.config, "max_position_embeddings", None),
            )
            if v is not None and 0 < int(v) < 1_000_000
        ]
        return min(limits) if limits else 512

    def identity(self) -> dict[str, Any]:
        """Model (path + content hash, or hub id + revision) and the options that change scores.

        ``batch_size``, ``device`` and ``progress`` are left out: they change speed, not
        scores; the resolved dtype is kept.
        """
        if self.local_dir is not None:
            if self._sha256 is None:
                self._sha256 = content_hash(self.local_dir, self.hasher)
            model: dict[str, Any] = {"path": str(self.local_dir), "sha256": self._sha256}
        else:
            model = {"hub_id": self.source, "revision": self.revision}
        opts = self.options.model_dump(mode="json", exclude={"batch_size", "device", "progress"})
        opts["dtype"] = self.dtype
        opts["max_length"] = self.max_length
        return {"kind": "hf-classifier", "model": model, "options": opts}

    def encode(
        self, prompts: list[str], responses: list[str]
    ) -> tuple[dict[str, list[list[int]]], np.ndarray]:
        """Token ids per row for the configured input format, and the truncated mask."""
        o = self.options
        n, side = self.max_length, o.truncation_side
        if o.input_format == "pair":
            return tokenize_counting(
                self.tokenizer, prompts, responses, max_length=n, truncation_side=side
            )
        if o.input_format == "response":
            return tokenize_counting(self.tokenizer, responses, max_length=n, truncation_side=side)
        if o.input_format == "text":  # as TRL's RewardTrainer builds plain-text pairs
            eos = self.tokenizer.eos_token or ""
            joined = [
                t if t.endswith(eos) else t + eos
                for t in (p + r for p, r in zip(prompts, responses, strict=True))
            ]
            return tokenize_counting(self.tokenizer, joined, max_length=n, truncation_side=side)
        texts = [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                tokenize=False,
            )
            for p, r in zip(prompts, responses, strict=True)
        ]
        return tokenize_counting(
            self.tokenizer, texts, max_length=n, truncation_side=side, add_special_tokens=False
        )

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The ``logit_index`` logit per row, float64, in input order."""
        import torch

        enc, truncated = self.encode(list(prompts), list(responses))
        lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64)
        out = np.empty(len(lengths), dtype=np.float64)
        bar = progress_bar(len(lengths), desc=f"score {self.name}", enabled=self.options.progress)
        try:
            with torch.inference_mode():
                for rows in sorted_batches(lengths, self.options.batch_size):
                    batch = pad_batch(self.tokenizer, enc, rows).to(self.device)
                    logits = self.model(**batch).logits[:, self.options.logit_index]
                    out[rows] = logits.float().cpu().numpy()
                    bar.update(rows.size)
        finally:
            bar.close()
        self.last_stats = {"truncated": int(truncated.sum())}
        return out


def build(
    *,
    name: str,
    model: str | None,
    options: HFClassifierOptions,
    base_dir: Path,
    hasher: Any = None,
) -> HFClassifierScorer:
    """Factory for the registry."""
    source, local = locate_model(name, model, base_dir)
    return HFClassifierScorer(
        name=name, source=source, local_dir=local, options=options, hasher=hasher
    )
