"""Win rate of completions A against completions B under a plug-in judge, with a bootstrap confidence interval
(the "win rate vs reference" of Chen et al. 2024, arXiv 2405.19534, Sec. 5 and App. E; that paper releases no
judge code, so the judge is a plug-in).

Two kinds of judge (alignlab.judges.interface), chosen by `pairwise`, which defaults to the judge's own
`pairwise` attribute (False for a plain function):
  pairwise=False (reward judge):  judge(prompt, completion) -> float reward. Example i scores 1 if A's reward is
      higher, 0.5 on equal rewards, 0 otherwise. A judge with a `score_batch(prompts, completions)` method (e.g.
      RewardModelJudge) is called once for all completions instead of once per completion.
  pairwise=True:  judge(prompt, a, b) -> probability in [0, 1] (or bool) that `a` is better. Example i scores that
      probability. By default the A/B order is randomised per example (seeded) to cancel position bias: when
      swapped, the judge sees (prompt, b, a) and the score is 1 - its answer. A judge with
      `compare_batch(prompts, completions_a, completions_b)` (e.g. HttpJudge) is called once for all pairs.
win rate = mean score; the interval is the percentile bootstrap over examples, or over groups of examples
(`groups`: the n samples of one prompt are resampled together, since they are not independent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alignlab.errors import AlignlabError
from alignlab.judges import Judge
from alignlab.judges.interface import checked_probabilities, checked_rewards, judge_name

_BOOTSTRAP_CHUNK = 4_000_000  # resampled indices held at once


@dataclass(frozen=True)
class WinRate:
    """win_rate in [0, 1] with its percentile-bootstrap interval [ci_low, ci_high] at `confidence`.

    wins / ties / losses count examples scoring > 0.5, == 0.5, < 0.5; scores holds the per-example scores [n];
    n_groups is the number of resampled units (n without groups); a reward judge's rewards of a and of b [n] are
    rewards_a / rewards_b (None for a pairwise judge).
    """

    win_rate: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    wins: int
    ties: int
    losses: int
    scores: list[float]
    pairwise: bool
    randomized_order: bool
    n_bootstrap: int
    seed: int
    n_groups: int
    rewards_a: list[float] | None = None
    rewards_b: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _reward_scores(
    judge: Any, prompts: list[str], completions_a: list[str], completions_b: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, rewards of a, rewards of b), each [n]."""
    n = len(prompts)
    if hasattr(judge, "score_batch"):
        rewards = judge.score_batch(prompts + prompts, completions_a + completions_b)
    else:
        rewards = [judge(p, c) for p, c in zip(prompts + prompts, completions_a + completions_b)]
    values = np.array(checked_rewards(rewards, 2 * n, judge_name(judge),
                                      where=lambda i: f"completion {'ab'[i >= n]} of example {i % n}"))
    reward_a, reward_b = values[:n], values[n:]
    return np.where(reward_a > reward_b, 1.0, np.where(reward_a == reward_b, 0.5, 0.0)), reward_a, reward_b


def _pairwise_scores(
    judge: Any,
    prompts: list[str],
    completions_a: list[str],
    completions_b: list[str],
    swaps: np.ndarray,
) -> np.ndarray:
    firsts = [b if swap else a for a, b, swap in zip(completions_a, completions_b, swaps)]
    seconds = [a if swap else b for a, b, swap in zip(completions_a, completions_b, swaps)]
    if hasattr(judge, "compare_batch"):
        answers = judge.compare_batch(prompts, firsts, seconds)
    else:
        answers = [judge(p, first, second) for p, first, second in zip(prompts, firsts, seconds)]
    values = np.array(checked_probabilities(answers, len(prompts), judge_name(judge)))
    return np.where(swaps, 1.0 - values, values)


