"""Benchmark the embedding-head scoring path against a naive loop and the raw encoder.

On the same real texts (HH-RLHF harmless-base test: each transcript split at its last
"\\n\\nAssistant:" into prompt and response; chosen and rejected share a prompt), it reports:

(a) the library path: two ``embedding-head`` scorers built by the registry, sharing one
    encoder and its embedding cache (length-sorted batches, each unique text encoded once);
(b) a naive loop: for each head, input-order batches padded to their longest row, prompts and
    responses re-encoded, no cache;
(c) the encoder's raw forward rate: the unique texts pre-tokenised, sorted by length, timed
    over model forward + pooling only.

Rates are rows/s for the two-head scoring of all rows, and texts/s per unique text. The target
is (a) >= 80% of (c) per unique text: everything around the forward pass (hashing, cache,
tokenising, the heads) should cost little.

Usage::

    python benchmarks/bench_score.py --n 256 --threads 1 2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[1] / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
SPLIT = "\n\nAssistant:"


def load_rows(n: int) -> tuple[list[str], list[str]]:
    """``n`` (prompt, response) rows: chosen and rejected of each record, in file order."""
    prompts: list[str] = []
    responses: list[str] = []
    with gzip.open(DATA, "rt") as fh:
        for line in fh:
            rec = json.loads(line)
            for side in ("chosen", "rejected"):
                text = rec[side]
                cut = text.rfind(SPLIT)
                if cut < 0:
                    continue
                prompts.append(text[: cut + len(SPLIT)].strip())
                responses.append(text[cut + len(SPLIT) :].strip())
            if len(prompts) >= n:
                break
    return prompts[:n], responses[:n]


def make_heads(root: Path, encoder: object, dim: int, seed: int) -> list[Path]:
    """Two heads with random weights (their values do not change the timing)."""
    from paretohqd.stages.kit.scoring.embedding import BTHead, save_head

    rng = np.random.default_rng(seed)
    out = []
    for name in ("harmless", "helpful"):
        head = BTHead(weight=rng.standard_normal(2 * dim).astype(np.float32))
        out.append(
            save_head(
                root / name,
                head,
                encoder_identity=encoder.identity(),  # type: ignore[attr-defined]
                metrics={},
                training_data_description="random weights for a benchmark",
            )
        )
    return out


def naive(
    encoder: object, heads: list[object], prompts: list[str], responses: list[str], bs: int
) -> list[np.ndarray]:
    """Per head: input-order batches, prompt and response re-encoded, no cache."""
    import torch

    from paretohqd.stages.kit.scoring.embedding import _pool

    tok, model = encoder.tokenizer, encoder.model  # type: ignore[attr-defined]

    def embed(texts: list[str]) -> np.ndarray:
        batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
            pooled = _pool(hidden, batch["attention_mask"], "mean_tokens")
            return torch.nn.functional.normalize(pooled, dim=1).numpy()

    outs = []
    for head in heads:
        vals = []
        for i in range(0, len(prompts), bs):
            ep, er = embed(prompts[i : i + bs]), embed(responses[i : i + bs])
            vals.append(head.score_embeddings(ep, er))  # type: ignore[attr-defined]
        outs.append(np.concatenate(vals))
    return outs


def raw_forward(encoder: object, texts: list[str], bs: int) -> float:
    """Seconds for forward + pooling of pre-tokenised, length-sorted batches."""
    from paretohqd.stages.kit.scoring.batching import pad_batch, sorted_batches, tokenize_counting

    enc, _ = tokenize_counting(
        encoder.tokenizer,  # type: ignore[attr-defined]
        texts,
        max_length=encoder.max_length,  # type: ignore[attr-defined]
        truncation_side="right",
    )
    lengths = np.array([len(x) for x in enc["input_ids"]])
    batches = [
        pad_batch(encoder.tokenizer, enc, rows)  # type: ignore[attr-defined]
        for rows in sorted_batches(lengths, bs)
    ]
    t0 = time.perf_counter()
    for batch in batches:
        encoder.forward_batch(batch)  # type: ignore[attr-defined]
    return time.perf_counter() - t0


def main() -> None:
    """Run the three measurements for each thread count and print rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="rows (prompt, response) to score")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-naive", action="store_true", help="skip (b), the slow one")
    args = parser.parse_args()

    import torch

    from paretohqd.stages.kit.scoring.embedding import load_encoder
    from paretohqd.stages.kit.scoring.scorers import build_scorer

    prompts, responses = load_rows(args.n)
    unique = list(dict.fromkeys(prompts + responses))
    encoder = load_encoder(None, device=args.device)
    print(
        f"rows {len(prompts)}, unique texts {len(unique)} "
        f"({len(set(prompts))} prompts), device {encoder.device}, torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        head_dirs = make_heads(Path(tmp), encoder, encoder.dim, seed=0)
        opts = {"batch_size": args.batch_size, "device": args.device}
        scorers = [
            build_scorer("embedding-head", name=d.name, model=str(d), options=opts)
            for d in head_dirs
        ]
        assert all(s.inner.encoder is encoder for s in scorers)  # type: ignore[attr-defined]
        raw_forward(encoder, unique[:8], args.batch_size)  # warm-up
        for threads in args.threads:
            torch.set_num_threads(threads)
            for s in scorers:
                s.inner.encoder.cache.clear()  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            got = [s.score(prompts, responses) for s in scorers]
            t_a = time.perf_counter() - t0
            t_c = raw_forward(encoder, unique, args.batch_size)
            line = (
                f"threads {threads}: (a) library {len(prompts) / t_a:8.1f} rows/s "
                f"{len(unique) / t_a:8.1f} unique texts/s | (c) raw forward "
                f"{len(unique) / t_c:8.1f} texts/s | (a)/(c) {t_c / t_a:.2f}"
            )
            if not args.skip_naive:
                heads = [s.inner.head for s in scorers]  # type: ignore[attr-defined]
                t0 = time.perf_counter()
                ref = naive(encoder, heads, prompts, responses, args.batch_size)
                t_b = time.perf_counter() - t0
                err = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref, strict=True))
                line += (
                    f" | (b) naive {len(prompts) / t_b:8.1f} rows/s | (a)/(b) {t_b / t_a:.2f}"
                    f" | max |a-b| {err:.1e}"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
