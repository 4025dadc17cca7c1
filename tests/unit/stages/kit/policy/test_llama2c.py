"""llama2.c -> HF Llama conversion of the real stories260K model.

The model must decode exactly as llama2.c's ``run.c`` (the bundled greedy reference), its fast
tokenizer must encode exactly as llama2.c's ``encode`` (re-implemented here in pure Python from
the raw ``tok512.bin``, independently of the converter's reader) and round-trip text, bad files
must fail with errors that name them, and left-padded batches must not change greedy tokens.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from testpaths import DATA, FIXTURES

from paretohqd.errors import ModelError
from paretohqd.stages.kit.policy.llama2c import convert_llama2c, read_llama2c_header

SRC = DATA / "stories260K"
CHECKPOINT = SRC / "stories260K.bin"
TOKENIZER = SRC / "tok512.bin"
REFERENCE = FIXTURES / "stories260K" / "verify_greedy_200.txt"

TEXTS = [
    "Once upon a time, there was a little girl named Lily.",
    "Hello\nworld!\n\nA new paragraph.\n",
    "Punctuation: ;:'\"?!()[]{}<>-_=+*&^%$#@~`|\\/ ... end.",
    "Caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001f600 \u2122 \u00bd",
    "  two leading and two trailing spaces  ",
    "tabs\tand\r\nCRLF and <s> literal",
    "a",
    "",
]


# --- llama2.c's tokenizer, as run.c implements it ------------------------------------------


def _read_raw_vocab(path: Path) -> tuple[list[bytes], list[float]]:
    data = path.read_bytes()
    off, pieces, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off : off + n])
        scores.append(score)
        off += n
    return pieces, scores


def llama2c_encode(text: str, pieces: list[bytes], scores: list[float]) -> list[int]:
    """run.c's ``encode(t, text, bos=1, eos=0)``: a port, kept as literal as possible."""
    lookup = {p: i for i, p in enumerate(pieces)}
    tokens = [1]
    if text:
        tokens.append(lookup[b" "])  # the dummy prefix
    for ch in text:  # one UTF-8 codepoint at a time, raw bytes when not in the vocab
        raw = ch.encode("utf-8")
        if raw in lookup:
            tokens.append(lookup[raw])
        else:
            tokens.extend(b + 3 for b in raw)
    while True:  # merge the adjacent pair whose merged piece scores highest (leftmost on ties)
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if merged != -1 and scores[merged] > best_score:
                best_score, best_id, best_idx = scores[merged], merged, i
        if best_idx == -1:
            return tokens
        tokens[best_idx : best_idx + 2] = [best_id]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Decode on one thread: this tiny model gets slower (10x on a busy 2-core box) with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_llama2c(CHECKPOINT, TOKENIZER, tmp_path_factory.mktemp("l2c") / "base")


