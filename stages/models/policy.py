"""The base_model stage function: convert the configured llama2.c checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paretohqd.stage import StageContext


def run_base_model(ctx: StageContext) -> Mapping[str, Any]:
    """Write the converted Hugging Face model directory (atomically, replacing an old one)."""
    import time

    from paretohqd.stages.models.llama2c import convert_llama2c

    src = ctx.config.policy.llama2c if ctx.config.policy else None
    assert src is not None
    t0 = time.perf_counter()
    out = convert_llama2c(
        ctx.config.resolve(src.checkpoint),
        ctx.config.resolve(src.tokenizer),
        ctx.path("base_model"),
        overwrite=True,
    )
    return {
        "path": str(out.relative_to(ctx.run_dir)),
        "seconds": round(time.perf_counter() - t0, 3),
    }
