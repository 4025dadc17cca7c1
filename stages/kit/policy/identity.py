"""Where a policy comes from: the base model, the shared SFT start, and their identities.

Every stage that loads the policy asks here, so they agree on the path, on which artifacts
they must declare as inputs, and on what enters their fingerprints (content hash of a local
model directory, or the hub id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from paretohqd.config import Config
from paretohqd.hashing import FileHasher
from paretohqd.stages.kit.identity import source_identity

#: Where ``base_model`` writes the converted policy (llama2.c or GGUF), under the run.
BASE_MODEL_DIR = "models/base"
#: Where ``sft_init`` writes the shared SFT start of the baselines, under the run.
INIT_MODEL_DIR = "models/sft_init"


def policy_model(config: Config) -> str:
    """Where the base policy loads from: the converted model, a local directory, or a hub id."""
    assert config.policy is not None
    if config.converts_policy:
        return str(config.run_dir / BASE_MODEL_DIR)
    model = config.policy.model or ""
    path = config.resolve(model)
    return str(path) if path.exists() else model


def uses_init(config: Config) -> list[str]:
    """The configured methods that start from the shared SFT model (``init = "sft"``)."""
    from paretohqd.stages.kit.methods import method_tables

    return [name for name, table in method_tables(config).items() if table.init == "sft"]


def start_model(config: Config, init: str) -> str:
    """Where a method's policy starts (and its reference lives): the shared SFT model or base."""
    if init == "sft":
        return str(config.run_dir / INIT_MODEL_DIR)
    return policy_model(config)


def policy_inputs(config: Config) -> tuple[str, ...]:
    """The artifacts a stage that loads the base policy must declare."""
    return ("base_model",) if config.converts_policy else ()


def start_inputs(config: Config, init: str) -> tuple[str, ...]:
    """The artifacts a method starting from ``init`` reads its policy from."""
    return (*policy_inputs(config), *(("init_model",) if init == "sft" else ()))


def policy_external(config: Config, hasher: FileHasher) -> Mapping[str, Any]:
    """The identity of a policy loaded from outside the run (content hash or hub id)."""
    assert config.policy is not None
    if config.converts_policy or config.policy.model is None:
        return {}
    return {"policy.model": source_identity(config, config.policy.model, hasher)}
