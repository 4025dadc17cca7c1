"""Our SFT training loop against TRL's ``SFTTrainer``: same shards, steps, batch and LoRA shape.

    python benchmarks/bench_train.py            # the demo's round one: 11 adapters x 100 rows
    python benchmarks/bench_train.py --quick    # 3 adapters x 10 steps

The sft stage trains one small LoRA adapter per preference, so what a user pays is per adapter:
the model load, the data's encoding, the optimiser loop and the save. This script times that,
with the demo's ``[sft]`` shape (paretohqd.toml: 30 steps of batch 8, lr 3e-3, 128 tokens,
LoRA r 8 / alpha 16 on q/k/v/o) on the demo's policy (stories260K, converted as the base_model
stage does), for three columns, each in a **fresh process** so imports and caches do not leak:

- ``sequential``: the sft stage's worker (``stages/sft/stage.py`` ``train_shard``: the one
  training loop ``train_adapter`` with ``SftObjective``), once per adapter, as the stage does;
- ``trl``: ``trl.SFTTrainer`` with a LoRA ``peft_config`` of the same shape, the rows as
  prompt/completion (completion-only loss), float32 on the CPU, no clipping, the same warm-up,
  full batches only, no logging, no eval; it saves each adapter (the product), nothing else;
- ``fused``: :func:`run_fused`, every adapter in one fused pass (``train_fused``).

Every column runs on the demo's ``run.train_threads`` torch threads (2). It prints seconds (the
whole process: interpreter, imports, per-adapter load, encode, train, save), the optimiser
loops alone, the non-pad tokens forwarded and tokens/s, then the ratios. The two tokenise
differently (printed below the table), so they forward different tokens: compare tokens/s.

The shards are built from the bundled data (HH-RLHF harmless-base test, each transcript split
at its last "\\n\\nAssistant:", chosen and rejected rows in file order, ``--rows`` per adapter)
so a fresh clone can run it; ``--shards runs/demo/shards/round1`` uses the demo's own shards.
Not a timed test: on the shared 2-core development machine the seconds moved 3-4x with the
other work running (two torch threads suffer most), so compare the columns within one run and
read the load average it prints.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paretohqd.stages.kit.training.sft import SFTSettings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
CONFIG = ROOT / "paretohqd.toml"
#: The converted policy, kept between runs (``convert_llama2c`` reuses a same-source directory).
MODEL_CACHE = Path(tempfile.gettempdir()) / "paretohqd-bench" / "stories260K"
COLUMNS = ("sequential", "trl", "fused")
DATA_FILE = "data.parquet"  # a shard's rows, as the select stage writes them


@dataclass(frozen=True)
class Spec:
    """What a column's process needs (written as JSON): the policy, the shards to train on, the
    training settings and where adapters go."""

    base_model: str
    shards: str
    prefs: list[str]
    settings: dict[str, Any]
    out: str


@dataclass
class Result:
    """One column: the optimiser loops' seconds, what was trained and the mean loss; ``seconds``
    (the whole process) is added by the parent, which times it."""

    loop_seconds: float
    tokens: int
    rows: int
    cut_rows: int
    mean_loss: float
    seconds: float = 0.0
    note: str = ""


def demo_settings(steps: int | None, threads: int | None) -> SFTSettings:
    """The demo's ``[sft]`` settings (and ``run.train_threads``) from paretohqd.toml, as the sft
    stage builds them, on the CPU."""
    from paretohqd.config import load_config
    from paretohqd.stages.kit.training.settings import sft_settings

    settings: SFTSettings = sft_settings(load_config(CONFIG))
    return replace(
        settings,
        steps=steps or settings.steps,
        threads=threads or settings.threads,
        device="cpu",
    )


def convert_policy() -> Path:
    """stories260K as a Hugging Face directory, converted the way the base_model stage does (a
    second call with the same sources returns the cached directory)."""
    from paretohqd.stages.kit.policy.llama2c import convert_llama2c

    src = ROOT / "data" / "stories260K"
    return convert_llama2c(src / "stories260K.bin", src / "tok512.bin", MODEL_CACHE)


def build_shards(directory: Path, adapters: int, rows: int) -> list[str]:
    """Write ``adapters`` shards of ``rows`` prompt/completion rows from the bundled data, named
    like the demo's round-one preferences (M = 2 simplex, step 0.1), consecutive blocks of the
    HH-RLHF rows that pass the demo's ingest filters, so every run trains on the same rows."""
    import polars as pl

    sys.path.insert(0, str(BENCH))
    from bench_score import load_rows

    from paretohqd.stages.kit.preferences import build_grid

    prefs = [p.pref_id for p in build_grid("simplex", 2, step=0.1)]
    if not 1 <= adapters <= len(prefs):
        raise SystemExit(f"--adapters: 1 to {len(prefs)} (the demo's preferences)")
    prefs = prefs[:adapters]
    # The demo's ingest filters (paretohqd.toml [ingest]): an empty completion cannot train.
    pairs = [
        (p, c)
        for p, c in zip(*load_rows(2 * adapters * rows), strict=True)
        if len(p) >= 8 and 2 <= len(c) <= 2000
    ]
    if len(pairs) < adapters * rows:
        raise SystemExit(f"the bundled data has {len(pairs)} rows; lower --adapters or --rows")
    prompts, completions = (list(x) for x in zip(*pairs, strict=True))
    for i, pref in enumerate(prefs):
        block = slice(i * rows, (i + 1) * rows)
        (directory / pref).mkdir(parents=True)
        frame = pl.DataFrame({"prompt": prompts[block], "completion": completions[block]})
        frame.write_parquet(directory / pref / DATA_FILE)
    return prefs


