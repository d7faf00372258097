"""Rule judges for the online tests: the reward of a completion is how often a target string occurs in it."""

from __future__ import annotations

from collections.abc import Sequence

TARGET = "e"


def count_target(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """[n] rewards: occurrences of TARGET in each completion (the prompt is ignored)."""
    return [float(c.count(TARGET)) for c in completions]


class CountJudge:
    """A reward judge (alignlab.judges' interface) counting `target` in each completion."""

    pairwise = False

    def __init__(self, target: str = TARGET):
        self.target = target

    def score_batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        return [float(c.count(self.target)) for c in completions]

    def __call__(self, prompt: str, completion: str) -> float:
        return self.score_batch([prompt], [completion])[0]