@pytest.fixture(scope="session")
def model(converted: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(converted).eval()


@pytest.fixture(scope="session")
def tokenizer(converted: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(converted)


# --- the model ------------------------------------------------------------------------------


def test_greedy_200_steps_from_bos_reproduce_llama2c(model: Any, tokenizer: Any) -> None:
    # run.c: BOS at position 0, 200 forward passes, each prints its argmax (stopping on BOS);
    # the first piece's leading space is dropped, which the tokenizer's decoder also does.
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([[1]]), max_new_tokens=200, do_sample=False, eos_token_id=1
        )
    new = out[0, 1:].tolist()
    assert len(new) == 200 and 1 not in new
    text = tokenizer.decode(new)
    reference = REFERENCE.read_text(encoding="utf-8")
    assert reference.endswith("\n")  # run.c prints a final newline after the last piece
    assert text == reference[:-1]


def test_config_matches_header(converted: Path, model: Any) -> None:
    cfg = json.loads((converted / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]) == (64, 172, 5)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]) == (
        8,
        4,
        512,
    )
    assert cfg["max_position_embeddings"] == 512 and cfg["rms_norm_eps"] == 1e-5
    assert cfg["tie_word_embeddings"] is True
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    gen = json.loads((converted / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, 2, 0)
    tok_cfg = json.loads((converted / "tokenizer_config.json").read_text())
    assert "chat_template" not in tok_cfg
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == read_llama2c_header(CHECKPOINT).n_floats() - 512 * 8  # minus rope tables


def test_conversion_is_deterministic_and_idempotent(converted: Path, tmp_path: Path) -> None:
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in converted.iterdir()}
    # same sources, no overwrite: returned untouched
    assert convert_llama2c(CHECKPOINT, TOKENIZER, converted) == converted
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in converted.iterdir()} == before
    # a fresh conversion elsewhere, and an overwrite, are byte-identical
    again = convert_llama2c(CHECKPOINT, TOKENIZER, tmp_path / "again")
    assert {p.name: p.read_bytes() for p in again.iterdir()} == {k: v[0] for k, v in before.items()}
    convert_llama2c(CHECKPOINT, TOKENIZER, again, overwrite=True)
    assert {p.name: p.read_bytes() for p in again.iterdir()} == {k: v[0] for k, v in before.items()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left
    # a different conversion (dtype) or a foreign directory is replaced only when asked
    with pytest.raises(ModelError, match="overwrite=True"):
        convert_llama2c(CHECKPOINT, TOKENIZER, again, dtype="bfloat16")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    with pytest.raises(ModelError, match="overwrite=True"):
        convert_llama2c(CHECKPOINT, TOKENIZER, foreign)
    assert (foreign / "keep.txt").exists()
    convert_llama2c(CHECKPOINT, TOKENIZER, foreign, dtype="bfloat16", overwrite=True)
    assert not (foreign / "keep.txt").exists()
    assert json.loads((foreign / "config.json").read_text())["dtype"] == "bfloat16"
    with pytest.raises(ModelError, match="float16"):
        convert_llama2c(CHECKPOINT, TOKENIZER, tmp_path / "x", dtype="int8")  # type: ignore[arg-type]


# --- the tokenizer --------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_matches_llama2c_encode_and_round_trips(tokenizer: Any, text: str) -> None:
    pieces, scores = _read_raw_vocab(TOKENIZER)
    ids = tokenizer(text).input_ids
    assert ids == llama2c_encode(text, pieces, scores)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_byte_fallback_and_specials(tokenizer: Any) -> None:
    ids = tokenizer("\u65e5\n", add_special_tokens=False).input_ids
    pieces = tokenizer.convert_ids_to_tokens(ids)
    # dummy-prefix space, then the 3 UTF-8 bytes of the CJK character and the newline's byte
    assert pieces == ["\u2581", "<0xE6>", "<0x97>", "<0xA5>", "<0x0A>"]
    assert tokenizer.decode(ids) == "\u65e5\n"
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (1, 2, 0)
    assert tokenizer.pad_token_id == 0
    assert tokenizer.decode([1, 2]) == "<s></s>"


def test_tokenizer_encode_on_a_long_story(tokenizer: Any) -> None:
    pieces, scores = _read_raw_vocab(TOKENIZER)
    text = REFERENCE.read_text(encoding="utf-8")
    ids = tokenizer(text).input_ids
    assert ids == llama2c_encode(text, pieces, scores)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


# --- bad input ------------------------------------------------------------------------------


def _convert(ckpt: Path, tok: Path, out: Path) -> None:
    convert_llama2c(ckpt, tok, out)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[: len(b) // 2], "truncated llama2.c checkpoint"),
        (lambda b: b[:20], "shorter than the 28-byte header"),
        (lambda b: b + b"\0" * 8, "oversized llama2.c checkpoint"),
        (lambda b: struct.pack("<7i", 64, 172, 5, 7, 4, 512, 512) + b[28:], "inconsistent"),
        (lambda b: struct.pack("<7i", 64, 172, 5, 8, 4, 512, -1) + b[28:], "seq_len=-1"),
        (lambda b: struct.pack("<2i", 0x616B3432, 1) + b[8:], "magic 'ak42'"),
        (lambda b: b"garbage!" * 100, "llama2.c"),
        (lambda b: b[:28] + b"\xff" * 4 + b[32:], "non-finite weight at float index 0"),
    ],
)
def test_bad_checkpoint_raises_naming_the_file(tmp_path: Path, mangle: Any, message: str) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(mangle(CHECKPOINT.read_bytes()))
    with pytest.raises(ModelError, match=message) as err:
        _convert(bad, TOKENIZER, tmp_path / "out")
    assert str(bad) in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-100], "truncated llama2.c tokenizer"),
        (lambda b: b + b"\0" * 9, "bytes left after 512 pieces"),
        (lambda b: b[:4] + struct.pack("<fi", 0.0, 99999) + b[12:], "piece 0: bad length"),
        (lambda b: b"", "truncated"),
    ],
)
def test_bad_tokenizer_raises_naming_the_file(tmp_path: Path, mangle: Any, message: str) -> None:
    bad = tmp_path / "bad_tok.bin"
    bad.write_bytes(mangle(TOKENIZER.read_bytes()))
    with pytest.raises(ModelError, match=message) as err:
        _convert(CHECKPOINT, bad, tmp_path / "out")
    assert str(bad) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_files_raise(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="checkpoint not found"):
        _convert(tmp_path / "nope.bin", TOKENIZER, tmp_path / "out")
    shutil.copy(CHECKPOINT, tmp_path / "m.bin")
    with pytest.raises(ModelError, match="tokenizer not found"):
        _convert(tmp_path / "m.bin", tmp_path / "nope.bin", tmp_path / "out")


# --- batched generation ---------------------------------------------------------------------


def test_left_padded_batch_gives_the_same_greedy_tokens(model: Any, tokenizer: Any) -> None:
    prompts = ["Once upon a time, there was a dog", "Tom saw a big red ball. He"]
    kwargs: dict[str, Any] = {"max_new_tokens": 24, "do_sample": False, "eos_token_id": 1}
    with torch.inference_mode():
        alone = [
            model.generate(**tokenizer(p, return_tensors="pt"), **kwargs)[0].tolist()
            for p in prompts
        ]
        tokenizer.padding_side = "left"
        try:
            batch = tokenizer(prompts, return_tensors="pt", padding=True)
        finally:
            tokenizer.padding_side = "right"
        assert batch.attention_mask[:, 0].tolist().count(0) == 1  # lengths differ: one padded
        out = model.generate(**batch, **kwargs)
    width = batch.input_ids.shape[1]
    for row, single in zip(out.tolist(), alone, strict=True):
        n_prompt = len(single) - 24
        assert row[width:] == single[n_prompt:]
        assert [t for t in row[:width] if t != tokenizer.pad_token_id] == single[:n_prompt]


def test_tokenizer_matches_llama2c_encode_on_random_text(tokenizer: Any) -> None:
    # seeded fuzz: random characters (incl. byte-fallback ones) and random story slices
    import random

    rng = random.Random(1234)
    pieces, scores = _read_raw_vocab(TOKENIZER)
    story = REFERENCE.read_text(encoding="utf-8")
    alphabet = (
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ,.!?'\"\n\t \u00e9\u00fc\u65e5\U0001f600<>s/0129"
    )
    for i in range(300):
        if i % 2:
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        else:
            start = rng.randint(0, len(story))
            text = story[start : start + rng.randint(0, 80)]
        ids = tokenizer(text).input_ids
        assert ids == llama2c_encode(text, pieces, scores), text
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
