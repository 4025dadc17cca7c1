"""hf-classifier on a real (tiny, randomly initialised) BertForSequenceClassification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from paretohqd.stages.kit.scoring.scorers import ScorerError, build_scorer

PROMPTS = [
    "How do I bake bread?",
    "What is the capital of France?",
    "Tell me a joke.",
    "Explain photosynthesis in detail, covering light and dark reactions.",
    "Hi",
    "Why is the sky blue?",
    "Summarise the plot of Hamlet.",
]
RESPONSES = [
    "Mix flour, water, yeast and salt, knead, let it rise, then bake at 220C for 30 minutes.",
    "Paris.",
    "Why did the chicken cross the road? To get to the other side.",
    "Plants capture light with chlorophyll, split water, and fix carbon dioxide into sugars "
    "in the Calvin cycle, which runs on the ATP and NADPH from the light reactions.",
    "Hello! How can I help?",
    "Rayleigh scattering: shorter wavelengths scatter more.",
    "",
]


def _build(model: Path, **options: object):
    return build_scorer(
        "hf-classifier",
        name="tiny",
        model=str(model),
        options={"device": "cpu", "progress": False, **options},
    )


def _logits(model_dir: Path, prompts: list[str], responses: list[str]) -> np.ndarray:
    """Reference: one row at a time, straight through transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    rows = []
    with torch.inference_mode():
        for p, r in zip(prompts, responses, strict=True):
            rows.append(model(**tok([p], [r], return_tensors="pt")).logits[0].numpy())
    return np.array(rows, dtype=np.float64)


def test_sorted_batches_equal_one_by_one(tiny_classifier: Path) -> None:
    ref = _logits(tiny_classifier, PROMPTS, RESPONSES)
    batched = _build(tiny_classifier, batch_size=3).score(PROMPTS, RESPONSES)
    single = _build(tiny_classifier, batch_size=1).score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(batched, ref[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single, ref[:, 0], rtol=1e-5, atol=1e-6)
    assert np.ptp(batched) > 0  # a constant output would hide order mistakes


def test_logit_index_and_response_format(tiny_classifier: Path) -> None:
    ref = _logits(tiny_classifier, PROMPTS, RESPONSES)
    got = _build(tiny_classifier, logit_index=2, batch_size=4).score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(got, ref[:, 2], rtol=1e-5, atol=1e-6)
    resp_only = _build(tiny_classifier, input_format="response").score(PROMPTS, RESPONSES)
    assert not np.allclose(resp_only, ref[:, 0])
    with pytest.raises(ScorerError, match=r"logit_index 3 but .* has 3 output logits"):
        _build(tiny_classifier, logit_index=3)


def test_truncation_is_counted(tiny_classifier: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_classifier))
    lengths = [len(tok(p, r)["input_ids"]) for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    expected = sum(n > 20 for n in lengths)
    assert 0 < expected < len(PROMPTS)
    scorer = _build(tiny_classifier, max_length=20, truncation_side="right")
    scorer.score(PROMPTS, RESPONSES)
    assert scorer.last_stats["truncated"] == expected
    # Truncated rows score like the reference on explicitly truncated input.
    ref = _logits(tiny_classifier, PROMPTS[:1], RESPONSES[:1])
    assert scorer.score(PROMPTS[:1], RESPONSES[:1])[0] != pytest.approx(ref[0, 0])
    ident = scorer.identity()
    assert ident["options"]["max_length"] == 20
    assert ident["options"]["dtype"] == "float32"
    assert len(ident["model"]["sha256"]) == 64


def test_chat_needs_template(tiny_classifier: Path) -> None:
    with pytest.raises(ScorerError, match="has no chat template"):
        _build(tiny_classifier, input_format="chat")


def test_not_a_classifier_is_one_line(plain_encoder_dir: Path) -> None:
    with pytest.raises(ScorerError) as err:
        _build(plain_encoder_dir)
    msg = str(err.value)
    assert str(plain_encoder_dir) in msg
    assert "not a sequence-classification model" in msg
    assert "\n" not in msg


def test_missing_dir_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScorerError, match="does not exist") as err:
        build_scorer("hf-classifier", name="rm", model="./models/rm", base_dir=tmp_path)
    assert str(tmp_path / "models" / "rm") in str(err.value)
    with pytest.raises(ScorerError, match="HF_HUB_OFFLINE is set"):
        build_scorer("hf-classifier", name="rm", model="org/reward-model", base_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScorerError, match="not a model directory"):
        build_scorer("hf-classifier", name="rm", model="empty", base_dir=tmp_path)


def test_text_format_scores_a_trl_reward_model_as_it_was_trained(
    tiny_classifier: Path, tmp_path: Path
) -> None:
    """The README's recipe: train a reward model with TRL's RewardTrainer on plain-text pairs,
    then score with ``input_format = "text"``: the scorer feeds it prompt + response + EOS as
    one string, exactly the input it was trained on."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    tok = AutoTokenizer.from_pretrained(str(tiny_classifier))
    tok.eos_token = tok.sep_token  # TRL ends plain-text pairs with EOS; BERT has none
    model = AutoModelForSequenceClassification.from_pretrained(
        str(tiny_classifier), num_labels=1, ignore_mismatched_sizes=True
    )
    pairs = Dataset.from_dict(
        {"prompt": PROMPTS[:6], "chosen": RESPONSES[:6], "rejected": ["No."] * 6}
    )
    out = tmp_path / "reward-model"
    args = RewardConfig(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=3,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,  # float32, as the scorer loads it on a CPU
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=pairs, processing_class=tok)
    trainer.train()
    trainer.save_model()

    got = _build(out, input_format="text", batch_size=4).score(PROMPTS, RESPONSES)
    trained = trainer.model.eval()
    with torch.inference_mode():
        want = [
            trained(**tok(text=p + r + "[SEP]", return_tensors="pt")).logits[0, 0].item()
            for p, r in zip(PROMPTS, RESPONSES, strict=True)
        ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    pair = _build(out, input_format="pair").score(PROMPTS, RESPONSES)
    assert not np.allclose(pair, want)  # the text pair is another input: the check can fail
