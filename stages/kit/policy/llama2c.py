"""Convert a llama2.c checkpoint and tokenizer into a Hugging Face Llama directory.

The demo policy is Karpathy's stories260K, shipped in llama2.c's own binary formats
(``model.bin`` + ``tok*.bin``). Everything downstream (SFT with peft, batched generation,
vLLM) wants a ``transformers`` directory, so this module writes one that
``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load offline:

- ``config.json`` / ``generation_config.json``: a ``LlamaForCausalLM`` with the header's sizes;
- ``model.safetensors``: the weights, with wq/wk rows permuted from llama2.c's interleaved
  (GPT-J style) rotary layout to the ``rotate_half`` layout HF Llama uses;
- ``tokenizer.json`` (+ ``tokenizer_config.json``, ``special_tokens_map.json``): a *fast*
  sentencepiece-style BPE tokenizer that encodes exactly as llama2.c's ``encode`` (dummy prefix
  space, highest-score merge first, byte fallback) and decodes byte pieces back to bytes;
- ``conversion.json``: the content hashes of the two sources, so a second call with the same
  sources is a no-op and a call with different ones refuses to clobber without ``overwrite``.

The formats (see ``data/stories260K/README.md``): the checkpoint is the legacy (version 0)
float32 export, a header of 7 int32 ``(dim, hidden_dim, n_layers, n_heads, n_kv_heads,
vocab_size, seq_len)`` (vocab_size negative when the classifier is not shared) followed by the
float32 arrays; the tokenizer is an int32 max token length, then per token a float32 score, an
int32 byte length and the bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from paretohqd.atomic import atomic_path
from paretohqd.errors import ModelError

if TYPE_CHECKING:
    import torch

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "Llama2cHeader",
    "Llama2cVocab",
    "convert_llama2c",
    "read_llama2c_header",
    "read_llama2c_tokenizer",
]

#: llama2.c hard-codes these ids (``run.c``: BOS=1, EOS=2; sentencepiece's unk is 0).
UNK_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_TOKEN, BOS_TOKEN, EOS_TOKEN = "<unk>", "<s>", "</s>"
#: sentencepiece's word-boundary marker; llama2.c's exporter stored it as a plain space.
SPIECE_UNDERLINE = "\u2581"
#: Bump when the output format changes so old converted directories are not reused.
CONVERTER_VERSION = 1
MARKER = "conversion.json"

_HEADER = struct.Struct("<7i")
#: llama2.c's versioned exports (``export.py --version 1/2``) start with this magic ("ak42").
_V1_MAGIC = 0x616B3432
_MAX_DIM = 1 << 16
_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Llama2cHeader:
    """The model sizes stored in a llama2.c checkpoint header."""

    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool

    @property
    def head_size(self) -> int:
        """Per-head width; the rotary permutation needs it even."""
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        """Width of the key/value projections (grouped-query attention)."""
        return self.n_kv_heads * self.head_size

    def n_floats(self) -> int:
        """How many float32 values follow the header, in llama2.c's ``memory_map_weights``."""
        d, h, n, v = self.dim, self.hidden_dim, self.n_layers, self.vocab_size
        per_layer = d + d * d + 2 * d * self.kv_dim + d * d + d + 3 * d * h
        rope = self.seq_len * self.head_size  # freq_cis_real + freq_cis_imag, half each
        return v * d + n * per_layer + d + rope + (0 if self.shared_classifier else v * d)


@dataclass(frozen=True)
class Llama2cVocab:
    """A llama2.c tokenizer: pieces as HF tokens (``▁`` for spaces) with their BPE scores."""

    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    max_token_length: int


def _fail(path: Path, what: str, fix: str) -> ModelError:
    return ModelError(f"{path}: {what}; {fix}")


