"""The offline byte-level BPE tokenizer: lossless round trip, no implicit special tokens, useful merges."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from alignlab.assets import build_tokenizer, load_tokenizer, tokenizer_path
from alignlab.assets.tokenizer import (
    EOS_TOKEN,
    IM_END_TOKEN,
    IM_START_TOKEN,
    MODEL_MAX_LENGTH,
    PAD_TOKEN,
    SPECIAL_TOKENS,
)

_SPECIAL_TEXT = st.sampled_from(list(SPECIAL_TOKENS))
_TEXT = st.lists(st.one_of(st.text(max_size=40), _SPECIAL_TEXT), max_size=6).map("".join)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_round_trip_any_unicode(tokenizer, text: str) -> None:
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60))
def test_separate_encoding_concatenates_cleanly(tokenizer, prompt: str, response: str) -> None:
    """No BOS/EOS is inserted, so encode(prompt) + encode(response) decodes to prompt + response."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = tokenizer(response)["input_ids"]
    specials = set(tokenizer.all_special_ids)
    # Special ids appear only where the text spells a special token (hypothesis may generate those).
    for text, ids in ((prompt, prompt_ids), (response, response_ids)):
        spelled = sum(text.count(tok) for tok in SPECIAL_TOKENS)
        assert sum(i in specials for i in ids) == spelled
    assert tokenizer.decode(prompt_ids + response_ids) == prompt + response
    assert tokenizer(prompt, add_special_tokens=True)["input_ids"] == prompt_ids
    assert tokenizer.encode(prompt) == prompt_ids


def test_special_tokens(tokenizer) -> None:
    assert len(tokenizer) == 4096
    assert tokenizer.eos_token == tokenizer.bos_token == EOS_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert set(SPECIAL_TOKENS) <= set(tokenizer.all_special_tokens)
    for tok in SPECIAL_TOKENS:
        ids = tokenizer(tok)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(tok)]
    text = f"{IM_START_TOKEN}user\nhi{IM_END_TOKEN}{EOS_TOKEN}"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids(IM_START_TOKEN)
    assert ids[-2:] == [tokenizer.convert_tokens_to_ids(IM_END_TOKEN), tokenizer.eos_token_id]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nhi"
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH
    assert tokenizer.chat_template is None


def test_learned_useful_merges(tokenizer) -> None:
    # Frequent corpus words are single tokens; multi-byte text compresses below one token per UTF-8 byte.
    for word in ["Human", "Assistant", " the", " and", " café"]:
        assert len(tokenizer(word)["input_ids"]) == 1, word
    assert tokenizer("\n\n")["input_ids"] == [tokenizer.convert_tokens_to_ids("ĊĊ")]
    cjk = "今天天气很好"
    assert len(tokenizer(cjk)["input_ids"]) < len(cjk.encode("utf-8")) / 2
    prose = "I think this is a good idea, but you should ask them first because it will not work."
    assert len(tokenizer(prose)["input_ids"]) <= 1.25 * len(prose.split())


def test_offsets_cover_text(tokenizer) -> None:
    text = "Assistant: Hello, Zürich 😀"
    enc = tokenizer(text, return_offsets_mapping=True)
    pieces = "".join(text[a:b] for a, b in enc["offset_mapping"])
    assert pieces == text


def test_saved_directory_reloads_identically(tokenizer) -> None:
    path = tokenizer_path()
    assert (path / "tokenizer.json").is_file()
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert "chat_template" not in config
    reloaded = AutoTokenizer.from_pretrained(path)
    text = "Human: What is 12 × 7?\n\nAssistant: 84. 😀 東京"
    assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.get_vocab() == tokenizer.get_vocab()


def test_training_is_deterministic(tokenizer) -> None:
    fresh = build_tokenizer()
    assert fresh.get_vocab() == tokenizer.get_vocab()
    assert fresh.backend_tokenizer.to_str() == load_tokenizer().backend_tokenizer.to_str()


def test_smaller_vocab_is_honoured() -> None:
    small = build_tokenizer(vocab_size=512)
    assert len(small) == 512
    text = "Human: héllo 世界"
    assert small.decode(small(text)["input_ids"]) == text
