"""Pairs from judged samples (alignlab.online.pairs), against a brute-force reading of the rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alignlab.online import build_pairs, pair_indices


def test_best_vs_worst_pairs_the_extremes_and_skips_ties():
    assert pair_indices([1.0, 3.0, 0.0, 2.0], ["a", "b", "c", "d"], rule="best_vs_worst") == [(1, 2)]
    assert pair_indices([2.0, 2.0, 2.0], ["a", "b", "c"], rule="best_vs_worst") == []  # all tied
    assert pair_indices([1.0, 3.0, 0.0], ["a", "b", "c"], rule="best_vs_worst", min_margin=3.0) == []  # not > 3
    assert pair_indices([1.0, 3.0, 0.0], ["a", "b", "c"], rule="best_vs_worst", min_margin=2.5) == [(1, 2)]
    # equal rewards at the top or bottom: the first of them
    assert pair_indices([3.0, 0.0, 3.0, 0.0], ["a", "b", "c", "d"], rule="best_vs_worst") == [(0, 1)]


def test_all_pairs_keeps_ordered_pairs_above_the_margin():
    rewards, texts = [0.0, 2.0, 2.0, 5.0], ["a", "b", "c", "d"]
    assert pair_indices(rewards, texts, rule="all_pairs") == [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2)]
    assert pair_indices(rewards, texts, rule="all_pairs", min_margin=2.5) == [(3, 0), (3, 1), (3, 2)]


def test_equal_or_empty_completions_never_pair():
    # a judge that scores one text twice differently gives no preference; training holds no empty response
    assert pair_indices([1.0, 0.0, 5.0], ["same", "same", "  "], rule="all_pairs") == []
    assert pair_indices([1.0, 0.0, 5.0], ["x", "y", ""], rule="best_vs_worst") == [(0, 1)]


@given(st.lists(st.integers(-3, 3), min_size=2, max_size=6), st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_all_pairs_is_every_strictly_better_pair(rewards, margin):
    texts = [f"t{i}" for i in range(len(rewards))]
    expected = {(i, j) for i, j in itertools.permutations(range(len(rewards)), 2) if rewards[i] > rewards[j] + margin}
    assert set(pair_indices([float(r) for r in rewards], texts, rule="all_pairs", min_margin=margin)) == expected
    best = pair_indices([float(r) for r in rewards], texts, rule="best_vs_worst", min_margin=margin)
    assert best == ([] if max(rewards) - min(rewards) <= margin else
                    [(rewards.index(max(rewards)), rewards.index(min(rewards)))])


def test_build_pairs_writes_training_pairs_in_the_prompts_format():
    chat = [{"role": "user", "content": "hi"}]
    samples = [{"prompt_index": p, "sample_index": s, "prompt": prompt, "completion": text, "reward": reward}
               for p, prompt, group in ((0, "Q?", [("a", 1.0), ("bb", 4.0), ("c", 2.0)]),
                                        (1, chat, [("x", 0.0), ("y", 0.0)]),
                                        (2, chat, [("u", 1.0), ("v", 0.0)]))
               for s, (text, reward) in enumerate(group)]
    pairs = build_pairs(list(reversed(samples)), rule="best_vs_worst")
    assert pairs == [
        {"prompt": chat, "chosen": [{"role": "assistant", "content": "u"}],
         "rejected": [{"role": "assistant", "content": "v"}], "prompt_index": 2, "chosen_sample": 0,
         "rejected_sample": 1, "chosen_reward": 1.0, "rejected_reward": 0.0, "margin": 1.0},
        {"prompt": "Q?", "chosen": "bb", "rejected": "a", "prompt_index": 0, "chosen_sample": 1, "rejected_sample": 0,
         "chosen_reward": 4.0, "rejected_reward": 1.0, "margin": 3.0},
    ]  # prompt 1 tied: no pair
    with pytest.raises(ValueError, match="rule must be one of"):
        build_pairs(samples, rule="best")
