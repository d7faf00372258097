"""Ranking accuracy with more than two responses per prompt (Chen et al. 2024, arXiv 2405.19534, App. A.6,
Def. A.8): R_{n>2} = 1[rho = nu], an exact match of the whole ranking.

Both rankings are descending competition ranks ("1224"): rank_i = 1 + #{j : s_j > s_i}, so tied scores share the
best rank. Ties in the human scores must therefore be tied in the model scores too (exact equality).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from alignlab.errors import AlignlabError


def competition_ranks(scores: Sequence[float]) -> list[int]:
    """Descending competition ranks of `scores` ([n], higher is better): [3, 1, 1, 0] -> [1, 2, 2, 4]."""
    values = [float(score) for score in scores]
    return [1 + sum(other > value for other in values) for value in values]


def _checked(scores: Sequence[float], name: str, index: int) -> list[float]:
    try:
        values = [float(score) for score in scores]
    except (TypeError, ValueError):
        raise AlignlabError(f"{name}[{index}] must be a list of numbers") from None
    if any(math.isnan(value) for value in values):
        raise AlignlabError(f"{name}[{index}] contains NaN")
    return values


def multi_output_ranking_correct(
    model_scores: Sequence[Sequence[float]], human_scores: Sequence[Sequence[float]]
) -> list[bool]:
    """Per-prompt exact-match flags: model_scores[i] and human_scores[i] are [n_i] scores (n_i >= 2 may vary
    across prompts, higher is better; model scores are e.g. summed or mean log-probs)."""
    if len(model_scores) != len(human_scores):
        raise AlignlabError(
            f"model_scores has {len(model_scores)} prompts but human_scores has {len(human_scores)}"
        )
    if not model_scores:
        raise AlignlabError("no prompts to score; model_scores and human_scores are empty")
    flags = []
    for index, (model, human) in enumerate(zip(model_scores, human_scores)):
        model, human = _checked(model, "model_scores", index), _checked(human, "human_scores", index)
        if len(model) != len(human):
            raise AlignlabError(
                f"prompt {index}: {len(model)} model scores but {len(human)} human scores"
            )
        if len(model) < 2:
            raise AlignlabError(
                f"prompt {index} has {len(model)} response(s); a ranking needs >= 2"
            )
        flags.append(competition_ranks(model) == competition_ranks(human))
    return flags


def multi_output_ranking_accuracy(
    model_scores: Sequence[Sequence[float]], human_scores: Sequence[Sequence[float]]
) -> float:
    """Fraction of prompts whose model ranking equals the human ranking exactly (Def. A.8).

    model_scores, human_scores: one [n_i] list per prompt, n_i >= 2 and variable. Rankings are descending
    competition ranks, so ties in the human scores must be exactly tied in the model scores and vice versa.
    """
    flags = multi_output_ranking_correct(model_scores, human_scores)
    return sum(flags) / len(flags)


__all__ = ["competition_ranks", "multi_output_ranking_accuracy", "multi_output_ranking_correct"]
