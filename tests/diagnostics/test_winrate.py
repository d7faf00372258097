"""Win rate with reward and pairwise judges, judge objects of alignlab.judges, and the bootstrap interval (plain
and over groups); RewardModelJudge's own tests are in tests/judges."""

from __future__ import annotations

import numpy as np
import pytest

from alignlab.diagnostics import win_rate
from alignlab.errors import AlignlabError


def _length_reward(prompt: str, completion: str) -> float:
    return float(len(completion))


def test_reward_judge_wins_ties_and_losses():
    a = ["xxxx", "xx", "x", "xxx"]
    b = ["xx", "xx", "xxx", "x"]
    result = win_rate(a, b, _length_reward, n_bootstrap=200)
    assert (result.wins, result.ties, result.losses) == (2, 1, 1)
    assert result.scores == [1.0, 0.5, 0.0, 1.0]
    assert result.win_rate == pytest.approx(2.5 / 4)
    assert not result.pairwise and not result.randomized_order


def test_reward_judge_receives_prompts():
    seen = []

    def judge(prompt, completion):
        seen.append((prompt, completion))
        return 1.0 if completion.startswith(prompt) else 0.0

    result = win_rate(["p1 yes", "no"], ["no", "p2 yes"], judge, prompts=["p1", "p2"], n_bootstrap=10)
    assert result.scores == [1.0, 0.0]
    assert ("p1", "p1 yes") in seen and ("p2", "p2 yes") in seen
    win_rate(["a"], ["b"], lambda prompt, completion: seen.append(prompt) or 0.0, n_bootstrap=1)
    assert seen[-1] == ""  # no prompts: the judge gets ""


def test_bootstrap_interval_matches_numpy():
    rng = np.random.default_rng(5)
    rewards_a, rewards_b = rng.normal(0.3, 1, 80), rng.normal(0, 1, 80)
    a, b = [str(x) for x in rewards_a], [str(x) for x in rewards_b]
    result = win_rate(a, b, lambda prompt, completion: float(completion), n_bootstrap=500, seed=7)
    scores = np.where(rewards_a > rewards_b, 1.0, 0.0)
    # the same resampling done by hand: default_rng(seed), indices [n_bootstrap, n], percentile interval
    indices = np.random.default_rng(7).integers(0, 80, size=(500, 80))
    means = scores[indices].mean(axis=1)
    assert result.win_rate == pytest.approx(scores.mean())
    assert result.ci_low == pytest.approx(np.percentile(means, 2.5))
    assert result.ci_high == pytest.approx(np.percentile(means, 97.5))
    assert result.ci_low <= result.win_rate <= result.ci_high
    # the interval is about +-2 standard errors wide
    stderr = scores.std() / np.sqrt(80)
    assert 3 * stderr < result.ci_high - result.ci_low < 5 * stderr
    again = win_rate(a, b, lambda prompt, completion: float(completion), n_bootstrap=500, seed=7)
    assert (again.ci_low, again.ci_high) == (result.ci_low, result.ci_high)
    narrower = win_rate(
        a, b, lambda prompt, completion: float(completion), n_bootstrap=500, seed=7, confidence=0.5
    )
    assert result.ci_low <= narrower.ci_low <= narrower.ci_high <= result.ci_high


def test_pairwise_judge_probabilities_bools_and_order_randomisation():
    a = ["long answer", "short", "medium one", "x"]
    b = ["short", "long answer", "tiny", "yy"]

    def prefers_longer(prompt, first, second):
        return len(first) > len(second)

    result = win_rate(a, b, prefers_longer, pairwise=True, n_bootstrap=50)
    assert result.scores == [1.0, 0.0, 1.0, 0.0] and result.randomized_order
    fixed = win_rate(a, b, prefers_longer, pairwise=True, randomize_order=False, n_bootstrap=50)
    assert fixed.scores == result.scores and not fixed.randomized_order

    def first_position(prompt, first, second):  # a judge with pure position bias
        return 0.9

    biased = win_rate(["a"] * 400, ["b"] * 400, first_position, pairwise=True, randomize_order=False)
    assert biased.win_rate == pytest.approx(0.9)
    debiased = win_rate(["a"] * 400, ["b"] * 400, first_position, pairwise=True, seed=3)
    swaps = np.random.default_rng([3, 1]).random(400) < 0.5
    assert debiased.win_rate == pytest.approx(np.where(swaps, 0.1, 0.9).mean())
    assert abs(debiased.win_rate - 0.5) < 0.1


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((["a"], ["b", "c"], _length_reward), {}, "completions_b has 2"),
        (([], [], _length_reward), {}, "empty"),
        ((["a"], ["b"], _length_reward), {"prompts": ["p", "q"]}, "prompts has 2"),
        ((["a"], ["b"], _length_reward), {"n_bootstrap": 0}, "n_bootstrap"),
        ((["a"], ["b"], _length_reward), {"confidence": 1.0}, "confidence"),
        ((["a"], ["b"], _length_reward), {"randomize_order": True}, "pairwise judges only"),
        ((["a"], ["b"], lambda p, c: float("nan")), {}, "completion a of example 0"),
        ((["a"], ["b"], lambda p, x, y: 1.5), {"pairwise": True}, "returned 1.5 for example 0; a pairwise judge"),
        (("a", ["b"], _length_reward), {}, "list of strings"),
    ],
)
def test_win_rate_errors(args, kwargs, message):
    with pytest.raises(AlignlabError, match=message):
        win_rate(*args, **kwargs)