def read_llama2c_header(checkpoint: Path) -> Llama2cHeader:
    """Read and validate a llama2.c checkpoint header against the file's size.

    Parameters
    ----------
    checkpoint
        A legacy (version 0) float32 llama2.c ``.bin`` export.

    Returns
    -------
    Llama2cHeader
        The sizes, after checking that they are positive, consistent (heads divide the width,
        KV heads divide the heads, even head size) and that the file holds exactly that many
        floats: a truncated or padded file is rejected here rather than producing a model
        with garbage weights.

    Raises
    ------
    ModelError
        When the file is missing, versioned (magic ``ak42``), truncated or inconsistent.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise _fail(checkpoint, "llama2.c checkpoint not found", "check policy.llama2c.checkpoint")
    size = checkpoint.stat().st_size
    with checkpoint.open("rb") as f:
        raw = f.read(_HEADER.size)
    if len(raw) < _HEADER.size:
        raise _fail(
            checkpoint,
            f"truncated llama2.c checkpoint ({size} bytes, shorter than the 28-byte header)",
            "re-download or re-export the checkpoint",
        )
    fields = _HEADER.unpack(raw)
    if fields[0] == _V1_MAGIC:
        raise _fail(
            checkpoint,
            "versioned llama2.c export (magic 'ak42'); only the legacy float32 format is read",
            "export it with llama2.c's `export.py --version 0`",
        )
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, seq_len = fields
    names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
    for name, value in zip(
        names, (dim, hidden_dim, n_layers, n_heads, n_kv_heads, abs(vocab), seq_len), strict=True
    ):
        if not 0 < value <= _MAX_DIM * 16:
            raise _fail(
                checkpoint,
                f"bad llama2.c header: {name}={value} (header {fields})",
                "this is not a legacy llama2.c checkpoint; check the path",
            )
    if dim % n_heads or n_heads % n_kv_heads or (dim // n_heads) % 2:
        raise _fail(
            checkpoint,
            f"inconsistent llama2.c header: dim={dim}, n_heads={n_heads}, n_kv_heads={n_kv_heads}"
            " (n_heads must divide dim, n_kv_heads must divide n_heads, head size must be even)",
            "this is not a valid llama2.c checkpoint",
        )
    header = Llama2cHeader(
        dim=dim,
        hidden_dim=hidden_dim,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        vocab_size=abs(vocab),
        seq_len=seq_len,
        shared_classifier=vocab > 0,
    )
    expected = _HEADER.size + 4 * header.n_floats()
    if size != expected:
        what = "truncated" if size < expected else "oversized"
        raise _fail(
            checkpoint,
            f"{what} llama2.c checkpoint: {size} bytes, the header {fields} implies {expected}",
            "re-download or re-export the checkpoint (only the legacy float32 format is read)",
        )
    return header


def read_llama2c_tokenizer(tokenizer: Path, *, vocab_size: int) -> Llama2cVocab:
    """Read a llama2.c ``tok*.bin`` tokenizer and map its pieces to HF token strings.

    llama2.c's exporter wrote sentencepiece's ``▁`` as a plain space and BOS/EOS as
    ``"\\n<s>\\n"``/``"\\n</s>\\n"``; the HF tokenizer needs the ``▁`` form (so the normalizer can
    turn spaces into it) and the usual ``<unk>``/``<s>``/``</s>`` names for ids 0, 1, 2.

    Raises
    ------
    ModelError
        When the file is missing, truncated, not UTF-8, has a duplicate piece, or does not
        hold exactly ``vocab_size`` pieces.
    """
    tokenizer = Path(tokenizer)
    if not tokenizer.is_file():
        raise _fail(tokenizer, "llama2.c tokenizer not found", "check policy.llama2c.tokenizer")
    data = tokenizer.read_bytes()
    if len(data) < 4:
        raise _fail(tokenizer, "truncated llama2.c tokenizer", "re-export it (tokenizer.py)")
    (max_len,) = struct.unpack_from("<i", data, 0)
    if not 0 < max_len <= 1 << 16:
        raise _fail(
            tokenizer,
            f"bad llama2.c tokenizer header: max_token_length={max_len}",
            "this is not a llama2.c tok*.bin file",
        )
    pieces: list[str] = []
    scores: list[float] = []
    seen: dict[str, int] = {}
    off = 4
    for i in range(vocab_size):
        if off + 8 > len(data):
            raise _fail(
                tokenizer,
                f"truncated llama2.c tokenizer: {i} of {vocab_size} pieces present",
                "the tokenizer must match the checkpoint's vocab_size; re-export it",
            )
        score, length = struct.unpack_from("<fi", data, off)
        off += 8
        if not 0 <= length <= max_len or off + length > len(data) or not np.isfinite(score):
            raise _fail(
                tokenizer,
                f"piece {i}: bad length {length} or score {score} at byte {off - 8}",
                "the file is truncated or garbled; re-export it",
            )
        try:
            text = data[off : off + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(tokenizer, f"piece {i} is not UTF-8 ({exc})", "re-export it") from exc
        off += length
        piece = {UNK_ID: UNK_TOKEN, BOS_ID: BOS_TOKEN, EOS_ID: EOS_TOKEN}.get(
            i, text.replace(" ", SPIECE_UNDERLINE)
        )
        if piece in seen:
            raise _fail(
                tokenizer,
                f"pieces {seen[piece]} and {i} are both {piece!r}",
                "a tokenizer needs unique pieces; re-export it",
            )
        seen[piece] = i
        pieces.append(piece)
        scores.append(float(score))
    if off != len(data):
        raise _fail(
            tokenizer,
            f"{len(data) - off} bytes left after {vocab_size} pieces",
            "the tokenizer's vocab size must equal the checkpoint's vocab_size",
        )
    return Llama2cVocab(pieces=tuple(pieces), scores=tuple(scores), max_token_length=max_len)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _permute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder q/k rows from llama2.c's interleaved rotary pairs to HF's ``rotate_half`` halves.

    Same as ``permute`` in transformers' ``convert_llama_weights_to_hf.py``: within each head,
    rows (0, 1), (2, 3), ... are rotary pairs in llama2.c; HF pairs row j with row j + d/2.
    """
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def _read_weights(checkpoint: Path, h: Llama2cHeader, dtype: str) -> dict[str, torch.Tensor]:
    import torch

    flat = np.fromfile(checkpoint, dtype="<f4", offset=_HEADER.size)
    if not np.isfinite(flat).all():
        bad = int(np.flatnonzero(~np.isfinite(flat))[0])
        raise _fail(
            checkpoint,
            f"non-finite weight at float index {bad}",
            "the checkpoint is corrupt; re-download it",
        )
    pos = 0

    def take(*shape: int) -> torch.Tensor:
        nonlocal pos
        n = int(np.prod(shape))
        out = torch.from_numpy(flat[pos : pos + n].copy()).view(*shape)
        pos += n
        return out

    d, hd, n, kv = h.dim, h.hidden_dim, h.n_layers, h.kv_dim
    emb = take(h.vocab_size, d)
    att_norm, wq, wk = take(n, d), take(n, d, d), take(n, kv, d)
    wv, wo, ffn_norm = take(n, kv, d), take(n, d, d), take(n, d)
    w1, w2, w3 = take(n, hd, d), take(n, d, hd), take(n, hd, d)
    final_norm = take(d)
    take(h.seq_len * h.head_size)  # freq_cis_real/imag: recomputed by HF's rotary embedding
    out = {"model.embed_tokens.weight": emb, "model.norm.weight": final_norm}
    if not h.shared_classifier:
        out["lm_head.weight"] = take(h.vocab_size, d)
    assert pos == flat.size, (pos, flat.size)  # read_llama2c_header checked the size
    for i in range(n):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = att_norm[i]
        out[p + "self_attn.q_proj.weight"] = _permute_rotary(wq[i], h.n_heads)
        out[p + "self_attn.k_proj.weight"] = _permute_rotary(wk[i], h.n_kv_heads)
        out[p + "self_attn.v_proj.weight"] = wv[i]
        out[p + "self_attn.o_proj.weight"] = wo[i]
        out[p + "post_attention_layernorm.weight"] = ffn_norm[i]
        # llama2.c's FFN is w2(silu(w1 x) * w3 x): w1 is the gate, w3 the up projection.
        out[p + "mlp.gate_proj.weight"] = w1[i]
        out[p + "mlp.up_proj.weight"] = w3[i]
        out[p + "mlp.down_proj.weight"] = w2[i]
    torch_dtype = getattr(torch, dtype)
    return {k: v.to(torch_dtype).contiguous() for k, v in out.items()}


