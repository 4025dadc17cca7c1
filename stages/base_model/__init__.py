"""The ``base_model`` stage: convert a llama2.c or GGUF checkpoint into ``models/base/``.

The policy is any causal LM transformers loads; a config that names a llama2.c checkpoint (the
demo's stories260K) or a GGUF file gets it converted once into a plain Hugging Face directory,
so every later stage loads the policy the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paretohqd.config import Config
from paretohqd.hashing import FileHasher
from paretohqd.stage import Artifact, Stage, Tool
from paretohqd.stages.kit.policy.identity import BASE_MODEL_DIR

BASE_MODEL = Artifact("base_model", BASE_MODEL_DIR, kind="dir", role="policy")


def _convert_external(config: Config, hasher: FileHasher) -> Mapping[str, Any]:
    assert config.policy is not None
    from paretohqd.errors import ModelError

    if config.policy.llama2c is not None:
        src = config.policy.llama2c
        out = {}
        for key, raw in (("checkpoint", src.checkpoint), ("tokenizer", src.tokenizer)):
            path = config.resolve(raw)
            if not path.is_file():
                raise ModelError(
                    f"policy.llama2c.{key}: {path} does not exist; fix the path (relative to "
                    "the config file)"
                )
            out[f"policy.llama2c.{key}"] = hasher.file(path)
        return out
    from paretohqd.stages.base_model.convert import gguf_directory

    assert config.policy.gguf is not None
    path = gguf_directory(config) / config.policy.gguf.file
    if not path.is_file():
        raise ModelError(f"policy.gguf: {path} does not exist; check policy.gguf.path and .file")
    return {"policy.gguf": hasher.file(path)}


def stages(config: Config) -> list[Stage]:
    """``base_model`` when the policy is a checkpoint to convert."""
    from paretohqd.stages.base_model.convert import run_base_model

    if config.policy is None or not config.converts_policy:
        return []
    return [
        Stage(
            name="base_model",
            fn=run_base_model,
            outputs=(BASE_MODEL,),
            section="policy",
            version="1",
            params=lambda c: {
                "policy": {"source": "llama2c" if c.policy and c.policy.llama2c else "gguf"}
            },
            external=_convert_external,
            description="convert the llama2.c / GGUF checkpoint to a Hugging Face model",
        )
    ]


def _convert_llama2c(*, checkpoint: Path, tokenizer: Path, out: Path, overwrite: bool) -> Path:
    from paretohqd.stages.kit.policy.llama2c import convert_llama2c

    return convert_llama2c(checkpoint, tokenizer, out, overwrite=overwrite)


#: Tools that need no run: ``paretohqd convert-llama2c``.
TOOLS = (Tool("convert-llama2c", _convert_llama2c, "llama2.c checkpoint → Hugging Face Llama"),)