# --- judges of alignlab.judges and grouped resampling ----------------------------------------------------------


class _BatchComparer:
    """A pairwise judge object: records each compare_batch call; a is better when longer."""

    pairwise = True

    def __init__(self):
        self.calls = []

    def compare_batch(self, prompts, firsts, seconds):
        self.calls.append((list(prompts), list(firsts), list(seconds)))
        return [1.0 if len(f) > len(s) else 0.0 for f, s in zip(firsts, seconds)]

    def __call__(self, prompt, a, b):
        raise AssertionError("win_rate must use compare_batch")


def test_pairwise_judge_object_is_called_once_in_the_randomised_order():
    from alignlab.judges import load_judge

    a = ["long answer", "x", "medium one", "yy", "abc"]
    b = ["short", "long answer", "tiny", "x", "abcd"]
    judge = _BatchComparer()
    result = win_rate(a, b, judge, prompts=list("pqrst"), seed=4, n_bootstrap=10)  # pairwise from the judge
    assert result.pairwise and result.randomized_order and len(judge.calls) == 1
    swaps = np.random.default_rng([4, 1]).random(5) < 0.5
    prompts, firsts, seconds = judge.calls[0]
    assert prompts == list("pqrst")
    assert firsts == [y if s else x for x, y, s in zip(a, b, swaps)]
    assert seconds == [x if s else y for x, y, s in zip(a, b, swaps)]
    assert result.scores == [1.0, 0.0, 1.0, 1.0, 0.0]  # the swaps undone
    assert load_judge(judge) is judge  # a judge object passes through load_judge
    with pytest.raises(AlignlabError, match="pairwise=False but the judge is a pairwise judge"):
        win_rate(a, b, judge, pairwise=False)


def test_the_judge_object_sets_the_kind():
    from alignlab.judges import CallableJudge, PairwiseCallableJudge

    pairwise = PairwiseCallableJudge(lambda prompt, a, b: len(a) > len(b))  # called as judge(p, c) it would fail
    result = win_rate(["aa", "a"], ["a", "aa"], pairwise, n_bootstrap=5)
    assert result.pairwise and result.scores == [1.0, 0.0]
    reward = CallableJudge(lambda prompt, completion: len(completion))
    result = win_rate(["aa", "a"], ["a", "aa"], reward, n_bootstrap=5)
    assert not result.pairwise and result.scores == [1.0, 0.0]
    with pytest.raises(AlignlabError, match="pairwise=True but the judge is a reward judge"):
        win_rate(["a"], ["b"], reward, pairwise=True)


def test_grouped_bootstrap_resamples_whole_groups():
    rng = np.random.default_rng(0)
    groups = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 5]
    rewards_a, rewards_b = rng.normal(0.2, 1, 12), rng.normal(0, 1, 12)
    a, b = [str(x) for x in rewards_a], [str(x) for x in rewards_b]

    def judge(prompt, completion):
        return float(completion)

    result = win_rate(a, b, judge, groups=[f"p{g}" for g in groups], n_bootstrap=300, seed=2)
    scores = np.where(rewards_a > rewards_b, 1.0, 0.0)
    # by hand, written differently: draw 6 of the groups with replacement, pool their examples, take the mean
    members = [[i for i, g in enumerate(groups) if g == k] for k in range(6)]
    draws = np.random.default_rng(2).integers(0, 6, size=(300, 6))
    means = [np.mean([scores[i] for k in row for i in members[k]]) for row in draws]
    assert result.n_groups == 6 and result.n == 12
    assert result.win_rate == pytest.approx(scores.mean())
    assert result.ci_low == pytest.approx(np.percentile(means, 2.5))
    assert result.ci_high == pytest.approx(np.percentile(means, 97.5))
    # one group per example is the plain bootstrap
    plain = win_rate(a, b, judge, n_bootstrap=300, seed=2)
    singletons = win_rate(a, b, judge, groups=range(12), n_bootstrap=300, seed=2)
    assert (singletons.ci_low, singletons.ci_high) == pytest.approx((plain.ci_low, plain.ci_high))
    with pytest.raises(AlignlabError, match="groups has 2 labels"):
        win_rate(a, b, judge, groups=[0, 1])
    with pytest.raises(AlignlabError, match="hashable"):
        win_rate(a[:1], b[:1], judge, groups=[[0]])


def test_a_reward_judge_is_asked_once_and_its_rewards_are_kept():
    calls = []

    def length(prompts, completions):
        calls.append(len(completions))
        return [float(len(c)) for c in completions]

    from alignlab.judges import CallableJudge

    result = win_rate(["aaa", "b"], ["cc", "dd"], CallableJudge(length, batched=True), prompts=["p", "q"])
    assert calls == [4]  # one batch: both sides of both examples
    assert result.rewards_a == [3.0, 1.0] and result.rewards_b == [2.0, 2.0] and result.scores == [1.0, 0.0]