def read_rows(spec: Spec, pref: str) -> tuple[list[str], list[str]]:
    """A shard's prompts and completions."""
    import polars as pl

    frame = pl.read_parquet(Path(spec.shards) / pref / DATA_FILE, columns=["prompt", "completion"])
    return frame["prompt"].to_list(), frame["completion"].to_list()


def settings_of(spec: Spec) -> SFTSettings:
    """The spec's settings back as ``SFTSettings`` (JSON turned the module tuple into a list)."""
    from paretohqd.stages.kit.training.sft import SFTSettings

    values = dict(spec.settings)
    return SFTSettings(**{**values, "target_modules": tuple(values["target_modules"])})


def run_sequential(spec: Spec) -> Result:
    """The sft stage's worker, ``train_shard``, once per adapter (the stage's local executor
    calls it item after item): it loads the policy, encodes the shard, trains and saves."""
    from paretohqd.executor import Item
    from paretohqd.stages.sft.stage import Shard, ShardSpec, train_shard

    settings = settings_of(spec)
    shard_spec = ShardSpec(spec.base_model, settings, Path(spec.shards), [])
    loop = 0.0
    tokens = rows = cut = 0
    losses: list[float] = []
    for pref in spec.prefs:
        target = Path(spec.out) / pref
        item = Item(pref, {}, Shard([], None))
        m = train_shard(shard_spec, item, "bench", target)
        loop += m["seconds"]
        tokens += m["tokens"]
        rows += m["rows"]
        cut += m["truncated_rows"]
        losses += pl_losses(target / "training_log.parquet")
    return Result(loop, tokens, rows, cut, sum(losses) / len(losses))


