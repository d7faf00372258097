"""The judge interface: two kinds, told apart by their `pairwise` attribute.

A reward judge scores one completion at a time:
    judge.pairwise is False
    judge.score_batch(prompts, completions) -> list[float]      [n] prompts, [n] completions -> [n] rewards
    judge(prompt, completion) -> float                          the same for one completion

A pairwise judge compares two completions of one prompt:
    judge.pairwise is True
    judge.compare_batch(prompts, completions_a, completions_b) -> list[float]
                                                  [n] each -> [n] probabilities in [0, 1] that a is better
    judge.compare(prompt, a, b) -> float          the same for one pair; judge(prompt, a, b) is compare

These are Protocols (static types, no isinstance): any object with the attribute and methods is a judge
(`load_judge` passes it through), and
`alignlab.diagnostics.win_rate` accepts any of them. Every judge in this package validates what it returns, so a
caller receives finite floats (probabilities in [0, 1] from a pairwise judge) or a one-line AlignlabError.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from alignlab.errors import AlignlabError


class RewardJudge(Protocol):
    """Scores each (prompt, completion) alone: a reward model, a rule, a scoring function."""

    pairwise: Literal[False]

    def score_batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """One finite reward per (prompt, completion) pair, in input order."""
        ...

    def __call__(self, prompt: str, completion: str) -> float:
        """The reward of one completion."""
        ...


class PairwiseJudge(Protocol):
    """Compares two completions of one prompt: an LLM judge, a preference function."""

    pairwise: Literal[True]

    def compare(self, prompt: str, a: str, b: str) -> float:
        """Probability in [0, 1] that `a` is the better completion of `prompt`."""
        ...

    def compare_batch(
        self, prompts: Sequence[str], completions_a: Sequence[str], completions_b: Sequence[str]
    ) -> list[float]:
        """compare() of each (prompt, a, b) triple, in input order."""
        ...

    def __call__(self, prompt: str, a: str, b: str) -> float:
        """compare(prompt, a, b)."""
        ...


Judge = RewardJudge | PairwiseJudge


def check_texts(name: str, values: Any) -> list[str]:
    """`values` as a list of strings; a one-line AlignlabError naming `name` otherwise."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise AlignlabError(f"{name} must be a list of strings, got {type(values).__name__}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise AlignlabError(f"{name}[{index}] is a {type(value).__name__}, not a string")
    return list(values)


def check_lengths(**lists: Sequence[str]) -> int:
    """The common length of the named lists; a one-line AlignlabError naming them when they differ."""
    lengths = {name: len(values) for name, values in lists.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{count} {name}" for name, count in lengths.items())
        raise AlignlabError(f"the judge got {described}; they must pair up one to one")
    return next(iter(lengths.values()), 0)


def as_reward(value: Any, who: str, index: int) -> float:
    """`value` as a finite float reward; a one-line AlignlabError naming the judge and the example otherwise."""
    try:
        reward = float(value)
    except (TypeError, ValueError):
        reward = math.nan
    if not math.isfinite(reward):
        raise AlignlabError(f"{who} returned {value!r} for example {index}; a reward must be a finite number")
    return reward


def as_probability(value: Any, who: str, index: int) -> float:
    """`value` (a probability or a bool that the first completion is better) as a float in [0, 1]."""
    try:
        probability = float(value)
    except (TypeError, ValueError):
        probability = math.nan
    if not 0.0 <= probability <= 1.0:
        raise AlignlabError(
            f"{who} returned {value!r} for example {index}; a pairwise judge returns a probability in [0, 1] "
            "or a bool that the first completion is better"
        )
    return probability


__all__ = ["Judge", "PairwiseJudge", "RewardJudge", "as_probability", "as_reward", "check_lengths", "check_texts"]
