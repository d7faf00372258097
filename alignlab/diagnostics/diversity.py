"""Diversity of a set of completions: distinct-n, n-gram entropy and mean predictive token entropy
(as the TDPO paper, arXiv 2404.11999, Sec. 5: alignlab logs distinct-1/2, unigram/bigram entropy and the predictive
entropy, so results survive either reading of "entropy" in the TDPO/f-DPO tables).

Tokens. A text item (str) is split on whitespace (`str.split()`: runs of whitespace, no lower-casing,
punctuation stays attached); any other item is a sequence of tokens used as is, e.g. a record's
`completion_ids` or a tokenizer's tokens. n-grams are taken within each item, never across two items, and
pooled over the set:

  distinct_n     = #distinct n-grams / #n-grams                          (Li et al. 2016, arXiv 1510.03055)
  ngram_entropy  = -sum_g (c_g / N) log(c_g / N) in nats, c_g the count of n-gram g, N = sum_g c_g
  mean_token_entropy = sum_i len_i * H_i / sum_i len_i over records with per-token mean entropy H_i over len_i
                       generated tokens (the `entropy` and `num_tokens` fields of `generate`'s records)

A set with no n-gram at all (every item shorter than n) gives 0.0 for distinct_n and ngram_entropy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from alignlab.errors import AlignlabError


def _check_order(n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AlignlabError(f"n must be an integer >= 1, got {n!r}")


def _tokens(item: Any, index: int) -> Sequence[Hashable]:
    if isinstance(item, str):
        return item.split()
    if isinstance(item, Sequence):
        return item
    raise AlignlabError(f"item {index} is a {type(item).__name__}; expected a string or a sequence of tokens")


def ngram_counts(items: Sequence[str | Sequence[Hashable]], n: int) -> Counter[tuple[Hashable, ...]]:
    """Counts of the n-grams of every item, pooled over the set (module docstring for the tokenization)."""
    _check_order(n)
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise AlignlabError("items must be a list of strings or of token sequences, not a single string")
    counts: Counter[tuple[Hashable, ...]] = Counter()
    for index, item in enumerate(items):
        tokens = tuple(_tokens(item, index))
        counts.update(tokens[i : i + n] for i in range(len(tokens) - n + 1))
    return counts


def distinct_n(items: Sequence[str | Sequence[Hashable]], n: int) -> float:
    """Distinct n-grams over all n-grams of the set, in [0, 1]; 0.0 when the set has no n-gram."""
    counts = ngram_counts(items, n)
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def ngram_entropy(items: Sequence[str | Sequence[Hashable]], n: int) -> float:
    """Shannon entropy (nats) of the set's empirical n-gram distribution; 0.0 when the set has no n-gram."""
    counts = ngram_counts(items, n)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values()) if total else 0.0


def mean_token_entropy(records: Sequence[Mapping[str, Any]], *, weighted: bool = True) -> float:
    """Mean predictive entropy per generated token (nats) over `generate` records.

    weighted=True averages over tokens (each record's `entropy` weighted by its `num_tokens`); weighted=False
    averages the per-record means. Records need `entropy` (and `num_tokens` when weighted).
    """
    if not records:
        raise AlignlabError("records is empty; no entropy to average")
    fields = ("entropy", "num_tokens") if weighted else ("entropy",)
    for index, record in enumerate(records):
        for field in fields:
            value = record.get(field) if isinstance(record, Mapping) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise AlignlabError(
                    f"record {index}: field '{field}' is missing or not a finite number ({value!r})"
                )
    if not weighted:
        return sum(float(r["entropy"]) for r in records) / len(records)
    tokens = sum(r["num_tokens"] for r in records)
    if tokens <= 0:
        raise AlignlabError("records hold no generated tokens (num_tokens sums to 0)")
    return sum(float(r["entropy"]) * r["num_tokens"] for r in records) / tokens


def diversity_metrics(
    items: Sequence[str | Sequence[Hashable]], orders: Sequence[int] = (1, 2)
) -> dict[str, float]:
    """{"distinct_<n>": ..., "entropy_<n>": ...} for each n in orders (by default the testbed's distinct-1/2
    and unigram/bigram entropy)."""
    metrics: dict[str, float] = {}
    for n in orders:
        metrics[f"distinct_{n}"] = distinct_n(items, n)
        metrics[f"entropy_{n}"] = ngram_entropy(items, n)
    return metrics


__all__ = ["distinct_n", "diversity_metrics", "mean_token_entropy", "ngram_counts", "ngram_entropy"]
