"""A finished run's model and data artifacts, laid out as the stages write them, in seconds.

Importable as ``hubrun`` (``tests`` is on the path), shared by the Hub export's tests and the
CLI's. The base policy is the real converted stories260K; the adapters are real PEFT LoRA
adapters saved by PEFT from that model in the run (so their ``adapter_config.json`` records
the run's absolute path, as a trained one does), with the ``train_state.json`` and card the
training loop writes; the shards are written by the kit's own card writers.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from paretohqd.stages.kit.cards import write_card, write_repo_card
from paretohqd.stages.kit.hub import dataset_keys

PREFS = {"pref-000-100": {"harmless": 0.0, "helpful": 1.0}}


def config_text(data: Path, *, policy: str | None = None) -> str:
    """A config whose graph holds base_model (or ``policy.model``), select, sft, round two
    and evaluate, over the bundled data at ``data``."""
    llama = (
        f'llama2c = {{ checkpoint = "{data}/stories260K/stories260K.bin", '
        f'tokenizer = "{data}/stories260K/tok512.bin" }}'
    )
    return f"""
[run]
name = "t"

[[ingest.sources]]
kind = "hh-rlhf"
path = "{data}/hh-rlhf/harmless-base/test.jsonl.gz"
limit = 40
license = "mit"
hub_id = "Anthropic/hh-rlhf"

[[objectives]]
name = "concise"
scorer = "heuristic"
options = {{ metric = "conciseness", target = 30 }}

[[objectives]]
name = "varied"
scorer = "heuristic"
options = {{ metric = "repetition", n = 2 }}

[select]
k = 2
grid = [[0.0, 1.0]]

[policy]
{f'model = "{policy}"' if policy else llama}
device = "cpu"

[regenerate]
prompts = 2

[evaluate]
prompts = 2
"""


def _adapter(base: Path, out: Path, state: dict[str, Any]) -> None:
    """A LoRA adapter on ``base`` saved by PEFT, with the loop's train_state.json and card."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base))
    lora = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a trained adapter is not the identity
    lora.save_pretrained(str(out))
    (out / "train_state.json").write_text(json.dumps(state, indent=2))
    (out / "README.md").write_text(
        f"---\nlibrary_name: peft\nbase_model: {state['base_model']}\n---\n# {out.name}\n\n"
        f"Trained on {state['base_model']}, continuing {state['init_adapter'] or 'nothing'}.\n"
    )


def _shards(root: Path, config: Any) -> None:
    metas = {}
    for pid, pref in PREFS.items():
        (root / pid).mkdir(parents=True)
        pl.DataFrame(
            {"pref_id": [pid, pid], "prompt": ["a", "b"], "completion": [" x", " y"]}
        ).write_parquet(root / pid / "data.parquet")
        meta = {
            "pref_id": pid,
            "preference": pref,
            "objectives": list(pref),
            "round": int(root.name[-1]),
            "mode": "ray",
            "k": 2,
            "rows": 2,
            "distance": {"min": 0.0, "max": 0.1},
            "pool": {"layers": 1, "max_layer": 1, "rows": 2, "target_rows": 2},
            "reproduce": "paretohqd run --config paretohqd.toml --only select",
        }
        write_card(root / pid, meta, dataset_keys(config, 2))
        metas[pid] = meta
    write_repo_card(root, metas, dataset_keys(config, 2), {"round": meta["round"]})


def make_run(config: Any, policy: Path, *, base: str | None = None) -> Path:
    """Lay out ``config``'s run: round one's and round two's adapters of every preference in
    :data:`PREFS` and both rounds' shards. The adapters' base is ``models/base`` (a copy of
    ``policy``) unless ``base`` names another: a hub id or a local directory."""
    run = config.run_dir
    load_from = policy
    if base is None:
        load_from = run / "models/base"
        shutil.copytree(policy, load_from)
        base = str(load_from)
    for pid, pref in PREFS.items():
        one, two = run / "adapters/round1" / pid, run / "adapters/round2" / pid
        state = {"method": "sft", "base_model": base, "init_adapter": "", "shard_card": pref}
        _adapter(load_from, one, state)
        _adapter(load_from, two, state | {"init_adapter": str(one)})
        for d in (one, two):  # what PEFT records: where the base was loaded from (or its id)
            cfg = json.loads((d / "adapter_config.json").read_text())
            cfg["base_model_name_or_path"] = base
            (d / "adapter_config.json").write_text(json.dumps(cfg))
    for round_ in ("round1", "round2"):
        _shards(run / "shards" / round_, config)
    return run
