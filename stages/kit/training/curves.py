"""Reading a training loss curve: a smoothed line, and the final-step jump worth a warning.

An adapter is saved after its last step, so a loss that jumps on that step is the state the
adapter is evaluated in, while the curve before it looks healthy: a per-adapter plot, the
report's loss panels and its warnings all flag it (:func:`final_jump`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

#: Smoothing weight of :func:`ema`: TensorBoard's default, so a curve looks as it does there.
SMOOTHING = 0.6

#: A final step whose loss exceeds this multiple of the median of the steps before it is a
#: jump. On the demo run no step of any positive loss curve (the 60 adapters of SFT rounds one
#: and two, the linear arm, MODPO and RACO) exceeds 1.34x the median of the steps before it,
#: except one final RACO step at 1.84x (a one-hot preference); 1.5 sits between minibatch
#: noise and that jump.
JUMP_FACTOR = 1.5

#: Steps needed before the last for their median to mean something.
MIN_STEPS = 3


def ema(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing (the first points are not
    pulled toward zero): ``s_t = weight·s_{t-1} + (1 - weight)·x_t``, divided by
    ``1 - weight^(t+1)``."""
    out: list[float] = []
    acc = 0.0
    for t, x in enumerate(values):
        acc = weight * acc + (1 - weight) * float(x)
        out.append(acc / (1 - weight ** (t + 1)))
    return out


@dataclass(frozen=True)
class Jump:
    """A final-step jump: the last step, its loss, the median of the steps before, the ratio."""

    step: int
    loss: float
    median: float
    ratio: float

    def describe(self) -> str:
        """One line for a plot or a report."""
        return (
            f"last step {self.step}: loss {self.loss:.4g} is {self.ratio:.2f}x the median "
            f"{self.median:.4g} of the steps before"
        )


def final_jump(
    steps: Sequence[int], losses: Sequence[float], factor: float = JUMP_FACTOR
) -> Jump | None:
    """The jump of the curve's last step (None when there is none).

    A jump is a last loss above ``factor`` times the median of the earlier ones. Only for
    positive losses (NLL, DPO-style, RACO): a ratio to a median near or below zero (PAMA's
    clipped PPO objective) says nothing, so such curves are never flagged.
    """
    if len(losses) < MIN_STEPS + 1:
        return None
    before = median(float(x) for x in losses[:-1])
    last = float(losses[-1])
    if before <= 0 or last <= factor * before:
        return None
    return Jump(int(steps[-1]), last, before, last / before)


def draw_curve(ax: Any, steps: Sequence[int], losses: Sequence[float], **line: Any) -> None:
    """The raw curve (thin, faint) and its :func:`ema` (solid) on ``ax``; a final-step jump
    is ringed in red. ``line`` styles the smoothed line (``label``, ``color``)."""
    line = dict(line)
    raw = ax.plot(steps, losses, lw=0.8, alpha=0.35, color=line.pop("color", None))
    ax.plot(steps, ema(losses), lw=1.5, color=raw[0].get_color(), **line)
    jump = final_jump(steps, losses)
    if jump is not None:
        ax.scatter([jump.step], [jump.loss], s=60, facecolors="none", edgecolors="red", zorder=4)


def write_loss_plot(path: Path, log: Sequence[Mapping[str, Any]], title: str) -> None:
    """``loss.png``: the raw and smoothed loss of one adapter, titled with its method and
    preference, a final-step jump ringed and explained under the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(e["step"]) for e in log]
    losses = [float(e["loss"]) for e in log]
    fig, ax = plt.subplots(figsize=(5, 3.4))
    draw_curve(ax, steps, losses, label=f"EMA ({SMOOTHING})")
    ax.plot([], [], lw=0.8, alpha=0.35, color="C0", label="per step")
    jump = final_jump(steps, losses)
    if jump is not None:
        ax.text(
            0.5,
            1.01,
            f"final-step jump (ringed): loss {jump.loss:.4g} = {jump.ratio:.2f}x the median before",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=7,
            color="red",
        )
        ax.set_title(title, pad=14)
    else:
        ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
