"""Shipped sample data: regeneration is byte-identical, every file validates, multi-byte text is present."""

import json

import pytest

from alignlab.data import SAMPLES_DIR, validate_data
from alignlab.data.samples._make_samples import FILES, make_samples


def test_regeneration_is_identical(tmp_path):
    for path in make_samples(tmp_path):
        assert path.read_bytes() == (SAMPLES_DIR / path.name).read_bytes(), path.name


@pytest.mark.parametrize(
    "name, fmt, task, n",
    [
        ("pairs.jsonl", "standard", "preference", 400),
        ("pairs_conversational.jsonl", "conversational", "preference", 40),
        ("pairs_implicit.jsonl", "implicit", "preference", 40),
        ("pairs_hh.jsonl", "hh", "preference", 40),
        ("ranking.jsonl", "ranking", "preference", 50),
        ("sft.jsonl", "prompt_completion", "sft", 400),
        ("sft_messages.jsonl", "messages", "sft", 40),
    ],
)
def test_samples_validate(name, fmt, task, n):
    result = validate_data(SAMPLES_DIR / name, task=task)
    assert (result.errors, result.warnings, result.format, result.n_records) == ([], [], fmt, n)


def test_samples_have_multibyte_text_and_word_counts():
    assert set(FILES) == {p.name for p in SAMPLES_DIR.glob("*.jsonl")}
    for name in FILES:
        raw = (SAMPLES_DIR / name).read_bytes()
        assert any(b >= 0x80 for b in raw), name
    rows = [
        json.loads(line) for line in (SAMPLES_DIR / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    for r in rows:
        assert 8 <= len(r["chosen"].split()) <= 40 and 8 <= len(r["rejected"].split()) <= 40
    assert len({r["prompt"] for r in rows}) > 100  # template variety