def run_trl(spec: Spec) -> Result | None:
    """``trl.SFTTrainer`` per adapter, set up to match our loop where TRL lets it (None when trl
    is not installed).

    Matched: LoRA shape and targets, steps, batch, lr, AdamW (torch's, no weight decay), the
    warm-up steps then a constant lr (HF's first step at lr 0, ours at lr / warm-up steps), no
    gradient clipping (HF clips at 1.0 by default),
    float32 (SFTConfig defaults to bf16), no gradient checkpointing (SFTConfig defaults to it),
    completion-only loss, padding to the batch's longest row, seed, threads. Full batches only
    (``dataloader_drop_last``): our sampler joins an epoch's tail to the next epoch's head, so
    every step has ``batch_size`` rows; HF's would end each epoch on a short batch.
    Not matchable: TRL tokenises prompt + completion as one text and truncates to
    ``max_length`` keeping the start, dropping rows left with no completion token; ours
    tokenises them apart and cuts the prompt on the left (see :func:`main`'s notes).
    """
    if importlib.util.find_spec("trl") is None:
        return None
    import datasets
    import torch
    from peft import LoraConfig
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    s = settings_of(spec)
    torch.set_num_threads(s.threads or torch.get_num_threads())
    loop = loss = 0.0
    tokens = rows = cut = 0
    note = ""
    for pref in spec.prefs:
        prompts, completions = read_rows(spec, pref)
        data = datasets.Dataset.from_dict({"prompt": prompts, "completion": completions})
        args = SFTConfig(
            output_dir=str(Path(spec.out) / pref),
            max_steps=s.steps,
            per_device_train_batch_size=s.batch_size,
            gradient_accumulation_steps=s.grad_accum,
            learning_rate=s.lr,
            weight_decay=s.weight_decay,
            warmup_steps=s.warmup_steps,
            lr_scheduler_type="constant_with_warmup",
            optim="adamw_torch",
            max_grad_norm=0.0,
            max_length=s.max_length,
            completion_only_loss=True,
            packing=False,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            model_init_kwargs={"dtype": torch.float32},
            dataloader_drop_last=True,
            use_cpu=True,
            seed=s.seed,
            include_num_input_tokens_seen="non_padding",
            logging_strategy="no",
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        lora = LoraConfig(
            r=s.lora_r,
            lora_alpha=s.lora_alpha,
            lora_dropout=s.lora_dropout,
            target_modules=list(s.target_modules),
            task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(model=spec.base_model, args=args, train_dataset=data, peft_config=lora)
        out = trainer.train()
        trainer.save_model()
        loop += out.metrics["train_runtime"]
        loss += out.training_loss
        tokens += trainer.state.num_input_tokens_seen
        trained, long = trl_rows(trainer.train_dataset, s.max_length)
        rows += trained
        cut += long
        # TRL appends the EOS token as text; a tokenizer that splits special tokens in text
        # (the converted llama2.c one does, as llama2.c encodes) never sees the EOS id.
        tok = trainer.processing_class
        eos = tok(tok.eos_token, add_special_tokens=False)["input_ids"]
        if eos != [tok.eos_token_id]:
            note = f"EOS {tok.eos_token!r} trained as characters, not id {tok.eos_token_id}"
    return Result(loop, tokens, rows, cut, loss / len(spec.prefs), note=note)


def trl_rows(data: Any, max_length: int) -> tuple[int, int]:
    """Rows of TRL's prepared dataset left with a completion token inside ``max_length``, and
    rows longer than it. TRL 1.16 truncates while preparing and drops rows left with no
    completion token; TRL 1.0 keeps every row and truncates in the collator, so both are
    counted on the first ``max_length`` tokens."""
    if "labels" in data.column_names:
        masks = [[label != -100 for label in row] for row in data["labels"]]
    else:
        masks = [[bool(bit) for bit in row] for row in data["completion_mask"]]
    trained = sum(any(mask[:max_length]) for mask in masks)
    return trained, sum(len(ids) >= max_length for ids in data["input_ids"])


def run_fused(spec: Spec) -> Result | None:
    """All adapters in one fused pass, as the sft stage's group worker trains them."""
    from paretohqd.stages.kit.training import fused
    from paretohqd.stages.kit.training.sft import SftObjective

    jobs = [
        fused.FusedJob(
            SftObjective(list(zip(*read_rows(spec, p), strict=True))), Path(spec.out) / p, p
        )
        for p in spec.prefs
    ]
    metrics: list[Any] = []
    why_not = fused.train_fused(
        spec.base_model, jobs, settings_of(spec), lambda _label, m: metrics.append(m)
    )
    losses = [
        loss for p in spec.prefs for loss in pl_losses(Path(spec.out) / p / "training_log.parquet")
    ]
    return Result(
        loop_seconds=sum(m["seconds"] for m in metrics),  # each holds its share of the loop
        tokens=sum(m["tokens"] for m in metrics),
        rows=sum(m["rows"] for m in metrics),
        cut_rows=sum(m["truncated_rows"] for m in metrics),
        mean_loss=sum(losses) / len(losses),
        note=f"(not fused: {why_not})" if why_not else "",
    )


def pl_losses(log: Path) -> list[float]:
    """The per-step losses of a saved adapter's ``training_log.parquet``."""
    import polars as pl

    return [float(x) for x in pl.read_parquet(log)["loss"].to_list()]


RUNNERS = {"sequential": run_sequential, "trl": run_trl, "fused": run_fused}


def child(column: str, spec_path: Path) -> None:
    """A column's process: run it and print its result as the last line of JSON."""
    spec = Spec(**json.loads(spec_path.read_text()))
    result = RUNNERS[column](spec)
    print(json.dumps(None if result is None else asdict(result)))


def run_column(column: str, spec: Spec, work: Path) -> Result | None:
    """``column`` in a fresh process, timed from its start to its end (what a user pays)."""
    spec_path = work / f"{column}.json"
    spec_path.write_text(json.dumps(asdict(spec)))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--column", column, "--spec", str(spec_path)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{column} failed (exit {proc.returncode}):\n{tail}")
    value = json.loads(proc.stdout.strip().splitlines()[-1])
    if value is None:
        return None
    return replace(Result(**value), seconds=seconds)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` to two decimals, n/a where either is missing."""
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


NOTES = """
rows: rows with a completion token to learn. cut: rows longer than max_length. Ours cuts the
  prompt's oldest tokens (and a completion to no less than max_length / 2), so every row keeps
  completion tokens; TRL keeps a row's first max_length tokens, so a long prompt pushes the
  completion out (TRL 1.16 drops such rows, TRL 1.0 forwards them for no loss).
tokens: non-pad tokens forwarded. Ours encodes BOS + prompt + completion + the EOS id, the
  completion tokenised on its own (it starts a word); TRL tokenises prompt + completion + the EOS
  token's text as one string, so the completion's first token joins the prompt's last word, and
  the EOS is text (the note on TRL's row says when the tokenizer splits it into characters).
wall s: the column's whole process (interpreter, imports, per-adapter model load and encoding,
  training, saving; ours also writes the loss log, its plot and the card). loop s: the optimiser
  loops alone (TRL: train_runtime). mean loss: over all steps and adapters, a sanity check only
  (the columns train on different tokens)."""


def main() -> None:
    """Build the shards and the policy, run the columns, print the table, ratios and notes."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 adapters x 10 steps")
    ap.add_argument("--adapters", type=int, help="preferences to train (default 11, quick 3)")
    ap.add_argument("--rows", type=int, default=100, help="rows per shard (the demo's k)")
    ap.add_argument("--steps", type=int, help="optimiser steps (default [sft].steps: 30)")
    ap.add_argument("--threads", type=int, help="torch threads (default run.train_threads)")
    ap.add_argument("--shards", type=Path, help="shard dirs to train on (<pref_id>/data.parquet)")
    ap.add_argument("--columns", nargs="+", choices=COLUMNS, default=list(COLUMNS))
    ap.add_argument("--column", choices=COLUMNS, help=argparse.SUPPRESS)  # a column's process
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.column:
        child(args.column, args.spec)
        return
    adapters = args.adapters or (3 if args.quick else 11)
    settings = demo_settings(args.steps or (10 if args.quick else None), args.threads)
    base = convert_policy()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        if args.shards:
            shards = args.shards.resolve()
            prefs = sorted(p.name for p in shards.iterdir() if (p / DATA_FILE).exists())
            prefs = prefs[:adapters]
        else:
            shards = work / "shards"
            prefs = build_shards(shards, adapters, args.rows)
        data = shards if args.shards else f"{args.rows} bundled rows each"
        print(
            f"{len(prefs)} adapters ({data}),"
            f" {settings.steps} steps of batch {settings.batch_size}, lr {settings.lr}, "
            f"max_length {settings.max_length}, LoRA r {settings.lora_r} / alpha "
            f"{settings.lora_alpha} on {','.join(settings.target_modules)}, "
            f"{settings.threads} torch threads",
            flush=True,
        )
        results: dict[str, Result | None] = {}
        for column in args.columns:
            spec = Spec(str(base), str(shards), prefs, asdict(settings), str(work / column))
            results[column] = run_column(column, spec, work)
            print(f"  {column}: done", flush=True)
    print(
        f"\n{'column':11} {'rows':>5} {'cut':>4} {'tokens':>8} {'wall s':>7} {'loop s':>7} "
        f"{'tok/s wall':>10} {'tok/s loop':>10} {'mean loss':>9}"
    )
    for column in args.columns:
        r = results[column]
        if r is None:
            why = "trl is not installed" if column == "trl" else "not run"
            print(f"{column:11} {'n/a':>5}  ({why})")
            continue
        print(
            f"{column:11} {r.rows:>5} {r.cut_rows:>4} {r.tokens:>8} {r.seconds:>7.1f} "
            f"{r.loop_seconds:>7.1f} {r.tokens / r.seconds:>10.0f} "
            f"{r.tokens / r.loop_seconds:>10.0f} {r.mean_loss:>9.3f}"
            + (f"  {r.note}" if r.note else "")
        )

    def rate(column: str, *, loop: bool = False) -> float | None:
        r = results.get(column)
        return None if r is None else r.tokens / (r.loop_seconds if loop else r.seconds)

    for a, b in (("sequential", "trl"), ("fused", "sequential")):
        print(
            f"{a} / {b}, tokens/s: {ratio(rate(a), rate(b))} wall, "
            f"{ratio(rate(a, loop=True), rate(b, loop=True))} loop"
        )
    print(
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on "
        f"{os.cpu_count()} cores (above the threads in use, the timings are mostly noise)"
    )
    print(NOTES)


if __name__ == "__main__":
    main()
