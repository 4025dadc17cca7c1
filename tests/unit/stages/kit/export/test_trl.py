"""TRL exports: the SFT rows carry exactly the project's tokens, TRL's own preparation keeps them,
one real SFTTrainer step runs on them, and pairs are oriented by the weighted margin."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from testpaths import DATA

from paretohqd.stages.kit.export.trl import (
    SftRow,
    dpo_table,
    leading_space,
    orient_pairs,
    pair_prompts,
    prompt_tail,
    sft_rows,
    sft_table,
    trl_text_ids,
)
from paretohqd.stages.kit.policy.loading import load_tokenizer
from paretohqd.stages.kit.training.sft import IGNORE, encode_rows

#: Small enough that most rows are cut, as in the demo (128 tokens for a 512-piece vocabulary).
MAX_LENGTH = 64

#: Rows the bundled data does not show on its own: a completion longer than the budget, one
#: starting with punctuation, a prompt ending inside the budget.
EDGE_ROWS = [
    ("\n\nHuman: Hi\n\nAssistant:", "It is nice to meet you."),
    ("\n\nHuman: Table?\n\nAssistant:", "| a | b |\n| 1 | 2 |"),
    ("\n\nHuman: Tell me a story.\n\nAssistant:", "Once upon a time " * 20),
    ("\n\nHuman: " + "Why is the sky blue and the grass green? " * 6 + "\n\nAssistant:", "Light."),
]


def labels(row: SftRow) -> list[int]:
    """The row's ids with the prompt masked, as both trainers label them."""
    return [t if m else IGNORE for t, m in zip(row.input_ids, row.completion_mask, strict=True)]


def hh_rows(data: Path, n: int = 40) -> list[tuple[str, str]]:
    """The first ``n`` HH transcripts split as ingest splits them: the prompt up to the last
    ``Assistant:``, the response without its leading space."""
    rows = []
    with gzip.open(data / "hh-rlhf/harmless-base/test.jsonl.gz", "rt") as f:
        for line in f:
            chosen = json.loads(line)["chosen"]
            cut = chosen.rindex("\n\nAssistant:") + len("\n\nAssistant:")
            if chosen[cut:].strip():
                rows.append((chosen[:cut], chosen[cut:].strip()))
            if len(rows) == n:
                break
    return rows


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, str]]:
    return hh_rows(DATA) + EDGE_ROWS


@pytest.fixture(scope="module")
def tok(tiny_policy: Path) -> Any:
    return load_tokenizer(str(tiny_policy), padding_side="right")


