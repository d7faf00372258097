"""distinct-n, n-gram entropy and mean token entropy: hand-computed values and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alignlab.diagnostics.diversity import (
    distinct_n,
    diversity_metrics,
    mean_token_entropy,
    ngram_counts,
    ngram_entropy,
)
from alignlab.errors import AlignlabError

TEXTS = ["the cat sat", "the cat ran"]


def test_distinct_n_by_hand():
    # unigrams: the cat sat the cat ran -> 4 distinct of 6
    # bigrams: (the cat) x2, (cat sat), (cat ran) -> 3 distinct of 4
    assert distinct_n(TEXTS, 1) == pytest.approx(4 / 6)
    assert distinct_n(TEXTS, 2) == pytest.approx(3 / 4)
    assert distinct_n(TEXTS, 3) == 1.0
    assert distinct_n(TEXTS, 4) == 0.0  # no 4-gram in the set
    assert distinct_n(["a b", "c d"], 2) == 1.0  # n-grams never cross two items
    assert sum(ngram_counts(["a b", "c d"], 2).values()) == 2
    assert distinct_n([[1, 2, 1, 2], [1, 2]], 2) == pytest.approx(2 / 4)  # token ids: (1,2) x3, (2,1)
    assert distinct_n(["a  b\tc\n", "a b c"], 1) == pytest.approx(3 / 6)  # any run of whitespace splits


def test_ngram_entropy_by_hand():
    # unigram counts the:2 cat:2 sat:1 ran:1 of 6
    expected = -(2 * (2 / 6) * math.log(2 / 6) + 2 * (1 / 6) * math.log(1 / 6))
    assert ngram_entropy(TEXTS, 1) == pytest.approx(expected)
    # bigrams (the cat):2, (cat sat):1, (cat ran):1 of 4
    assert ngram_entropy(TEXTS, 2) == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert ngram_entropy(["x x x x"], 1) == 0.0
    assert ngram_entropy(["a b c d e"], 1) == pytest.approx(math.log(5))
    assert ngram_entropy(["a"], 2) == 0.0


def _brute_force(items, n):
    grams = []
    for item in items:
        tokens = item.split() if isinstance(item, str) else list(item)
        grams += [" ".join(map(str, tokens[i : i + n])) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0, 0.0
    _, counts = np.unique(np.array(grams, dtype=object).astype(str), return_counts=True)
    p = counts / counts.sum()
    return len(counts) / len(grams), float(-(p * np.log(p)).sum())


words = st.sampled_from(["a", "b", "c", "dd", "e"])


@given(st.lists(st.lists(words, max_size=8), max_size=6), st.integers(1, 3))
def test_matches_brute_force_on_texts_and_token_lists(token_lists, n):
    texts = [" ".join(tokens) for tokens in token_lists]
    distinct, entropy = _brute_force(texts, n)
    assert distinct_n(texts, n) == pytest.approx(distinct)
    assert ngram_entropy(texts, n) == pytest.approx(entropy, abs=1e-12)
    assert distinct_n(token_lists, n) == pytest.approx(distinct)  # tokens given directly: same n-grams
    total = sum(ngram_counts(texts, n).values())
    if total:
        assert 0 < distinct_n(texts, n) <= 1
        assert 0 <= ngram_entropy(texts, n) <= math.log(total) + 1e-12


def test_mean_token_entropy_weighted_and_unweighted():
    records = [{"entropy": 2.0, "num_tokens": 1}, {"entropy": 5.0, "num_tokens": 3}]
    assert mean_token_entropy(records) == pytest.approx((2.0 + 15.0) / 4)
    assert mean_token_entropy(records, weighted=False) == pytest.approx(3.5)
    with pytest.raises(AlignlabError, match="record 1: field 'num_tokens'"):
        mean_token_entropy([{"entropy": 1.0, "num_tokens": 2}, {"entropy": 1.0}])
    with pytest.raises(AlignlabError, match="empty"):
        mean_token_entropy([])


def test_diversity_metrics_and_errors():
    metrics = diversity_metrics(TEXTS)
    assert set(metrics) == {"distinct_1", "distinct_2", "entropy_1", "entropy_2"}
    assert metrics["distinct_2"] == distinct_n(TEXTS, 2)
    for bad_n in (0, 1.5, True):
        with pytest.raises(AlignlabError, match="n must be"):
            distinct_n(TEXTS, bad_n)
    with pytest.raises(AlignlabError, match="single string"):
        distinct_n("the cat sat", 1)
    with pytest.raises(AlignlabError, match="item 1"):
        ngram_entropy(["ok", 3], 1)