def _bpe_merges(vocab: Llama2cVocab) -> list[tuple[str, str]]:
    """Merges that make HF's rank-ordered BPE behave like llama2.c's score-ordered one.

    llama2.c merges, at each step, the adjacent pair whose concatenation is the vocab piece
    with the highest score (leftmost on ties). HF's BPE merges the pair with the lowest rank
    (leftmost on ties), so every split of a piece into two vocab pieces becomes a merge, ranked
    by the merged piece's score (descending), as transformers' sentencepiece converter does.
    Special pieces (ids 0-2) never take part; byte pieces ``<0x..>`` only arise from fallback.
    """
    ids = {p: i for i, p in enumerate(vocab.pieces)}
    special = {UNK_TOKEN, BOS_TOKEN, EOS_TOKEN}
    ranked: list[tuple[float, int, int, str, str]] = []
    for merged_id, merged in enumerate(vocab.pieces):
        if merged in special:
            continue
        for cut in range(1, len(merged)):
            left, right = merged[:cut], merged[cut:]
            if left in ids and right in ids and left not in special and right not in special:
                ranked.append((-vocab.scores[merged_id], merged_id, ids[left], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _build_tokenizer(vocab: Llama2cVocab) -> object:
    """A ``tokenizers.Tokenizer`` equivalent to llama2.c's encode/decode (BOS added)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    model = BPE(
        vocab={p: i for i, p in enumerate(vocab.pieces)},
        merges=_bpe_merges(vocab),
        unk_token=UNK_TOKEN,
        fuse_unk=True,
        byte_fallback=True,
    )
    tok = Tokenizer(model)
    # llama2.c's encode prepends one dummy space to non-empty text (Prepend skips empty text).
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend(SPIECE_UNDERLINE), normalizers.Replace(" ", SPIECE_UNDERLINE)]
    )
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace(SPIECE_UNDERLINE, " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(content=" ", left=1, right=0),  # drop the dummy prefix again
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, BOS_ID)],
    )
    tok.add_special_tokens(
        [AddedToken(t, normalized=False, special=True) for t in (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)]
    )
    return tok


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _write_tokenizer(vocab: Llama2cVocab, out: Path, *, max_length: int) -> None:
    tok = _build_tokenizer(vocab)
    tok.save(str(out / "tokenizer.json"), pretty=True)  # type: ignore[attr-defined]
    specials = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": UNK_TOKEN,
        # llama2.c has no pad token; <unk> never appears in encoded text, so it is safe as pad
        # (the attention mask hides it; generation adds it only after EOS).
        "pad_token": UNK_TOKEN,
    }
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(
        out / "tokenizer_config.json",
        {
            **specials,
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": max_length,
            "padding_side": "right",
            "clean_up_tokenization_spaces": False,
            "add_bos_token": True,
            "add_eos_token": False,
            # llama2.c encodes "<s>" in text as plain characters; so do we (no BOS injection
            # from data), while the post-processor still adds the real BOS.
            "split_special_tokens": True,
        },
    )


def _write_config(h: Llama2cHeader, out: Path, *, dtype: str) -> None:
    from transformers import GenerationConfig, LlamaConfig

    config = LlamaConfig(
        vocab_size=h.vocab_size,
        hidden_size=h.dim,
        intermediate_size=h.hidden_dim,
        num_hidden_layers=h.n_layers,
        num_attention_heads=h.n_heads,
        num_key_value_heads=h.n_kv_heads,
        head_dim=h.head_size,
        hidden_act="silu",
        max_position_embeddings=h.seq_len,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=h.shared_classifier,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=UNK_ID,
        architectures=["LlamaForCausalLM"],
        dtype=dtype,
    )
    config.save_pretrained(out)
    GenerationConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=UNK_ID).save_pretrained(
        out
    )


def convert_llama2c(
    checkpoint: Path,
    tokenizer: Path,
    out_dir: Path,
    *,
    dtype: Literal["float32", "float16", "bfloat16"] = "float32",
    overwrite: bool = False,
) -> Path:
    """Convert a llama2.c checkpoint + tokenizer into a Hugging Face Llama directory.

    Parameters
    ----------
    checkpoint
        llama2.c legacy float32 model file (e.g. ``data/stories260K/stories260K.bin``).
    tokenizer
        llama2.c tokenizer file (e.g. ``data/stories260K/tok512.bin``); its piece count must
        equal the checkpoint's vocab size.
    out_dir
        Directory to write. It is built in a temporary sibling and renamed into place, so a
        crash never leaves a half-written model.
    dtype
        Weight dtype to store (``float32`` keeps the checkpoint bit-exact).
    overwrite
        Replace an existing ``out_dir`` that is not this exact conversion. Without it, an
        ``out_dir`` converted from the same sources (same content hashes, dtype and converter
        version) is returned untouched and anything else there raises.

    Returns
    -------
    Path
        ``out_dir``, loadable offline by ``AutoModelForCausalLM`` and ``AutoTokenizer``.

    Raises
    ------
    ModelError
        On a missing, truncated or garbled checkpoint/tokenizer, a vocab-size mismatch, an
        unknown ``dtype``, or an existing different ``out_dir`` without ``overwrite``.

    Examples
    --------
    >>> from pathlib import Path
    >>> out = convert_llama2c(
    ...     Path("data/stories260K/stories260K.bin"),
    ...     Path("data/stories260K/tok512.bin"),
    ...     Path("runs/demo/models/base"),
    ... )  # doctest: +SKIP
    """
    if dtype not in _DTYPES:
        raise ModelError(f"dtype={dtype!r} is not supported; use one of {', '.join(_DTYPES)}")
    checkpoint, tokenizer, out_dir = Path(checkpoint), Path(tokenizer), Path(out_dir)
    header = read_llama2c_header(checkpoint)
    vocab = read_llama2c_tokenizer(tokenizer, vocab_size=header.vocab_size)
    marker = {
        "converter_version": CONVERTER_VERSION,
        "checkpoint_sha256": _file_sha256(checkpoint),
        "tokenizer_sha256": _file_sha256(tokenizer),
        "dtype": dtype,
    }
    if out_dir.exists() and not overwrite:
        try:
            existing = json.loads((out_dir / MARKER).read_text())
        except (OSError, ValueError):
            existing = None
        if isinstance(existing, dict) and {k: existing.get(k) for k in marker} == marker:
            return out_dir
        raise ModelError(
            f"{out_dir}: exists and is not a conversion of {checkpoint.name} + {tokenizer.name}"
            f" ({dtype}); pass overwrite=True to replace it or choose another directory"
        )
    from safetensors.torch import save_file

    weights = _read_weights(checkpoint, header, dtype)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_config(header, tmp, dtype=dtype)
        _write_tokenizer(vocab, tmp, max_length=header.seq_len)
        info = {"header": vars(header), "sources": [checkpoint.name, tokenizer.name]}
        _write_json(tmp / MARKER, {**marker, **info})
    return out_dir
