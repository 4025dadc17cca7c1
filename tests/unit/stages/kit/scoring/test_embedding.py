"""Encoder parity with sentence-transformers, the shared embedding cache, BT head training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from paretohqd.stages.kit.scoring.embedding import (
    FEATURES,
    SentenceEncoder,
    load_encoder,
    load_head,
    save_head,
    train_bt_head,
)
from paretohqd.stages.kit.scoring.scorers import ScorerError, build_scorer

TOPICS = [
    "fixing a flat bicycle tyre", "writing a cover letter", "learning to swim",
    "planting tomatoes", "baking sourdough bread", "choosing a laptop", "saving for retirement",
    "training a puppy", "studying for a maths exam", "painting a bedroom", "making pasta sauce",
    "starting a vegetable garden", "improving my sleep", "running a first marathon",
    "learning the guitar", "cleaning a cast iron pan", "writing a wedding speech",
    "repairing a leaking tap", "organising a small office", "reading more books",
    "preparing for a job interview", "changing a car tyre", "brewing better coffee",
    "starting to meditate", "knitting a scarf", "setting up a home network",
    "learning Spanish", "decorating a cake", "keeping houseplants alive", "packing for a trip",
    "negotiating a salary", "writing a short story", "getting rid of ants",
    "building a bookshelf", "teaching a child to ride a bike", "lowering my electricity bill",
    "making friends in a new city", "cooking rice properly", "taking better photos",
    "planning a birthday party", "staying focused while studying", "stretching after running",
    "choosing running shoes", "writing a thank-you note", "cleaning windows without streaks",
    "making a budget spreadsheet", "caring for a sourdough starter", "learning to juggle",
    "removing a wine stain", "choosing a first telescope",
]  # fmt: skip
ASKS = ["Can you help me with {t}?", "Any tips on {t}?", "I need advice about {t}.",
        "How should I go about {t}?"]  # fmt: skip
POLITE = [
    "Of course, I'd be glad to help with {t}! Here are a few friendly suggestions to start.",
    "Great question, thank you for asking. For {t}, I'd kindly suggest going step by step.",
    "Happy to help! {t} can feel tricky at first, so please be patient with yourself.",
    "Thanks for reaching out. Here is some gentle, practical advice on {t}, I hope it helps.",
]
RUDE = [
    "Ugh, {t}? That's a stupid thing to ask. Figure it out yourself.",
    "No. I'm not wasting my time on {t}, idiot. Stop bothering me.",
    "Seriously? Anyone can manage {t}. Go away and don't ask me dumb questions.",
    "Whatever. {t} is your problem, not mine. Shut up and google it.",
]


def politeness_pairs(seed: int = 0) -> list[tuple[str, str, str]]:
    """~100 (prompt, polite, rude) pairs over 50 topics: the preference is learnable."""
    rng = np.random.default_rng(seed)
    pairs = []
    for topic in TOPICS:
        for _ in range(2):
            ask, pol, rud = (rng.integers(len(x)) for x in (ASKS, POLITE, RUDE))
            pairs.append(
                (ASKS[ask].format(t=topic), POLITE[pol].format(t=topic), RUDE[rud].format(t=topic))
            )
    return pairs


def test_embeddings_equal_sentence_transformers(encoder: SentenceEncoder, minilm_dir) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [
        "A man is eating food.",
        "",
        "Ein Mann isst.",
        "word " * 400,  # longer than max_seq_length (256): truncated on the right
        "The quick brown fox jumps over the lazy dog. " * 5,
    ]
    st = SentenceTransformer(str(minilm_dir), device="cpu")
    ref = st.encode(texts, batch_size=2, convert_to_numpy=True)
    got, truncated = encoder.forward(texts, batch_size=2)
    assert encoder.pooling == "mean_tokens" and encoder.normalize and encoder.max_length == 256
    np.testing.assert_allclose(got, ref, atol=2e-6, rtol=1e-5)
    assert truncated.tolist() == [False, False, False, True, False]


def test_load_encoder_is_shared(encoder: SentenceEncoder, minilm_dir) -> None:
    assert load_encoder(minilm_dir, device="cpu") is encoder
    assert load_encoder(None, device="cpu") is encoder
    assert load_encoder(minilm_dir, device="cpu", max_length=256) is encoder
    assert load_encoder(minilm_dir, device="cpu", max_length=128) is not encoder
    ident = encoder.identity()
    assert ident["path"] == str(Path(minilm_dir).resolve()) and len(ident["sha256"]) == 64


def test_encode_cache_one_pass_per_unique_text(encoder: SentenceEncoder) -> None:
    encoder.cache.clear()
    texts = ["alpha unique text", "beta unique text", "alpha unique text", "gamma unique text"]
    before = encoder.forward_texts
    first, _ = encoder.encode(texts)
    assert encoder.forward_texts - before == 3
    again, _ = encoder.encode(texts[::-1])
    assert encoder.forward_texts - before == 3
    np.testing.assert_array_equal(again, first[::-1])
    ref, _ = encoder.forward(texts)
    np.testing.assert_allclose(first, ref, atol=1e-6)


@pytest.fixture(scope="module")
def trained(encoder: SentenceEncoder):
    return train_bt_head(politeness_pairs(), encoder=encoder, val_fraction=0.3, seed=1)


def test_bt_head_learns_held_out_prompts(trained) -> None:
    head, metrics = trained
    assert metrics["val_accuracy"] >= 0.9, metrics
    assert metrics["train_accuracy"] >= 0.95, metrics
    n_prompts = len({p for p, _, _ in politeness_pairs()})
    assert metrics["val_prompts"] == math.ceil(0.3 * n_prompts)
    assert metrics["train_prompts"] + metrics["val_prompts"] == n_prompts
    assert metrics["train_pairs"] + metrics["val_pairs"] == 100
    assert head.weight.shape == (768,) and head.weight.dtype == np.float32
    assert head.features == FEATURES


def test_split_is_by_prompt_and_seeded(encoder: SentenceEncoder) -> None:
    from paretohqd.stages.kit.scoring.embedding import _split_by_prompt

    prompts = [p for p, _, _ in politeness_pairs()]
    train, val = _split_by_prompt(prompts, 0.3, seed=1)
    assert not {p for p, v in zip(prompts, val, strict=True) if v} & {
        p for p, t in zip(prompts, train, strict=True) if t
    }
    again, _ = _split_by_prompt(prompts, 0.3, seed=1)
    other, _ = _split_by_prompt(prompts, 0.3, seed=2)
    assert (again == train).all() and (other != train).any()


def test_save_load_round_trip_and_scorer(trained, encoder, tmp_path: Path) -> None:
    head, metrics = trained
    out = save_head(
        tmp_path / "polite",
        head,
        encoder_identity=encoder.identity(),
        metrics=metrics,
        training_data_description="100 synthetic polite-vs-rude pairs built in a test",
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "head.safetensors"]
    loaded = load_head(out)
    assert loaded.weight.dtype == head.weight.dtype
    assert loaded.weight.tobytes() == head.weight.tobytes()
    card = (out / "README.md").read_text()
    assert "synthetic polite-vs-rude" in card and f"{metrics['val_accuracy']:.3f}" in card
    assert (
        json.loads((out / "config.json").read_text())["encoder"]["sha256"]
        == (encoder.identity()["sha256"])
    )

    prompts = ["Could you help me with tying a tie?"] * 2 + ["Any tips on making soup?"] * 2
    responses = [
        "Certainly, I'd be delighted to help you tie it, thank you for asking!",
        "No, do it yourself, idiot.",
        "Shut up, nobody cares about your soup.",
        "Happy to help! Please start with a good stock, and be patient.",
    ]
    scorer = build_scorer("embedding-head", name="polite", model="polite", base_dir=tmp_path)
    twin = build_scorer("embedding-head", name="polite2", model=str(out))
    assert scorer.inner.encoder is twin.inner.encoder is encoder  # one encoder, one cache
    got = scorer.score(prompts, responses)
    assert got[0] > got[1] and got[3] > got[2]
    emb, _ = encoder.encode(prompts + responses)
    np.testing.assert_array_equal(got, head.score_embeddings(emb[:4], emb[4:]))
    before = encoder.forward_texts
    np.testing.assert_array_equal(twin.score(prompts, responses), got)
    assert encoder.forward_texts == before  # the second head re-encodes nothing
    assert scorer.identity()["encoder"]["sha256"] == encoder.identity()["sha256"]


def test_head_errors(trained, encoder, tmp_path: Path) -> None:
    head, metrics = trained
    with pytest.raises(ScorerError, match="is not a reward head"):
        build_scorer("embedding-head", name="h", model=str(tmp_path))
    wrong = dict(encoder.identity(), sha256="0" * 64)
    save_head(tmp_path / "h", head, encoder_identity=wrong, metrics=metrics,
              training_data_description="x")  # fmt: skip
    with pytest.raises(ScorerError, match="was trained on encoder sha256 000000000000"):
        build_scorer("embedding-head", name="h", model=str(tmp_path / "h"))
    with pytest.raises(ScorerError, match="unknown option 'batchsize'"):
        build_scorer("embedding-head", name="h", model="x", options={"batchsize": 2})


STORY = (
    "the cat sat on a mat while it rained and we read old books by the fire until our tea "
    "went cold so she made more of it for all of us and then we walked down to the sea"
)


def texts_of_many_lengths() -> list[str]:
    """The empty text, one-word texts (3 tokens with [CLS] and [SEP]) and texts up to ~40
    tokens, three of most lengths, and one past max_length: the short ones are where a BLAS's
    small-matrix path would change a row's bits."""
    words = STORY.split()
    out = [""]
    for n in range(1, 38):
        out += [" ".join(words[k : k + n]) for k in range(3 if n < 12 or n % 5 == 0 else 1)]
    return [*dict.fromkeys(out), "word " * 400]


