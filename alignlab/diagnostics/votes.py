"""Rater proportions alpha from annotator votes (Chen et al. 2024, arXiv 2405.19534, App. C.4).

alpha(x, y1, y2) is the fraction of raters preferring y1; the majority response is y_w. Idealized ranking
accuracy needs alpha per pair, so it is defined only for datasets with several raters per pair (AlpacaFarm
cross-annotations: group vote rows by (instruction, output_1, output_2), alpha_1 = #votes for 1 / #votes).
Single-rater data (HH) or aggregate labels (SHP, UltraFeedback) carry no alpha: plugging alpha = 1 into Eq. 2
makes the term infinite, so `require_alpha_source` refuses such data with a reason instead of guessing.

Record conventions (pair records with `chosen` / `rejected`):
  alpha            fraction of raters preferring `chosen`, in [0, 1]
  votes            list of votes, 1 = `chosen` preferred, 2 = `rejected` preferred
  votes_chosen, votes_rejected    vote counts
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from alignlab.errors import AlignlabError, DataError

ALPHA_FIELDS = ("alpha", "votes", "votes_chosen+votes_rejected")


@dataclass(frozen=True)
class VoteSummary:
    """Votes on one (prompt, y1, y2) triple.

    alpha: fraction preferring y1; n_votes: number of votes; majority: 1 or 2 (which output is y_w), 0 on a tie;
    alpha_majority: fraction preferring the majority output (>= 0.5), the alpha to use once y_w is `chosen`.
    """

    alpha: float
    n_votes: int
    majority: int
    alpha_majority: float

    @property
    def is_tie(self) -> bool:
        """True when the raters split evenly (alpha == 0.5); such pairs are excluded from R*."""
        return self.majority == 0


def alpha_from_counts(n_first: int, n_second: int) -> VoteSummary:
    """VoteSummary from vote counts for y1 (n_first) and y2 (n_second), non-negative integers, total >= 1."""
    counts = []
    for name, count in (("n_first", n_first), ("n_second", n_second)):
        try:
            value = operator.index(count)  # ints and numpy integers, not floats or bools
        except TypeError:
            value = -1
        if isinstance(count, bool) or value < 0:
            raise AlignlabError(f"alignlab: {name} must be a non-negative integer vote count, got {count!r}")
        counts.append(value)
    n_first, n_second = counts
    total = n_first + n_second
    if total == 0:
        raise AlignlabError("alignlab: no votes (n_first + n_second == 0); alpha is undefined")
    alpha = Fraction(n_first, total)  # exact, so 2/4 is exactly a tie
    majority = 1 if alpha > Fraction(1, 2) else 2 if alpha < Fraction(1, 2) else 0
    return VoteSummary(float(alpha), total, majority, float(max(alpha, 1 - alpha)))


def alpha_from_votes(votes: Sequence[int]) -> VoteSummary:
    """VoteSummary from raw votes: a list of 1 (y1 preferred) or 2 (y2 preferred), one per rater.

    alpha_from_votes([1, 1, 2, 1]) -> alpha 0.75, n_votes 4, majority 1, alpha_majority 0.75.
    """
    if isinstance(votes, (str, bytes)) or not isinstance(votes, Iterable):
        raise AlignlabError(f"alignlab: votes must be a list of 1 or 2 (one per rater), got {votes!r}")
    votes = list(votes)
    bad = [vote for vote in votes if isinstance(vote, bool) or vote not in (1, 2)]
    if bad:
        raise AlignlabError(
            f"alignlab: vote {bad[0]!r} is not 1 or 2; votes say which output each rater preferred "
            f"(use alpha_from_counts for counts)"
        )
    return alpha_from_counts(sum(vote == 1 for vote in votes), sum(vote == 2 for vote in votes))


def group_votes(
    rows: Iterable[Mapping[str, Any]],
    *,
    keys: tuple[str, str, str] = ("instruction", "output_1", "output_2"),
    vote_field: str = "preference",
) -> dict[tuple[Hashable, ...], VoteSummary]:
    """Group vote rows (one rater each, `vote_field` in {1, 2}) by `keys` (prompt, y1, y2) into VoteSummary's.

    Insertion order is kept. Subsample after grouping, never before (that leaves triples with 1-3 votes).
    """
    grouped: dict[tuple[Hashable, ...], list[int]] = {}
    for index, row in enumerate(rows):
        missing = [key for key in (*keys, vote_field) if key not in row]
        if missing:
            raise DataError(f"alignlab: vote row {index}: field '{missing[0]}' is missing")
        vote = row[vote_field]
        if isinstance(vote, float) and vote.is_integer():
            vote = int(vote)
        if isinstance(vote, bool) or vote not in (1, 2):
            raise DataError(f"alignlab: vote row {index}: field '{vote_field}' is {vote!r}, expected 1 or 2")
        grouped.setdefault(tuple(row[key] for key in keys), []).append(vote)
    return {key: alpha_from_votes(votes) for key, votes in grouped.items()}


def find_alpha_source(fields: Iterable[str]) -> str | None:
    """Which record field gives alpha: 'alpha', 'votes', 'votes_chosen+votes_rejected', or None if none does."""
    fields = set(fields)
    if "alpha" in fields:
        return "alpha"
    if "votes" in fields:
        return "votes"
    if {"votes_chosen", "votes_rejected"} <= fields:
        return "votes_chosen+votes_rejected"
    return None


def require_alpha_source(fields: Iterable[str], *, dataset: str) -> str:
    """Like find_alpha_source, but raise AlignlabError saying why when the dataset has neither alpha nor votes."""
    fields = sorted(fields)
    source = find_alpha_source(fields)
    if source is None:
        raise DataError(
            f"alignlab: dataset {dataset!r} has neither 'alpha' nor annotator votes ('votes', or 'votes_chosen' "
            f"and 'votes_rejected'); fields are {fields}. Idealized ranking accuracy needs the fraction of raters "
            f"preferring each response (alpha = 1 makes Eq. 2 infinite); use a multi-rater dataset such as "
            f"AlpacaFarm cross-annotations"
        )
    return source


def alphas_from_records(records: Sequence[Mapping[str, Any]], *, dataset: str) -> torch.Tensor:
    """alpha for each pair record (fraction preferring `chosen`), float64 [B], from the first record's fields."""
    if not records:
        raise DataError(f"alignlab: dataset {dataset!r} has no records")
    source = require_alpha_source(records[0].keys(), dataset=dataset)
    alphas = []
    for index, record in enumerate(records):
        try:
            if source == "alpha":
                alpha = float(record["alpha"])
                if not 0.0 <= alpha <= 1.0:
                    raise AlignlabError(f"alpha = {alpha} is outside [0, 1]")
            elif source == "votes":
                alpha = alpha_from_votes(record["votes"]).alpha
            else:
                alpha = alpha_from_counts(record["votes_chosen"], record["votes_rejected"]).alpha
        except KeyError as exc:
            raise DataError(
                f"alignlab: dataset {dataset!r} record {index}: field {exc.args[0]!r} is missing"
            ) from None
        except (AlignlabError, TypeError, ValueError) as exc:
            reason = str(exc).removeprefix("alignlab: ")
            raise DataError(f"alignlab: dataset {dataset!r} record {index}: {reason}") from None
        alphas.append(alpha)
    return torch.tensor(alphas, dtype=torch.float64)


__all__ = [
    "ALPHA_FIELDS",
    "VoteSummary",
    "alpha_from_counts",
    "alpha_from_votes",
    "alphas_from_records",
    "find_alpha_source",
    "group_votes",
    "require_alpha_source",
]
