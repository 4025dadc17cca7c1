"""Mixed-adapter generation against one adapter at a time, transformers backend, on a CPU.

    python benchmarks/bench_mixed.py                 # the demo's evaluate shape
    python benchmarks/bench_mixed.py --adapters 4 --repeat 1

What a user would write without mixed batches is peft's ``set_adapter`` and one ``generate``
per adapter: that is the ``alone`` column (each adapter's prompts alone, in batches of
``--alone-batch``; the demo's old ``generation.batch_size = 32``). ``mixed`` gives the same
units to :meth:`TransformersGenerator.generate_units` ``--mix`` at a time, their rows sharing
batches of ``--batch`` (peft's per-row ``adapter_names``). The shape is the demo's evaluate
stage: stories260K, 24 held-out-like HH prompts per adapter (the last 128 prompt tokens), 48
sampled new tokens (top-p 0.9), one torch thread (the demo's ``run.threads``). The adapters are
LoRA r 8 trained here for a few steps towards different answers, so every unit really uses its
own weights. Both columns load the model and every adapter before the clock starts and keep
the best of ``--repeat`` passes; the table prints new tokens per second, whether every unit
sampled the same answers both ways (each row draws from its own seeded generator, so it
should), and the ratio. Not a timed test: compare the columns within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate import load_prompts
from bench_train import convert_policy

ANSWERS = (" I can't help with that.", " Sure, here is how.", " The end.", " Let me think.")


def train_adapters(model: Path, out: Path, n: int, prompts: list[str]) -> list[Path]:
    """``n`` small adapters, each trained a few steps towards its own answer."""
    from paretohqd.stages.kit.training.loop import train_adapter
    from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings

    settings = SFTSettings(steps=4, batch_size=4, lr=1e-2, warmup_steps=0, max_length=128)
    paths = []
    for k in range(n):
        rows = [(p, ANSWERS[k % len(ANSWERS)] * (1 + k // len(ANSWERS))) for p in prompts[:8]]
        train_adapter(str(model), SftObjective(rows), settings, out / f"a{k}")
        paths.append(out / f"a{k}")
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapters", type=int, default=8)
    ap.add_argument("--prompts", type=int, default=24, help="prompts per adapter")
    ap.add_argument("--mix", type=int, default=4, help="adapters per mixed call")
    ap.add_argument("--batch", type=int, default=96, help="rows per mixed batch")
    ap.add_argument("--alone-batch", type=int, default=32, help="rows per batch, one adapter")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import torch

    from paretohqd.stages.kit.policy.generate import (
        GenerationSettings,
        GenerationUnit,
        TransformersGenerator,
    )

    torch.set_num_threads(args.threads)
    model = convert_policy()
    prompts = load_prompts("hh", args.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        adapters = train_adapters(model, Path(tmp), args.adapters, prompts)
        units = [GenerationUnit(tuple(prompts), a, seed=k) for k, a in enumerate(adapters)]

        def settings(batch: int) -> GenerationSettings:
            return GenerationSettings(
                max_new_tokens=args.max_new_tokens, batch_size=batch, max_prompt_tokens=128
            )

        columns = {
            "alone": (settings(args.alone_batch), 1),
            "mixed": (settings(args.batch), args.mix),
        }
        texts: dict[str, list[list[str | None]]] = {}
        rates: dict[str, float] = {}
        for name, (st, mix) in columns.items():
            gen = TransformersGenerator(str(model), st)
            gen.generate_units(units)  # loads every adapter; warm-up
            best = float("inf")
            for _ in range(args.repeat):
                start, out = time.perf_counter(), []
                for i in range(0, len(units), mix):
                    out += gen.generate_units(units[i : i + mix])
                best = min(best, time.perf_counter() - start)
            texts[name] = [r.texts for r in out]
            rates[name] = sum(r.new_tokens for r in out) / best
            print(
                f"{name:6s} batch {st.batch_size:4d}, {mix} adapter(s) a call: "
                f"{best:6.2f} s, {rates[name]:7.0f} new tokens/s",
                flush=True,
            )
    same = texts["alone"] == texts["mixed"]
    print(
        f"{args.adapters} adapters x {args.prompts} prompts, {args.max_new_tokens} new tokens, "
        f"{args.threads} thread(s); same samples both ways: {same}"
    )
    print(f"mixed / alone, new tokens/s: {rates['mixed'] / rates['alone']:.2f}x")


if __name__ == "__main__":
    main()
