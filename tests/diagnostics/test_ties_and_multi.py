"""Ranking accuracy with ties (Def. C.1) and with more than two outputs (Def. A.8, competition ranks)."""

from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.diagnostics import (
    competition_ranks,
    multi_output_ranking_accuracy,
    multi_output_ranking_correct,
    ranking_accuracy_with_ties,
)
from alignlab.errors import AlignlabError

# --- ties -----------------------------------------------------------------------------------------------------


def test_ties_rule_per_alpha():
    first = [-10.0, -10.0, -10.0, -10.0, -10.0, -10.0]
    second = [-10.005, -10.5, -12.0, -8.0, -12.0, -8.0]
    alpha = [0.5, 0.5, 0.75, 0.75, 0.25, 0.25]
    # tie within 0.01 nats: right; tie but 0.5 apart: wrong; y1 preferred: right, wrong; y2 preferred: wrong, right
    assert ranking_accuracy_with_ties(first, second, alpha, space="logprob") == pytest.approx(3 / 6)
    # a wider tolerance turns the second tied pair right
    assert ranking_accuracy_with_ties(first, second, alpha, space="logprob", tol=1.0) == pytest.approx(4 / 6)


def test_ties_tolerance_is_strict():
    assert ranking_accuracy_with_ties([0.0], [-0.25], 0.5, space="logprob", tol=0.25) == 0.0  # |d| = tol
    assert ranking_accuracy_with_ties([0.0], [-0.25], 0.5, space="logprob", tol=0.2500001) == 1.0


def test_ties_score_spaces():
    # y1: -20 nats over 10 tokens, y2: -21 over 10 tokens
    first, second, lengths = [-20.0], [-21.0], {"first_lengths": [10], "second_lengths": [10]}
    tol = 0.2
    # summed nats differ by 1 -> not a tie; per-token means differ by 0.1 -> tie
    assert ranking_accuracy_with_ties(first, second, 0.5, space="logprob", tol=tol) == 0.0
    assert ranking_accuracy_with_ties(first, second, 0.5, space="mean_logprob", tol=tol, **lengths) == 1.0
    # probabilities e^-20 and e^-21 differ by far less than any tolerance
    assert ranking_accuracy_with_ties(first, second, 0.5, space="prob", tol=1e-6) == 1.0
    # 1/perplexity: e^-2 - e^-2.1 = 0.0129 -> a tie at the paper's 0.02, not at 0.01
    gap = math.exp(-2.0) - math.exp(-2.1)
    assert 0.01 < gap < 0.02
    assert ranking_accuracy_with_ties(first, second, 0.5, space="inv_perplexity", tol=0.02, **lengths) == 1.0
    assert ranking_accuracy_with_ties(first, second, 0.5, space="inv_perplexity", tol=0.01, **lengths) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"space": "nats"}, "space must be one of"),
        ({"space": "mean_logprob"}, "needs first_lengths"),
        ({"space": "logprob", "first_lengths": [1], "second_lengths": [1]}, "summed log-probs"),
        ({"space": "logprob", "tol": 0.0}, "tol"),
    ],
)
def test_ties_rejects_bad_options(kwargs, message):
    with pytest.raises(AlignlabError, match=message):
        ranking_accuracy_with_ties([0.0], [0.0], 0.5, **kwargs)


def test_ties_rejects_bad_alpha():
    with pytest.raises(AlignlabError, match=r"\[0, 1\]"):
        ranking_accuracy_with_ties([0.0], [0.0], 1.5, space="logprob")
    with pytest.raises(AlignlabError, match="shape"):
        ranking_accuracy_with_ties([0.0], [0.0], [0.5, 0.5], space="logprob")


# --- more than two outputs ------------------------------------------------------------------------------------


def test_competition_ranks_1224():
    assert competition_ranks([0.9, 0.5, 0.5, 0.1]) == [1, 2, 2, 4]
    assert competition_ranks([3.0, 1.0, 1.0, 0.0]) == [1, 2, 2, 4]
    assert competition_ranks([1.0, 2.0, 3.0]) == [3, 2, 1]
    assert competition_ranks([7.0, 7.0, 7.0]) == [1, 1, 1]
    assert competition_ranks(torch.tensor([-1.0, -3.0])) == [1, 2]


def test_exact_match_and_ties():
    human = [[5, 3, 3, 1], [2, 1, 3], [4, 4]]
    model = [
        [-1.0, -2.0, -2.0, -9.0],  # same ranking including the tie: match
        [-2.0, -3.0, -1.0],  # match
        [-1.0, -1.0],  # tie matched: match
    ]
    assert multi_output_ranking_accuracy(model, human) == 1.0
    # breaking the human tie is a mismatch even though the order is otherwise right
    broken = [[-1.0, -2.0, -2.1, -9.0], [-2.0, -3.0, -1.0], [-1.0, -1.5]]
    assert multi_output_ranking_correct(broken, human) == [False, True, False]
    assert multi_output_ranking_accuracy(broken, human) == pytest.approx(1 / 3)
    # a model tie where humans have a strict order is a mismatch too
    assert multi_output_ranking_correct([[-1.0, -1.0, -3.0]], [[3, 2, 1]]) == [False]


def _ranks_by_sorting(scores: list[float]) -> list[int]:
    """Competition ranks computed differently: walk the descending sort and reuse the rank on equal scores."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    ranks = [0] * len(scores)
    for position, index in enumerate(order):
        previous = order[position - 1] if position else None
        tied = previous is not None and scores[previous] == scores[index]
        ranks[index] = ranks[previous] if tied else position + 1
    return ranks


_scores = st.lists(st.integers(0, 4).map(float), min_size=2, max_size=7)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(_scores, st.randoms(use_true_random=False)), min_size=1, max_size=10))
def test_multi_output_matches_sorting_reference(rows):
    human, model = [], []
    for scores, rng in rows:
        human.append(scores)
        # the model's scores: a monotone transform of the human scores (a match), or a shuffle (often not)
        model.append(
            [2.0 * s - 7.0 for s in scores] if rng.random() < 0.5 else rng.sample(scores, len(scores))
        )
    expected = sum(_ranks_by_sorting(m) == _ranks_by_sorting(h) for m, h in zip(model, human)) / len(rows)
    assert multi_output_ranking_accuracy(model, human) == pytest.approx(expected)
    for scores, _ in rows:
        assert competition_ranks(scores) == _ranks_by_sorting(scores)


@pytest.mark.parametrize(
    ("model", "human", "message"),
    [
        ([[1.0, 2.0]], [[1.0, 2.0], [1.0, 2.0]], "1 prompts but human_scores has 2"),
        ([], [], "no prompts"),
        ([[1.0, 2.0, 3.0]], [[1.0, 2.0]], "prompt 0: 3 model scores but 2 human scores"),
        ([[1.0]], [[1.0]], "needs >= 2"),
        ([[1.0, float("nan")]], [[1.0, 2.0]], "NaN"),
        ([["a", "b"]], [[1.0, 2.0]], "list of numbers"),
    ],
)
def test_multi_output_errors(model, human, message):
    with pytest.raises(AlignlabError, match=message):
        multi_output_ranking_accuracy(model, human)


def test_multi_output_variable_lengths():
    rng = random.Random(0)
    human = [[rng.randint(1, 5) for _ in range(n)] for n in (2, 3, 4, 5, 9)]
    assert multi_output_ranking_accuracy([[float(x) for x in h] for h in human], human) == 1.0
