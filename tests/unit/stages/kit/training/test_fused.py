"""Fused multi-adapter training equals training each adapter alone.

Every method that fuses is trained both ways on the real tiny policy in float64, with adapters
of different row counts (so their samplers, paddings and batches differ): the loss curves and
the saved weights must agree to float64 rounding, and each fused adapter must be a standard
peft directory with the same files and state as a sequential one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file
from trainkit import PAIRS

from paretohqd.errors import DataError
from paretohqd.stages.kit.training.fused import FusedJob, train_fused
from paretohqd.stages.kit.training.loop import Objective, train_adapter
from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings
from paretohqd.stages.modpo.objective import ModpoObjective
from paretohqd.stages.raco.objective import RacoObjective

ROWS = [
    ("\n\nHuman: What colour is the sky?\n\nAssistant:", " The sky is blue."),
    ("\n\nHuman: What do cats say?\n\nAssistant:", " Cats say meow."),
    ("\n\nHuman: Who is Lily?\n\nAssistant:", " Lily is a little girl who likes to play."),
    ("\n\nHuman: Where is the ball?\n\nAssistant:", " The ball is in the park."),
    ("\n\nHuman: Where is Tom?\n\nAssistant:", " Tom is at home."),
    ("\n\nHuman: Tell me a story about a dog.\n\nAssistant:", " Once there was a big dog."),
    ("\n\nHuman: Hi\n\nAssistant:", " Hello!"),
]
#: float64, warm-up, two micro-batches accumulated, weight decay on, one thread.
SETTINGS = SFTSettings(
    steps=4,
    batch_size=2,
    grad_accum=2,
    lr=1e-2,
    warmup_steps=2,
    weight_decay=0.01,
    max_length=64,
    seed=3,
    threads=1,
    dtype="float64",
)
WEIGHTS = [[0.3, 0.7], [0.8, 0.2], [0.5, 0.5]]


def _objectives(method: str) -> list[Objective]:
    if method == "sft":
        return [SftObjective(ROWS[:n]) for n in (7, 3, 5)]
    if method == "modpo":
        cfg = SimpleNamespace(beta=0.1, margin_scale=1.0, loss="sigmoid")
        return [ModpoObjective(PAIRS, w, cfg) for w in WEIGHTS]
    cfg = SimpleNamespace(beta=0.2, c=0.4, clip=True)
    return [
        RacoObjective(PAIRS.subset(np.arange(n)), w, cfg)
        for w, n in zip(WEIGHTS, (6, 4, 5), strict=True)
    ]


def _train_both(
    policy: Path, method: str, root: Path, *, inits: list[Path] | None = None
) -> tuple[list[Path], list[Path], list[dict[str, Any]]]:
    inits = inits or [None] * 3  # type: ignore[list-item]
    alone = [root / "alone" / f"p{i}" for i in range(3)]
    for obj, out, init in zip(_objectives(method), alone, inits, strict=True):
        train_adapter(str(policy), obj, SETTINGS, out, init_adapter=init)
    fused = [root / "fused" / f"p{i}" for i in range(3)]
    jobs = [
        FusedJob(obj, out, f"p{i}", {"pref_id": f"p{i}"}, init)
        for i, (obj, out, init) in enumerate(zip(_objectives(method), fused, inits, strict=True))
    ]
    metrics: list[dict[str, Any]] = []
    assert train_fused(str(policy), jobs, SETTINGS, lambda _, m: metrics.append(dict(m))) is None
    return alone, fused, metrics


def _assert_equal(alone: Path, fused: Path) -> None:
    a, f = (
        pl.read_parquet(alone / "training_log.parquet"),
        pl.read_parquet(fused / "training_log.parquet"),
    )
    assert f["loss"].to_list() == pytest.approx(a["loss"].to_list(), abs=2e-6)  # logged to 1e-6
    assert f["lr"].to_list() == a["lr"].to_list()
    wa, wf = (
        load_file(str(alone / "adapter_model.safetensors")),
        load_file(str(fused / "adapter_model.safetensors")),
    )
    assert wa.keys() == wf.keys()
    for key in wa:
        assert wf[key].dtype == wa[key].dtype
        # float64: ~1e-12 apart after a few AdamW steps (its 1/sqrt(v) magnifies rounding)
        torch.testing.assert_close(wf[key], wa[key], rtol=1e-7, atol=1e-9, msg=key)
    assert (fused / "adapter_config.json").read_text() == (
        alone / "adapter_config.json"
    ).read_text()
    assert {p.name for p in fused.iterdir()} == {p.name for p in alone.iterdir()}


@pytest.mark.parametrize("method", ["sft", "modpo", "raco"])
def test_fused_training_equals_training_each_adapter_alone(
    tiny_policy: Path, tmp_path: Path, method: str
) -> None:
    alone, fused, metrics = _train_both(tiny_policy, method, tmp_path)
    for a, f in zip(alone, fused, strict=True):
        _assert_equal(a, f)
        sa = json.loads((a / "train_state.json").read_text())
        sf = json.loads((f / "train_state.json").read_text())
        assert sf["fused"] == 3 and sf["pref_id"] == f.name
        for key in ("steps", "tokens", "examples"):
            assert sf["metrics"][key] == sa["metrics"][key]
    assert [m["fused"] for m in metrics] == [3, 3, 3]


def test_fused_round_two_continues_each_preference_from_its_own_adapter(
    tiny_policy: Path, tmp_path: Path
) -> None:
    first, _, _ = _train_both(tiny_policy, "sft", tmp_path / "r1")
    alone, fused, _ = _train_both(tiny_policy, "sft", tmp_path / "r2", inits=first)
    for a, f in zip(alone, fused, strict=True):
        _assert_equal(a, f)
    # the three continue three different adapters, so they differ from each other
    w = [load_file(str(f / "adapter_model.safetensors")) for f in fused]
    key = next(iter(w[0]))
    assert not torch.equal(w[0][key], w[1][key])


def test_dropout_falls_back_to_one_adapter_at_a_time(tiny_policy: Path, tmp_path: Path) -> None:
    settings = replace(SETTINGS, lora_dropout=0.1, steps=2, dtype="float32")
    jobs = [FusedJob(SftObjective(ROWS[:n]), tmp_path / f"p{n}", f"p{n}") for n in (3, 4)]
    done: list[str] = []
    reason = train_fused(str(tiny_policy), jobs, settings, lambda label, _: done.append(label))
    assert reason is not None and "drops out" in reason
    assert done == ["p3", "p4"] and all((j.out_dir / "adapter_config.json").exists() for j in jobs)
    assert "fused" not in json.loads((tmp_path / "p3" / "train_state.json").read_text())


def test_a_diverging_adapter_is_named_and_nothing_is_saved(
    tiny_policy: Path, tmp_path: Path
) -> None:
    class Diverging(SftObjective):
        def fused_losses(self, *args: Any) -> list[Any]:
            scale = float("nan") if len(self.rows) == 4 else 1.0
            return [x * scale for x in super().fused_losses(*args)]

    objs = [Diverging(ROWS[:3]), Diverging(ROWS[:4])]
    jobs = [FusedJob(o, tmp_path / f"p{i}", f"pref-{i}") for i, o in enumerate(objs)]
    with pytest.raises(
        DataError, match=r"sft \(pref-1\): loss became nan at step 0; lower sft\.lr"
    ):
        train_fused(str(tiny_policy), jobs, replace(SETTINGS, dtype="float32"), lambda *_: None)
    assert not any(j.out_dir.exists() for j in jobs)


def test_the_router_multiplies_block_by_block_only_for_equal_contiguous_blocks() -> None:
    """The block path must never see rows it would misassign: unequal, interleaved or
    partial blocks take the per-row path."""
    from paretohqd.stages.kit.training.fused import Router

    router = Router()
    router.route([0, 0, 1, 1, 2, 2], 3, "cpu")
    assert router.blocks is not None and router.blocks[0] is None and router.blocks[1] == 2
    router.route([0, 0, 2, 2], 3, "cpu")  # adapter 1 is done: blocks of 0 and 2
    assert router.blocks is not None and router.blocks[0].tolist() == [0, 2]
    for owner in ([0, 0, 1, 1, 1], [0, 1, 0, 1], [0, 0, 1], []):
        router.route(owner, 2, "cpu")
        assert router.blocks is None, owner
    router.clear()
    assert router.rows is None and router.blocks is None


def test_block_and_per_row_products_agree() -> None:
    import torch

    from paretohqd.stages.kit.training.fused import Router, StackedLoraLinear

    torch.manual_seed(0)
    router = Router()
    layer = StackedLoraLinear(
        torch.nn.Linear(6, 5).double(),
        torch.randn(3, 2, 6, dtype=torch.float64),
        torch.randn(3, 5, 2, dtype=torch.float64),
        2.0,
        router,
    )
    x = torch.randn(6, 4, 6, dtype=torch.float64)
    router.route([0, 0, 2, 2, 1, 1], 3, "cpu")
    assert router.blocks is not None
    blocked = layer(x)
    router.blocks = None  # the per-row path on the same rows
    torch.testing.assert_close(layer(x), blocked)
    for k, p in enumerate([0, 0, 2, 2, 1, 1]):  # and peft's formula, row by row
        want = layer.base_layer(x[k]) + 2.0 * (x[k] @ layer.lora_a[p].T @ layer.lora_b[p].T)
        torch.testing.assert_close(blocked[k], want)
