"""The base_model stage function: build the policy directory from a llama2.c or GGUF source.

Converting once into a plain Hugging Face directory means every later stage (SFT, generation,
vLLM) loads the policy the same way, whatever format it shipped in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from paretohqd.errors import ModelError
from paretohqd.stage import StageContext


def run_base_model(ctx: StageContext) -> Mapping[str, Any]:
    """Write the converted model directory (atomically, replacing an old one)."""
    policy = ctx.config.policy
    assert policy is not None
    out = ctx.path("base_model")
    t0 = time.perf_counter()
    if policy.llama2c is not None:
        from paretohqd.stages.models.llama2c import convert_llama2c

        convert_llama2c(
            ctx.config.resolve(policy.llama2c.checkpoint),
            ctx.config.resolve(policy.llama2c.tokenizer),
            out,
            overwrite=True,
        )
        source = "llama2c"
    else:
        assert policy.gguf is not None
        dequantise_gguf(str(ctx.config.resolve(policy.gguf.path)), policy.gguf.file, out)
        source = "gguf"
    return {"source": source, "seconds": round(time.perf_counter() - t0, 3)}


def dequantise_gguf(directory: str, file: str, out: Any) -> None:
    """Load a GGUF checkpoint with transformers (``gguf_file=``) and save it as safetensors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretohqd.atomic import atomic_path

    try:
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=file)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelError(
            f"policy.gguf: cannot load {file} from {directory} ({str(exc).splitlines()[0]}); "
            "it needs the `gguf` package and a GGUF architecture transformers supports"
        ) from None
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
