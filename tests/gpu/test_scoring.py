"""hf-classifier scores on the GPU against the same scorer on the CPU.

The classifier is the bundled stories260K with a sequence-classification head (seeded, random):
a real Llama reward-model shape that needs nothing the repo does not ship. Tolerances:

- float32 on the GPU vs float32 on the CPU: ``|gpu - cpu| <= 1e-3 * max(1, range of the CPU
  scores)`` on every row (other kernels, other summation orders; no TF32, torch's default);
- bfloat16 on the GPU (``dtype = "auto"``, what a GPU run uses) vs float32 on the CPU: the same
  order (Spearman >= 0.98), which is what the Pareto layers read, and within 10% of the scores'
  range on every row (bfloat16 on the CPU gave 0.998 and 2.4% on these rows).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

ROWS = 96


@pytest.fixture(scope="session")
def classifier(tiny_policy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """stories260K as a 2-label LlamaForSequenceClassification, saved with its tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    torch.manual_seed(0)
    model = LlamaForSequenceClassification.from_pretrained(str(tiny_policy), num_labels=2)
    torch.nn.init.normal_(model.score.weight, std=0.5)  # a spread of scores, not near-zero
    out = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_policy)).save_pretrained(out)
    return out


def _score(model: Path, pairs: list[tuple[str, str]], **options: Any) -> tuple[np.ndarray, float]:
    from paretohqd.stages.kit.scoring.scorers import build_scorer

    scorer = build_scorer(
        "hf-classifier",
        name="tiny-rm",
        model=str(model),
        options={"progress": False, "batch_size": 16, "max_length": 256, **options},
    )
    prompts, responses = [p for p, _ in pairs], [r for _, r in pairs]
    scorer.score(prompts[:4], responses[:4])  # warm-up: first-call kernels and allocations
    t0 = time.perf_counter()
    scores = scorer.score(prompts, responses)
    return scores, time.perf_counter() - t0


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_gpu_scores_equal_cpu_scores(
    classifier: Path, device: str, hh_pairs: list[tuple[str, str]], figures: Any
) -> None:
    pairs = hh_pairs[:ROWS]
    cpu, cpu_s = _score(classifier, pairs, device="cpu", dtype="float32")
    gpu32, gpu32_s = _score(classifier, pairs, device=device, dtype="float32")
    bf16, bf16_s = _score(classifier, pairs, device=device, dtype="bfloat16")
    spread = float(np.ptp(cpu))
    assert spread > 0.1, "the scores barely vary: the comparison would prove nothing"

    diff32 = float(np.max(np.abs(gpu32 - cpu)))
    diff16 = float(np.max(np.abs(bf16 - cpu)))
    rho = _spearman(bf16, cpu)
    figures(
        rows=len(pairs),
        score_range=round(spread, 4),
        max_abs_diff_float32=diff32,
        max_abs_diff_bfloat16=diff16,
        bfloat16_diff_over_range=round(diff16 / spread, 5),
        spearman_bfloat16=round(rho, 5),
        rows_per_s_cpu_float32=round(len(pairs) / cpu_s, 1),
        rows_per_s_gpu_float32=round(len(pairs) / gpu32_s, 1),
        rows_per_s_gpu_bfloat16=round(len(pairs) / bf16_s, 1),
    )
    np.testing.assert_allclose(gpu32, cpu, rtol=0, atol=1e-3 * max(1.0, spread))
    assert diff16 <= 0.1 * spread, f"bfloat16 off by {diff16:.4f} on a range of {spread:.4f}"
    assert rho >= 0.98
