"""Loss curves: the smoothed line, the final-step jump, and the per-adapter plot."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.stages.kit.tracking import AdapterRun
from paretohqd.stages.kit.training.curves import JUMP_FACTOR, ema, final_jump, write_loss_plot
from paretohqd.stages.kit.training.loop import loss_title

#: The demo's RACO pref-000-100 curve: flat near ln 2, then a jump on its last step.
RACO = [0.693, 0.693, 0.695, 0.700, 0.705, 0.712, 0.709, 0.705, 0.690, 0.716, 0.722, 1.307]
#: A noisy SFT curve whose worst spike (mid-run) is 1.4x the median before it.
SFT = [3.3, 3.0, 2.9, 4.1, 2.8, 2.7, 2.9, 2.6, 2.5, 2.6]


def test_ema_is_debiased_and_smooths() -> None:
    assert ema([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # no pull toward zero
    smooth = ema([0.0, 1.0] * 10)
    assert max(smooth[4:]) - min(smooth[4:]) < 0.5  # the raw curve swings by 1


def test_final_jump_flags_the_last_step_only() -> None:
    jump = final_jump(list(range(len(RACO))), RACO)
    assert jump is not None
    assert (jump.step, jump.loss) == (11, 1.307)
    assert jump.ratio == pytest.approx(1.307 / 0.705)
    assert "1.85x the median" in jump.describe()
    assert final_jump(list(range(len(SFT))), SFT) is None  # a spike mid-run is noise
    steps = list(range(5))
    assert final_jump(steps, [1.0, 1.0, 1.0, 1.0, JUMP_FACTOR * 1.0]) is None  # not above k
    assert final_jump(steps, [1.0, 1.0, 1.0, 1.0, 1.6]) is not None
    assert final_jump(steps[:3], [1.0, 1.0, 9.0]) is None  # too few steps to judge
    # a PPO-style objective below zero has no meaningful ratio: never flagged
    assert final_jump(steps, [-0.4, -0.4, -0.38, -0.45, -0.01]) is None


def test_loss_plot_is_titled_by_the_run(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    run = AdapterRun("raco").of("pref-000-100", [0.0, 1.0])
    assert loss_title(run, {"method": "raco"}) == "raco · pref 0.00/1.00"
    # adapters trained outside a stage: the method and preference their state records
    assert loss_title(None, {"method": "sft", "pref_id": "pref-030-070"}) == "sft · pref-030-070"
    assert loss_title(None, {"method": "sft"}) == "sft"
    log = [{"step": i, "loss": x, "lr": 1e-3} for i, x in enumerate(RACO)]
    write_loss_plot(tmp_path / "loss.png", log, run.title)
    assert mpimg.imread(tmp_path / "loss.png")[..., :3].std() > 0.01
