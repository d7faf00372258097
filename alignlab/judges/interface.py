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
`alignlab.diagnostics.win_rate` accepts any of them. What a judge returns is checked in one place,
checked_rewards / checked_probabilities: the reward-model and Python judges pass their output through them
(HttpJudge's scores are averages of 0, 0.5 and 1 by construction), and so do the callers that accept any judge
(win_rate, online rounds), so a caller receives finite floats (probabilities in [0, 1] from a pairwise judge) or
a one-line AlignlabError.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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


def _texts(name: str, values: Any) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise AlignlabError(f"{name} must be a list of strings, got {type(values).__name__}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise AlignlabError(f"{name}[{index}] is a {type(value).__name__}, not a string")
    return list(values)


def checked_inputs(**lists: Any) -> list[list[str]]:
    """A judge's inputs, each as a list of strings of one common length, in the order named; a one-line
    AlignlabError naming the list (and item) that is not, or the lengths when they differ."""
    checked = {name: _texts(name, values) for name, values in lists.items()}
    lengths = {name: len(values) for name, values in checked.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{count} {name}" for name, count in lengths.items())
        raise AlignlabError(f"the judge got {described}; they must pair up one to one")
    return list(checked.values())


def judge_name(judge: Any) -> str:
    """How messages name a judge: its `name` attribute, else `judge module:function` (or its type's name)."""
    name = getattr(judge, "name", None)
    if isinstance(name, str) and name:
        return name
    module = getattr(judge, "__module__", None)
    qualname = getattr(judge, "__qualname__", None) or type(judge).__name__
    return f"judge {module}:{qualname}" if module else f"judge {qualname}"


def _example(index: int) -> str:
    return f"example {index}"


def _checked(values: Any, count: int, who: str, where: Callable[[int], str], kind: str) -> list[float]:
    """`values` as [count] floats, each finite (kind "reward") or in [0, 1] (kind "probability")."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or not hasattr(values, "__iter__"):
        raise AlignlabError(f"{who} returned {values!r} for {count} examples; a judge returns one value per example")
    if len(values) != count:
        raise AlignlabError(f"{who} returned {len(values)} values for {count} examples; a judge returns one value "
                            "per example")
    out = []
    for index, value in enumerate(values):
        try:
            number = shown = float(value)  # a number shows as a float (nan, not np.float64(nan) or tensor(nan))
        except (TypeError, ValueError):
            number, shown = math.nan, value
        if kind == "reward" and not math.isfinite(number):
            raise AlignlabError(f"{who} returned {shown!r} for {where(index)}; a reward must be a finite number")
        if kind == "probability" and not 0.0 <= number <= 1.0:  # NaN fails both comparisons
            raise AlignlabError(f"{who} returned {shown!r} for {where(index)}; a pairwise judge returns a "
                                "probability in [0, 1] or a bool that the first completion is better")
        out.append(number)
    return out


def checked_rewards(values: Any, count: int, who: str, *, where: Callable[[int], str] = _example) -> list[float]:
    """A reward judge's output as [count] finite floats: the one check every caller and every judge here uses.

    values: what the judge returned (a list, an array, a tensor: anything with a length). who names the judge in
    messages (judge_name), where(i) names example i ("example i" by default). Any other length, or a value
    that is not a finite number (None, text, NaN, inf), is a one-line AlignlabError naming both.
    """
    return _checked(values, count, who, where, "reward")


def checked_probabilities(
    values: Any, count: int, who: str, *, where: Callable[[int], str] = _example
) -> list[float]:
    """A pairwise judge's output as [count] floats in [0, 1] (a bool counts as 1 or 0); as checked_rewards."""
    return _checked(values, count, who, where, "probability")


__all__ = [
    "Judge",
    "PairwiseJudge",
    "RewardJudge",
    "checked_inputs",
    "checked_probabilities",
    "checked_rewards",
    "judge_name",
]