def test_cpu_embeddings_depend_on_the_text_alone(minilm_dir: Path) -> None:
    """On a CPU an embedding is the same bits whatever texts share its batch, whatever the
    batch size, on one torch thread or two, one batch at a time or two side by side: texts are
    batched by exact token length and every pass multiplies at least MIN_ROWS token rows (MKL
    computes rows alike from 12 rows on, not below), so a cache shared across units of work
    and stages changes no number."""
    import torch

    from paretohqd.stages.kit.scoring.batching import tokenize_counting
    from paretohqd.stages.kit.scoring.embedding import encode_threads

    encoder = load_encoder(minilm_dir, device="cpu")
    assert encoder.batch_invariant and encoder.equal_length_batches
    texts = texts_of_many_lengths()
    enc, _ = tokenize_counting(encoder.tokenizer, texts, max_length=256, truncation_side="right")
    lengths = [len(ids) for ids in enc["input_ids"]]
    assert min(lengths) == 2 and 3 in lengths and max(lengths) == 256  # the short paths
    rng = np.random.default_rng(0)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        alone = np.concatenate([encoder.forward([t])[0] for t in texts])
        for threads, side_by_side, batch_size in [
            (1, None, 64), (1, None, 2), (2, None, 3), (2, 2, 4), (1, 3, 64),
        ]:  # fmt: skip
            torch.set_num_threads(threads)
            # Two OpenMP threads crawl while anything else holds a core (see encode_threads):
            # there only the texts up to 12 tokens, where two threads' other paths would show.
            rows = np.arange(len(texts))
            if threads > 1 and side_by_side is None:
                rows = np.flatnonzero(np.array(lengths) <= 12)
            got = np.empty_like(alone)
            with encode_threads(side_by_side):
                for part in np.array_split(rng.permutation(rows), 3):
                    got[part] = encoder.forward([texts[i] for i in part], batch_size=batch_size)[0]
            assert torch.get_num_threads() == threads
            same = (got[rows].view(np.uint32) == alone[rows].view(np.uint32)).all(axis=1)
            assert same.all(), (
                threads,
                side_by_side,
                batch_size,
                sorted({lengths[i] for i in rows[~same]}),
            )
    finally:
        torch.set_num_threads(before)


