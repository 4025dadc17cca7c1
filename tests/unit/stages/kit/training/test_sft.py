"""LoRA SFT on the real tiny policy: masking, truncation, learning, determinism, continuation."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from safetensors.numpy import load_file

from paretohqd.errors import DataError
from paretohqd.stages.kit.policy.loading import load_tokenizer
from paretohqd.stages.kit.training.loop import train_adapter
from paretohqd.stages.kit.training.sft import IGNORE, SftObjective, SFTSettings, encode_rows

ROWS = [
    ("\n\nHuman: What colour is the sky?\n\nAssistant:", " The sky is blue."),
    ("\n\nHuman: What do cats say?\n\nAssistant:", " Cats say meow."),
    ("\n\nHuman: Who is Lily?\n\nAssistant:", " Lily is a little girl."),
    ("\n\nHuman: Where is the ball?\n\nAssistant:", " The ball is in the park."),
]
FAST = SFTSettings(steps=30, batch_size=4, lr=1e-2, warmup_steps=0, max_length=64, seed=3)


def test_encode_masks_prompt_and_truncates_left(tiny_policy: Path) -> None:
    tok = load_tokenizer(str(tiny_policy), padding_side="right")
    [row] = encode_rows(tok, ROWS[:1], max_length=128)
    p = tok(ROWS[0][0], add_special_tokens=False)["input_ids"]
    c = tok(ROWS[0][1], add_special_tokens=False)["input_ids"]
    assert row.ids == [tok.bos_token_id, *p, *c, tok.eos_token_id]
    assert row.labels == [IGNORE] * (1 + len(p)) + [*c, tok.eos_token_id]
    assert not row.truncated

    long_prompt = ROWS[0][0] * 20
    [cut] = encode_rows(tok, [(long_prompt, ROWS[0][1])], max_length=40)
    assert cut.truncated and len(cut.ids) == 40
    assert cut.ids[-len(c) - 1 :] == [*c, tok.eos_token_id]  # the completion survives whole
    full = tok(long_prompt, add_special_tokens=False)["input_ids"]
    assert cut.ids[1 : 40 - len(c) - 1] == full[-(40 - len(c) - 2) :]  # prompt's tail kept

    with pytest.raises(DataError, match="row 0 has an empty completion"):
        encode_rows(tok, [("\n\nHuman: hi\n\nAssistant:", "")], max_length=64)


def test_training_lowers_loss_deterministically(tiny_policy: Path, tmp_path: Path) -> None:
    a = train_adapter(str(tiny_policy), SftObjective(ROWS), FAST, tmp_path / "a")
    assert a["last_loss"] < 0.6 * a["first_loss"]
    assert (tmp_path / "a/adapter_config.json").exists()
    assert pl.read_parquet(tmp_path / "a/training_log.parquet").height == FAST.steps
    assert (tmp_path / "a/loss.png").stat().st_size > 0
    assert "LoRA SFT adapter" in (tmp_path / "a/README.md").read_text()
    train_adapter(str(tiny_policy), SftObjective(ROWS), FAST, tmp_path / "b")
    wa = load_file(str(tmp_path / "a/adapter_model.safetensors"))
    wb = load_file(str(tmp_path / "b/adapter_model.safetensors"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert any(abs(v).sum() > 0 for k, v in wa.items() if "lora_B" in k)  # B starts at zero

    # Round two continues from the adapter: its first loss starts where round one ended.
    cont = train_adapter(
        str(tiny_policy), SftObjective(ROWS), FAST, tmp_path / "c", init_adapter=tmp_path / "a"
    )
    assert cont["first_loss"] < 0.6 * a["first_loss"]


def test_no_rows_is_a_data_error_before_any_model_loads() -> None:
    with pytest.raises(DataError, match="sft: no training rows"):
        SftObjective([])


def test_torch_threads_is_set_for_the_block_and_restored() -> None:
    import torch

    from paretohqd.stages.kit.policy.loading import torch_threads

    before = torch.get_num_threads()
    with torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_target_modules_the_model_lacks_are_one_config_error(
    tiny_policy: Path, tmp_path: Path
) -> None:
    """Names no module of the policy carries fail when the model loads, naming the config key
    and the model's linear layers, instead of peft's traceback; nothing is written."""
    from dataclasses import replace

    from paretohqd.errors import ConfigError

    bad = replace(FAST, target_modules=("q_proj", "qkv_proj", "dense"))
    with pytest.raises(ConfigError) as err:
        train_adapter(str(tiny_policy), SftObjective(ROWS), bad, tmp_path / "a")
    msg = str(err.value)
    assert msg.startswith("sft.target_modules: 'qkv_proj', 'dense' match no module")
    assert "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj" in msg
    assert "\n" not in msg and not (tmp_path / "a").exists()
    # a dotted suffix of a module's name is a target too, as in peft
    ok = replace(FAST, steps=1, target_modules=("self_attn.q_proj",))
    train_adapter(str(tiny_policy), SftObjective(ROWS), ok, tmp_path / "b")
    assert (tmp_path / "b" / "adapter_config.json").exists()