def _as_texts(values: Sequence[str], name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise AlignlabError(f"{name} must be a list of strings")
    return list(values)


def _group_index(groups: Sequence[Any], n: int) -> np.ndarray:
    """[n] group numbers 0, 1, ... in order of first appearance."""
    groups = list(groups)
    if len(groups) != n:
        raise AlignlabError(f"groups has {len(groups)} labels but there are {n} completion pairs")
    numbers: dict[Any, int] = {}
    try:
        return np.array([numbers.setdefault(label, len(numbers)) for label in groups], dtype=np.int64)
    except TypeError:
        raise AlignlabError("groups must be hashable labels such as prompt indices") from None


def _bootstrap_means(scores: np.ndarray, group: np.ndarray | None, n_bootstrap: int, seed: int) -> np.ndarray:
    """[n_bootstrap] win rates of resampled data: examples drawn with replacement, or whole groups when given."""
    rng = np.random.default_rng(seed)
    if group is None:
        sums, counts = scores, None
    else:
        sums, counts = np.bincount(group, weights=scores), np.bincount(group).astype(float)
    units = len(sums)
    rows = max(1, _BOOTSTRAP_CHUNK // units)
    means = []
    for start in range(0, n_bootstrap, rows):
        draws = rng.integers(0, units, size=(min(rows, n_bootstrap - start), units))
        # a resample's win rate is its examples' mean score: with groups, summed scores over summed sizes
        if counts is None:
            means.append(sums[draws].mean(axis=1))
        else:
            means.append(sums[draws].sum(axis=1) / counts[draws].sum(axis=1))
    return np.concatenate(means)


def win_rate(
    completions_a: Sequence[str],
    completions_b: Sequence[str],
    judge: Judge | Callable[..., Any],
    *,
    prompts: Sequence[str] | None = None,
    pairwise: bool | None = None,
    randomize_order: bool | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups: Sequence[Any] | None = None,
) -> WinRate:
    """Win rate of completions_a over completions_b ([n] each, paired by index) with a bootstrap interval.

    prompts: [n] or None (the judge then receives "" as the prompt). pairwise: selects the judge kind (module
    docstring); None takes the judge's own `pairwise` attribute, else False. randomize_order: pairwise judges
    only; None means True. n_bootstrap resamples with numpy's default_rng(seed); the interval is the
    (1 - confidence)/2 and (1 + confidence)/2 percentiles. groups: [n] labels (e.g. prompt indices); examples
    sharing a label are resampled together, so correlated samples do not narrow the interval.
    """
    completions_a = _as_texts(completions_a, "completions_a")
    completions_b = _as_texts(completions_b, "completions_b")
    n = len(completions_a)
    if n == 0:
        raise AlignlabError("completions_a is empty; nothing to judge")
    if len(completions_b) != n:
        raise AlignlabError(
            f"completions_a has {n} completions but completions_b has {len(completions_b)}"
        )
    prompts = [""] * n if prompts is None else _as_texts(prompts, "prompts")
    if len(prompts) != n:
        raise AlignlabError(
            f"prompts has {len(prompts)} entries but there are {n} completion pairs"
        )
    if not callable(judge):
        raise AlignlabError("judge must be callable")
    own = getattr(judge, "pairwise", None)
    if pairwise is None:
        pairwise = own if isinstance(own, bool) else False
    elif isinstance(own, bool) and own != pairwise:
        kind = "pairwise" if own else "reward"
        raise AlignlabError(f"pairwise={pairwise} but the judge is a {kind} judge; leave pairwise unset")
    group = None if groups is None else _group_index(groups, n)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise AlignlabError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not 0.0 < confidence < 1.0:
        raise AlignlabError(f"confidence must be in (0, 1), got {confidence!r}")
    if randomize_order and not pairwise:
        raise AlignlabError(
            "randomize_order applies to pairwise judges only; a reward judge scores each completion alone"
        )
    randomize = bool(pairwise and (randomize_order is None or randomize_order))
    rewards_a = rewards_b = None
    if pairwise:
        swaps = np.random.default_rng([seed, 1]).random(n) < 0.5 if randomize else np.zeros(n, dtype=bool)
        scores = _pairwise_scores(judge, prompts, completions_a, completions_b, swaps)
    else:
        scores, rewards_a, rewards_b = _reward_scores(judge, prompts, completions_a, completions_b)
    means = _bootstrap_means(scores, group, n_bootstrap, seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return WinRate(
        win_rate=float(scores.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=float(confidence),
        n=n,
        wins=int((scores > 0.5).sum()),
        ties=int((scores == 0.5).sum()),
        losses=int((scores < 0.5).sum()),
        scores=scores.tolist(),
        pairwise=bool(pairwise),
        randomized_order=randomize,
        n_bootstrap=n_bootstrap,
        seed=seed,
        n_groups=n if group is None else int(group.max()) + 1,
        rewards_a=None if rewards_a is None else rewards_a.tolist(),
        rewards_b=None if rewards_b is None else rewards_b.tolist(),
    )


__all__ = ["WinRate", "win_rate"]
