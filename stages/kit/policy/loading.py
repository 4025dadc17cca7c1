"""Loading the policy: device and dtype choice, tokenizer padding, LoRA adapters.

Everything that touches transformers/peft for the policy goes through here, so the SFT,
generation and method stages agree on devices, dtypes and padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from paretohqd.errors import ConfigError, ModelError


def pick_device(device: str = "auto") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"device = {device!r} but torch sees no CUDA GPU in this process; set "
            "policy.device = 'cpu', or run the stage where a GPU is (on Ray, 'auto' means a "
            "GPU exactly when [executor.stages.<stage>] gpus > 0)"
        )
    return device


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run a block with ``threads`` torch CPU threads (``None``: as they are), then restore.

    Training a small model gains from a second core where generating with it loses (measured
    on 2 cores: SFT 1.3–1.5× faster on two threads, generation ~10× slower), so the trainers
    take ``run.train_threads`` while ``run.threads`` stays the process default.
    """
    import torch

    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_dtype(dtype: str, device: str) -> Any:
    """``auto`` → bf16 on GPU, float32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        return {
            "float32": torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
            "float64": torch.float64,  # exactness checks (fused vs sequential training)
        }[dtype]
    except KeyError:
        raise ModelError(
            f"dtype = {dtype!r}: use auto, float32, bfloat16, float16 or float64"
        ) from None


def load_tokenizer(model: str, *, padding_side: str = "left") -> Any:
    """The policy tokenizer with a pad token (EOS when the model has none)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise ModelError(f"policy model {model!r}: cannot load a tokenizer ({exc})") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # Stages truncate explicitly (and count it); silence the tokenizer's length warning.
    tok.model_max_length = 1 << 30
    tok.padding_side = padding_side
    return tok


def load_policy(
    model: str,
    *,
    adapter: Path | None = None,
    trainable: bool = False,
    device: str = "auto",
    dtype: str = "auto",
) -> Any:
    """A causal LM, optionally with a LoRA adapter (trainable or merged for inference)."""
    import warnings

    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-load weight bars drown the stage log
    # peft still calls this transformers API; the warning is not actionable for users.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")

    dev = pick_device(device)
    try:
        lm: Any = AutoModelForCausalLM.from_pretrained(model, dtype=pick_dtype(dtype, dev))
    except (OSError, ValueError) as exc:
        raise ModelError(f"policy model {model!r}: cannot load a causal LM ({exc})") from None
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").exists():
            raise ModelError(f"{adapter}: not a LoRA adapter directory (no adapter_config.json)")
        peft_model: Any = PeftModel.from_pretrained(lm, str(adapter), is_trainable=trainable)
        return peft_model.to(dev)
    return lm.to(dev)


def lora_layers(model: Any) -> list[str]:
    """The names LoRA can target in ``model``: the leaf names of its linear layers (and
    GPT-2-style ``Conv1D``), once each, in model order (``q_proj, k_proj, ...``)."""
    import torch
    from transformers.pytorch_utils import Conv1D

    names: dict[str, None] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear | Conv1D):
            names[name.rsplit(".", 1)[-1]] = None
    return list(names)


def check_lora_targets(
    model: Any, targets: Sequence[str], *, model_name: str, key: str = "sft.target_modules"
) -> None:
    """Refuse LoRA target names that match no module of ``model`` (peft's rule: a module
    matches when its dotted name is the target or ends with ``.target``), naming the config
    ``key`` and the model's linear layers, before peft fails with a traceback."""
    modules = [name for name, _ in model.named_modules() if name]
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in modules)]
    if missing:
        verb = "matches" if len(missing) == 1 else "match"
        raise ConfigError(
            f"{key}: {', '.join(map(repr, missing))} {verb} no module of the policy "
            f"{model_name}; its linear layers are {', '.join(lora_layers(model)) or 'none'}"
        )


def context_length(model: Any) -> int:
    """The model's context window in tokens."""
    return config_context_length(model.config)


def config_context_length(cfg: Any) -> int:
    """The context window a model config names (2048 when it names none)."""
    for key in ("max_position_embeddings", "n_positions", "seq_length"):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


def render_prompt(tok: Any, prompt: str, template: str) -> str:
    """The prompt text the policy sees: the stored transcript (``plain``) or ``chat``.

    ``chat`` parses the HH transcript back into messages and applies the tokenizer's chat
    template with the generation prompt, for instruction-tuned policies.
    """
    if template == "plain":
        return prompt
    from paretohqd.stages.kit.records import to_messages

    if not getattr(tok, "chat_template", None):
        raise ModelError(
            "sft.template = 'chat' but the policy tokenizer has no chat template; use 'plain'"
        )
    return str(
        tok.apply_chat_template(to_messages(prompt), add_generation_prompt=True, tokenize=False)
    )


def bos_prefix(tok: Any, ids: list[int]) -> list[int]:
    """``[bos]`` to put before ``ids``, or ``[]`` when there is none, the tokenizer does not want
    one, or the text already starts with it (chat templates often begin with the BOS token)."""
    bos = tok.bos_token_id
    if bos is None or ids[:1] == [bos]:
        return []
    wants = getattr(tok, "_paretohqd_wants_bos", None)
    if wants is None:  # does the tokenizer itself start encoded text with BOS?
        wants = tok("a", add_special_tokens=True)["input_ids"][:1] == [bos]
        tok._paretohqd_wants_bos = wants
    return [bos] if wants else []
