"""One SFT adapter trained by two Ray Train workers (``TorchTrainer``, gloo on an embedded
2-CPU cluster) equals the adapter one process trains: the workers share each step's
micro-batches and sum their gradients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from raykit import stage_context  # noqa: E402

from paretohqd.executor import Item, LocalExecutor  # noqa: E402
from paretohqd.ray_executor import RayExecutor  # noqa: E402
from paretohqd.stage import StageContext  # noqa: E402

pytestmark = pytest.mark.ray

ROWS = [
    ("Once upon a time", " there was a cat."),
    ("Lily went to the park", " and played with a ball."),
    ("Tom had a dog", " that liked to run."),
    ("The sun was hot", " so they swam in the lake."),
    ("A little bird", " sang a happy song."),
    ("Sam was sad", " until his mom gave him a hug."),
]


def train_item(spec: dict[str, Any], item: Item, key: str, target: Path) -> dict[str, Any]:
    """An SFT item worker, as the sft stage's: one adapter on ``spec["rows"]``."""
    from paretohqd.stages.kit.training.loop import train_adapter
    from paretohqd.stages.kit.training.sft import SftObjective, SFTSettings

    settings = SFTSettings(
        steps=4,
        batch_size=2,
        grad_accum=spec["accum"],
        lr=5e-3,
        warmup_steps=0,
        max_length=32,
        device="cpu",
        dtype="float32",
        seed=item.payload,
    )
    return train_adapter(spec["model"], SftObjective(spec["rows"]), settings, target)


def _ctx(tmp_path: Path, kind: str, **stages: Any) -> StageContext:
    run = {"name": "r", "threads": 1}
    return stage_context(tmp_path, run=run, executor={"kind": kind, "stages": stages})


def _weights(directory: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


def test_two_ray_train_workers_train_the_adapter_one_process_trains(
    tiny_policy: Path, tmp_path: Path
) -> None:
    import torch

    spec = {"model": str(tiny_policy), "rows": ROWS, "accum": 2}
    items = [Item("pref-a", {"seed": 3}, payload=3)]
    local = LocalExecutor().map_items(
        _ctx(tmp_path / "l", "local"), train_item, spec, items, tmp_path / "l" / "out"
    )
    ctx = _ctx(tmp_path / "r", "ray", toy={"workers": 2})
    remote = RayExecutor(ctx.config.executor).map_items(
        ctx, train_item, spec, items, tmp_path / "r" / "out"
    )
    assert remote.made == ["pref-a"]
    want, got = _weights(tmp_path / "l/out/pref-a"), _weights(tmp_path / "r/out/pref-a")
    assert want.keys() == got.keys()
    # The same sums in another order: float32 rounding only, which Adam's normalisation turns
    # into ~1e-5 on a few weights. Training on half the micro-batches (what a worker would do
    # if the gradients were not summed) lands far away, so the tolerance tells them apart.
    half = LocalExecutor().map_items(
        _ctx(tmp_path / "h", "local"), train_item, {**spec, "accum": 1}, items, tmp_path / "h"
    )
    assert half.made == ["pref-a"]
    other = _weights(tmp_path / "h/pref-a")

    def gap(a: dict[str, Any], b: dict[str, Any]) -> float:
        return max(float((a[k] - b[k]).abs().max()) for k in a)

    assert gap(got, want) < 1e-4 < gap(other, want) / 10
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-3, atol=1e-4)
    for metric in ("steps", "examples", "tokens"):
        assert remote.metrics["pref-a"][metric] == local.metrics["pref-a"][metric]
    assert abs(remote.metrics["pref-a"]["last_loss"] - local.metrics["pref-a"]["last_loss"]) < 1e-4


def test_more_workers_than_micro_batches_is_refused(tiny_policy: Path, tmp_path: Path) -> None:
    spec = {"model": str(tiny_policy), "rows": ROWS, "accum": 1}
    ctx = _ctx(tmp_path, "ray", toy={"workers": 2})
    # the worker's own error, unwrapped from Ray Train's on the driver: one line, as locally
    from paretohqd.errors import DataError

    with pytest.raises(DataError, match="grad_accum = 1"):
        RayExecutor(ctx.config.executor).map_items(
            ctx, train_item, spec, [Item("p", {}, payload=1)], tmp_path / "out"
        )