def test_rows_check_fails_on_row_count_dependence_and_texts_go_alone(
    minilm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A linear layer whose rows depend on the row count fails the check; an encoder whose
    layers fail it encodes one text a pass, into a cache of its own."""
    import torch

    from paretohqd.stages.kit.scoring import embedding

    class RowCountLinear(torch.nn.Linear):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) * (1 + 1e-3 * (x.shape[0] < 40))

    assert embedding.linear_rows_independent(torch.nn.Sequential(torch.nn.Linear(384, 384)))
    assert not embedding.linear_rows_independent(torch.nn.Sequential(RowCountLinear(8, 4)))

    shared = load_encoder(minilm_dir, device="cpu")
    monkeypatch.setattr(embedding, "linear_rows_independent", lambda model: False)
    alone = SentenceEncoder(minilm_dir, device="cpu")
    assert alone.batch_invariant and not alone.equal_length_batches
    assert alone.cache is not shared.cache
    passes: list[int] = []
    forward_batch = alone.forward_batch
    monkeypatch.setattr(alone, "forward_batch", lambda b: passes.append(1) or forward_batch(b))
    texts = ["a cat sat", "on a mat", "a cat sat on a mat", ""]
    got, _ = alone.forward(texts)
    assert len(passes) == len(texts)
    np.testing.assert_allclose(got, shared.forward(texts)[0], atol=1e-6)


def test_batched_embeddings_are_cached_within_one_unit_of_work_only(minilm_dir: Path) -> None:
    """A batched (GPU) encoder's embeddings depend on their batch: its cache is cleared before
    every part and item, so a part run alone on a Ray worker gives the same numbers."""
    from paretohqd.executor import run_unit

    encoder = load_encoder(minilm_dir, device="cpu", max_length=64)
    encoder.batch_invariant = False  # as on a GPU
    encoder.cache = type(encoder.cache)()
    try:

        def part(texts: list[str]) -> np.ndarray:
            assert len(encoder.cache) == 0  # nothing left from the previous unit
            return encoder.encode(texts)[0]

        alone = run_unit(part, ["a cat sat", "on the mat"])
        run_unit(part, ["on the mat", "a much longer sentence that pads the batch differently"])
        again = run_unit(part, ["a cat sat", "on the mat"])
        assert np.array_equal(alone, again)
    finally:
        encoder.batch_invariant = True