@pytest.fixture(scope="module")
def text_tok(tiny_policy: Path) -> Any:
    """The same vocabulary reading ``</s>`` in text as EOS, as Llama 2's own tokenizer does
    (the llama2.c conversion splits it so that data cannot inject special tokens)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_policy), split_special_tokens=False)
    tok.model_max_length = 1 << 30
    return tok


def test_export_carries_exactly_the_project_tokens_for_every_row(
    tok: Any, rows: list[tuple[str, str]]
) -> None:
    exported = sft_rows(tok, rows, max_length=MAX_LENGTH, template="plain")
    project = encode_rows(tok, rows, MAX_LENGTH)
    assert sum(r.truncated for r in exported) >= len(rows) // 2  # the cut paths are exercised
    for row, enc in zip(exported, project, strict=True):
        assert row.input_ids == enc.ids
        assert labels(row) == enc.labels
        assert row.truncated == enc.truncated


def test_the_completion_text_gets_the_leading_space_the_project_trains(
    tok: Any, text_tok: Any
) -> None:
    # The example: "Assistant:" + "It" would train ':' 'I' 't'; the project trains '▁It'.
    assert leading_space(tok) == " "
    prompt, completion = "\n\nHuman: Hi\n\nAssistant:", "It is."
    project = encode_rows(tok, [(prompt, completion)], MAX_LENGTH)[0].ids
    assert trl_text_ids(text_tok, prompt, completion, MAX_LENGTH)[0] != project
    (row,) = sft_rows(text_tok, [(prompt, completion)], max_length=MAX_LENGTH, template="plain")
    assert row.completion == " It is." and row.text_exact
    assert trl_text_ids(text_tok, row.prompt, row.completion, MAX_LENGTH)[0] == project


def test_text_alone_reproduces_the_ids_of_every_uncut_row(
    text_tok: Any, rows: list[tuple[str, str]]
) -> None:
    exported = sft_rows(text_tok, rows, max_length=MAX_LENGTH, template="plain")
    for row in exported:
        ids, mask = trl_text_ids(text_tok, row.prompt, row.completion, MAX_LENGTH)
        assert row.text_exact == ((ids, mask) == (row.input_ids, row.completion_mask))
        if not row.truncated:
            assert row.text_exact
    # A prompt cut at a word boundary is exact as text too; one cut inside a word cannot be.
    assert any(r.text_exact and r.truncated for r in exported)


def test_prompt_tail_is_the_text_of_the_last_tokens(text_tok: Any) -> None:
    prompt = "\n\nHuman: Why is the sky blue?\n\nAssistant:"
    ids = text_tok(prompt, add_special_tokens=False)["input_ids"]
    assert prompt_tail(text_tok, prompt, len(ids)) == prompt
    assert prompt_tail(text_tok, prompt, 0) == ""
    for keep in range(1, len(ids)):
        tail = prompt_tail(text_tok, prompt, keep)
        assert prompt.endswith(tail)
        if text_tok.convert_ids_to_tokens(ids[len(ids) - keep]).startswith("▁"):
            assert text_tok(tail, add_special_tokens=False)["input_ids"] == ids[len(ids) - keep :]


def test_a_byte_level_tokenizer_gets_no_leading_space() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        ["Hello there, a Hello and Hello again"] * 5,
        trainers.BpeTrainer(initial_alphabet=pre_tokenizers.ByteLevel.alphabet()),
    )
    assert leading_space(PreTrainedTokenizerFast(tokenizer_object=raw)) == ""


def _trainer(tiny_policy: Path, tok: Any, dataset: Any, out: Path, steps: int) -> Any:
    trl = pytest.importorskip("trl")
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_policy))
    args = trl.SFTConfig(
        output_dir=str(out),
        max_length=MAX_LENGTH,
        max_steps=steps,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        dataset_num_proc=None,
        gradient_checkpointing=False,
    )
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return trl.SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tok, peft_config=lora
    )


def test_trl_prepares_the_export_into_the_project_rows_and_trains_a_step(
    tiny_policy: Path, tok: Any, rows: list[tuple[str, str]], tmp_path: Path
) -> None:
    pytest.importorskip("trl")
    import datasets
    import torch

    table = sft_table(sft_rows(tok, rows, max_length=MAX_LENGTH, template="plain"), {})
    trainer = _trainer(tiny_policy, tok, datasets.Dataset(table), tmp_path, steps=1)
    project = encode_rows(tok, rows, MAX_LENGTH)
    prepared = trainer.train_dataset
    assert len(prepared) == len(rows)  # TRL dropped no row
    assert prepared["input_ids"] == [e.ids for e in project]
    assert prepared["labels"] == [e.labels for e in project]

    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora" not in n}
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(after[n], v) for n, v in lora.items())
    assert all(torch.equal(after[n], v) for n, v in base.items())


def test_trl_text_path_agrees_on_the_rows_marked_exact(
    tiny_policy: Path, text_tok: Any, rows: list[tuple[str, str]], tmp_path: Path
) -> None:
    pytest.importorskip("trl")
    import datasets

    exported = sft_rows(text_tok, rows, max_length=MAX_LENGTH, template="plain")
    exact = [r for r in exported if r.text_exact]
    assert exact
    text_only = datasets.Dataset.from_dict(
        {"prompt": [r.prompt for r in exact], "completion": [r.completion for r in exact]}
    )
    prepared = _trainer(tiny_policy, text_tok, text_only, tmp_path, steps=1).train_dataset
    assert prepared["input_ids"] == [r.input_ids for r in exact]
    assert prepared["labels"] == [labels(r) for r in exact]


def test_pairs_are_oriented_by_the_weighted_margin() -> None:
    # a − b margins per objective (harmless, helpful)
    margins = np.array([[0.2, -0.1], [-0.3, 0.1], [0.1, -0.1], [0.0, 0.4]])
    even = orient_pairs(margins, [0.5, 0.5])
    assert even.keep.tolist() == [0, 1, 3] and even.dropped == 1
    assert even.a_chosen.tolist() == [True, False, True]
    assert np.allclose(even.margin, [0.05, 0.1, 0.2])
    helpful = orient_pairs(margins, [0.0, 1.0])
    assert helpful.keep.tolist() == [0, 1, 2, 3]
    assert helpful.a_chosen.tolist() == [False, True, False, True]

    table = dpo_table(
        ["P0", "P1", "P2", "P3"],
        ["a0", "a1", "a2", "a3"],
        ["b0", "b1", "b2", "b3"],
        even,
        lead=" ",
        extra={"a_id": ["x0", "x1", "x2", "x3"]},
    ).to_pydict()
    assert table["prompt"] == ["P0", "P1", "P3"]
    assert table["chosen"] == [" a0", " b1", " a3"]
    assert table["rejected"] == [" b0", " a1", " b3"]
    assert table["a_id"] == ["x0", "x1", "x3"]


def test_pair_prompts_are_cut_so_both_responses_fit(
    text_tok: Any, rows: list[tuple[str, str]]
) -> None:
    prompts = [p for p, _ in rows]
    a = [c for _, c in rows]
    b = [c[: len(c) // 3] or c for _, c in rows]
    cut_prompts, cut = pair_prompts(text_tok, prompts, a, b, max_length=MAX_LENGTH)
    assert any(cut) and not all(cut)
    for prompt, short, was_cut, response in zip(prompts, cut_prompts, cut, a, strict=True):
        assert prompt.endswith(short) and was_cut == (short != prompt)
        # a is the longer response: the project keeps this many of its tokens ...
        (enc,) = encode_rows(text_tok, [(prompt, response)], MAX_LENGTH)
        kept = len(enc.ids) - enc.labels.count(IGNORE)
        # ... and after the cut prompt (BOS included) they still fit TRL's window.
        assert len(text_tok(short)["input_ids"]) + kept <= MAX_LENGTH
