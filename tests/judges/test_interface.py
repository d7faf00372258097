"""The one check of what a judge returns (checked_rewards, checked_probabilities), and every caller using it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alignlab.diagnostics import win_rate
from alignlab.errors import AlignlabError
from alignlab.judges import CallableJudge, PairwiseCallableJudge
from alignlab.judges.interface import checked_probabilities, checked_rewards, judge_name
from alignlab.online.sampling import judge_rewards


@pytest.mark.parametrize("values", [[1, -2.5, 0.0], np.array([1.0, -2.5, 0.0]), torch.tensor([1.0, -2.5, 0.0]),
                                    (np.float32(1.0), True, 0)], ids=["list", "numpy", "torch", "mixed"])
def test_rewards_of_any_sequence_become_floats(values):
    got = checked_rewards(values, 3, "judge j")
    assert got == [1.0, -2.5, 0.0] or got == [1.0, 1.0, 0.0]
    assert all(type(value) is float for value in got)


@pytest.mark.parametrize(("value", "shown"), [(math.nan, "nan"), (-math.inf, "-inf"), (None, "None"),
                                              ("high", "'high'"), (torch.tensor(math.nan), "nan"),
                                              (np.float32(math.inf), "inf"),
                                              ([1.0], r"\[1.0\]")])
def test_a_reward_that_is_not_a_finite_number_is_named(value, shown):
    with pytest.raises(AlignlabError, match=rf"^judge j returned {shown} for example 1; a reward must be a finite "
                                            "number$"):
        checked_rewards([0.5, value], 2, "judge j")


@pytest.mark.parametrize(("values", "message"), [
    ([1.0], "judge j returned 1 values for 2 examples; a judge returns one value per example"),
    (3.0, "judge j returned 3.0 for 2 examples"),
    ("ab", "judge j returned 'ab' for 2 examples"),
    (None, "judge j returned None for 2 examples"),
])
def test_the_count_must_match(values, message):
    with pytest.raises(AlignlabError, match=f"^{message}"):
        checked_rewards(values, 2, "judge j")
    with pytest.raises(AlignlabError, match=f"^{message}"):
        checked_probabilities(values, 2, "judge j")


def test_probabilities_in_the_closed_interval_and_bools():
    assert checked_probabilities([0, 1, 0.25, True, False, np.float64(1.0)], 6, "j") == [0.0, 1.0, 0.25, 1.0, 0.0,
                                                                                            1.0]
    for bad in (math.nan, -1e-9, 1.0000001, math.inf, None, "A"):
        with pytest.raises(AlignlabError, match=r"for pair 0; a pairwise judge returns a probability in \[0, 1\]"):
            checked_probabilities([bad], 1, "j", where=lambda i: f"pair {i}")


def test_judge_name():
    def rule(prompt, completion):
        return 1.0

    class Scorer:
        def __call__(self, prompt, completion):
            return 1.0

    named = Scorer()
    named.name = "reward model x"
    assert judge_name(rule) == f"judge {__name__}:test_judge_name.<locals>.rule"
    assert judge_name(Scorer()) == f"judge {__name__}:Scorer"
    assert judge_name(named) == "reward model x"


class _RawRewards:
    """A reward judge of another package that checks nothing: its score_batch returns what it was given."""

    pairwise = False

    def __init__(self, rewards):
        self.rewards = rewards

    def score_batch(self, prompts, completions):
        return self.rewards

    def __call__(self, prompt, completion):
        raise AssertionError("score_batch is the batched path")


def test_every_caller_checks_a_judge_that_does_not():
    """win_rate and online rounds take any judge: a NaN, a None, a wrong count are one-line errors there too."""
    nan_judge = _RawRewards([1.0, 2.0, 3.0, math.nan])
    with pytest.raises(AlignlabError, match=r"^judge .*_RawRewards returned nan for completion b of example 1; a "
                                            "reward must be a finite number$"):
        win_rate(["a", "b"], ["c", "d"], nan_judge)
    with pytest.raises(AlignlabError, match="_RawRewards returned nan for completion 3; a reward must be a finite"):
        judge_rewards(nan_judge, ["p"] * 4, ["a", "b", "c", "d"])
    with pytest.raises(AlignlabError, match="returned 3 values for 4 examples"):
        judge_rewards(_RawRewards([1.0, 2.0, 3.0]), ["p"] * 4, ["a", "b", "c", "d"])
    with pytest.raises(AlignlabError, match="returned None for completion 0"):
        judge_rewards(_RawRewards([None]), ["p"], ["a"])
    with pytest.raises(AlignlabError, match="returned 2 values for 4 examples"):
        win_rate(["a", "b"], ["c", "d"], _RawRewards([1.0, 2.0]))
    assert judge_rewards(_RawRewards(np.array([1, 2])), ["p"] * 2, ["a", "b"]) == [1.0, 2.0]


@pytest.mark.parametrize("batched", [False, True])
def test_a_nan_from_a_python_function(batched):
    """A function's NaN is caught by its judge, batched or not, and names the example and the function."""
    def reward(prompt, completion):
        return math.nan if completion == "bad" else 1.0

    def preference(prompt, a, b):
        return math.nan if a == "bad" else 1.0

    if batched:
        judge = CallableJudge(lambda ps, cs: np.array([reward(p, c) for p, c in zip(ps, cs)]), batched=True)
        pairwise = PairwiseCallableJudge(lambda ps, a, b: [preference(*t) for t in zip(ps, a, b)], batched=True)
    else:
        judge, pairwise = CallableJudge(reward), PairwiseCallableJudge(preference)
    who = r"<lambda> \(batched\)" if batched else r"\.reward"
    with pytest.raises(AlignlabError, match=rf"{who} returned nan for example 1; a reward must be a finite number$"):
        judge.score_batch(["p", "p"], ["good", "bad"])
    with pytest.raises(AlignlabError, match=r"returned nan for example 1; a pairwise judge returns a probability"):
        pairwise.compare_batch(["p", "p"], ["good", "bad"], ["x", "y"])
    with pytest.raises(AlignlabError, match="returned nan for completion a of example 0"):
        win_rate(["bad"], ["good"], reward)  # a plain function, checked by win_rate
