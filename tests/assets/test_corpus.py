"""The packaged corpus is the generator's exact output and has the variety the tokenizer needs."""

from __future__ import annotations

import re
import unicodedata

from alignlab.assets._make_corpus import make_corpus
from alignlab.assets.tokenizer import corpus_bytes


def test_corpus_is_generator_output() -> None:
    assert make_corpus().encode("utf-8") == corpus_bytes()


def test_corpus_size_and_variety() -> None:
    data = corpus_bytes()
    assert 150_000 <= len(data) <= 400_000
    text = data.decode("utf-8")
    words = set(re.findall(r"[^\W\d_]+", text))
    assert len(words) >= 3000
    assert text.count("Human: ") >= 100 and text.count("Assistant: ") >= 100
    assert "\n\nAssistant: " in text
    scripts = {unicodedata.name(ch).split()[0] for ch in text if ord(ch) > 127}
    assert {"LATIN", "CJK", "HIRAGANA", "HANGUL", "GREEK", "CYRILLIC"} <= scripts
    assert any(ord(ch) > 0xFFFF for ch in text)  # emoji: 4-byte UTF-8
    assert "out of 5 stars" in text
