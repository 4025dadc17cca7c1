"""Default learning rates keep each method's published effective step (lr × alpha / r)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.config import config_from_dict, declared_tables
from paretohqd.stages.kit.training.recipes import SFT_RECIPE, Recipe, default_lr, method_shape

#: SFT's recipe and every method table's, as the packages declare them.
PUBLISHED: dict[str, Recipe] = {"sft": SFT_RECIPE} | {
    name: model.published  # type: ignore[attr-defined]
    for name, model in declared_tables().items()
    if getattr(model, "published", None) is not None
}


def test_every_method_declares_its_recipe() -> None:
    assert set(PUBLISHED) == {"sft", "modpo", "raco", "pama"}


@pytest.mark.parametrize("method", sorted(PUBLISHED))
@pytest.mark.parametrize(("r", "alpha"), [(8, 16), (64, 1), (16, 16), (4, 32)])
def test_default_lr_keeps_the_effective_step(method: str, r: int, alpha: int) -> None:
    lr = default_lr(PUBLISHED[method], lora_r=r, lora_alpha=alpha)
    assert lr * alpha / r == pytest.approx(PUBLISHED[method].effective_step)


def test_published_numbers() -> None:
    def lr(method: str, r: int, alpha: int) -> float:
        return default_lr(PUBLISHED[method], lora_r=r, lora_alpha=alpha)

    assert lr("modpo", 64, 1) == pytest.approx(5e-4)  # as published
    assert lr("pama", 64, 128) == pytest.approx(1e-5)
    assert lr("sft", 8, 16) == pytest.approx(1.414e-4)
    assert lr("modpo", 8, 16) == pytest.approx(5e-4 / 64 / 2)
    assert lr("raco", 8, 16) == pytest.approx(10 * 2e-5 / 2)


def test_method_shape_inherits_sft_and_takes_overrides(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "ingest": {"sources": [{"kind": "table", "path": "x"}]},
            "sft": {"lora_r": 4, "lora_alpha": 8},
            "modpo": {},
            "raco": {"lr": 1e-3, "lora_r": 16},
        },
        base_dir=tmp_path,
        source="t.toml",
    )
    assert method_shape(config, "modpo") == {
        "lora_r": 4,
        "lora_alpha": 8,
        "lr": pytest.approx(5e-4 / 64 / 2),
    }
    assert method_shape(config, "raco") == {"lora_r": 16, "lora_alpha": 8, "lr": 1e-3}
