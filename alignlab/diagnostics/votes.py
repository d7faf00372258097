"""Rater proportions alpha from annotator votes (Chen et al. 2024, arXiv 2405.19534, App. C.4).

alpha(x, y1, y2) is the fraction of raters preferring y1; the majority response is y_w. Idealized ranking
accuracy needs alpha per pair, so it is defined only for datasets with several raters per pair (AlpacaFarm
cross-annotations: group vote rows by (instruction, output_1, output_2), alpha_1 = #votes for 1 / #votes).
Single-rater data (HH) or aggregate labels (SHP, UltraFeedback) carry no alpha: plugging alpha = 1 into Eq. 2
makes the term infinite, so `require_alpha_source` refuses such data with a reason instead of guessing.

Record conventions. Each record has its own source, so one dataset may mix them:
  pair records (`chosen` / `rejected`):
    alpha            fraction of raters preferring `chosen`, in [0, 1]
    votes            one vote per rater, 1 = `chosen` preferred, 2 = `rejected` preferred
    votes_chosen, votes_rejected    vote counts
  pairs expanded from a ranking record (they carry `pair` = (chosen, rejected) response positions):
    alpha            (2 responses) fraction of raters preferring the better-ranked response
    votes            one count per response, the raters who picked it; the pair's alpha is
                     votes[chosen] / (votes[chosen] + votes[rejected]) (Luce's choice axiom), and NaN
                     (undefined, excluded from R* like a tie) when neither response got a vote
A record without any source is an error naming it, unless no record has one (then alpha is undefined).
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
            raise AlignlabError(f"{name} must be a non-negative integer vote count, got {count!r}")
        counts.append(value)
    n_first, n_second = counts
    total = n_first + n_second
    if total == 0:
        raise AlignlabError("no votes (n_first + n_second == 0); alpha is undefined")
    alpha = Fraction(n_first, total)  # exact, so 2/4 is exactly a tie
    majority = 1 if alpha > Fraction(1, 2) else 2 if alpha < Fraction(1, 2) else 0
    return VoteSummary(float(alpha), total, majority, float(max(alpha, 1 - alpha)))


def alpha_from_votes(votes: Sequence[int]) -> VoteSummary:
    """VoteSummary from raw votes: a list of 1 (y1 preferred) or 2 (y2 preferred), one per rater.

    alpha_from_votes([1, 1, 2, 1]) -> alpha 0.75, n_votes 4, majority 1, alpha_majority 0.75.
    """
    if isinstance(votes, (str, bytes)) or not isinstance(votes, Iterable):
        raise AlignlabError(f"votes must be a list of 1 or 2 (one per rater), got {votes!r}")
    votes = list(votes)
    bad = [vote for vote in votes if isinstance(vote, bool) or vote not in (1, 2)]
    if bad:
        raise AlignlabError(
            f"vote {bad[0]!r} is not 1 or 2; votes say which output each rater preferred "
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
            raise DataError(f"vote row {index}: field '{missing[0]}' is missing")
        vote = row[vote_field]
        if isinstance(vote, float) and vote.is_integer():
            vote = int(vote)
        if isinstance(vote, bool) or vote not in (1, 2):
            raise DataError(f"vote row {index}: field '{vote_field}' is {vote!r}, expected 1 or 2")
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
            f"dataset {dataset!r} has neither 'alpha' nor annotator votes ('votes', or 'votes_chosen' "
            f"and 'votes_rejected'); fields are {fields}. Idealized ranking accuracy needs the fraction of raters "
            f"preferring each response (alpha = 1 makes Eq. 2 infinite); use a multi-rater dataset such as "
            f"AlpacaFarm cross-annotations"
        )
    return source


def record_alpha_source(record: Mapping[str, Any]) -> str | None:
    """The alpha source of one record (find_alpha_source over its fields that are not None)."""
    return find_alpha_source(key for key, value in record.items() if value is not None)


def alpha_from_response_votes(votes: Sequence[int], chosen: int, rejected: int) -> float:
    """alpha of the pair (chosen, rejected) of a ranking from per-response vote counts; NaN when both are 0.

    votes[k] counts the raters who picked response k as the best; by Luce's choice axiom the fraction preferring
    chosen over rejected is votes[chosen] / (votes[chosen] + votes[rejected]). alpha_from_response_votes([0, 0, 5,
    0], 2, 0) -> 1.0; ([3, 0, 2, 0], 0, 2) -> 0.6; ([0, 0, 5, 0], 1, 3) -> nan (no rater compared them).
    """
    if isinstance(votes, (str, bytes)) or not isinstance(votes, Sequence):
        raise AlignlabError(f"votes must be a list of vote counts, one per response, got {votes!r}")
    if not 0 <= min(chosen, rejected) or max(chosen, rejected) >= len(votes):
        raise AlignlabError(
            f"votes has {len(votes)} counts but the pair compares responses {chosen} and {rejected}; give one "
            f"count per response"
        )
    counts = (votes[chosen], votes[rejected])
    if all(type(count) is int and count == 0 for count in counts):
        return float("nan")
    return alpha_from_counts(*counts).alpha  # checks that both are non-negative integers


def _record_where(record: Mapping[str, Any], position: int, dataset: str) -> str:
    where = record.get("where")
    if isinstance(where, str) and where:
        return where
    index = record.get("index", position)
    return f"{dataset} record {index}"


def _record_alpha(record: Mapping[str, Any], source: str) -> float:
    if source == "alpha":
        value = record["alpha"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AlignlabError(f"field 'alpha' is {value!r}, not a number in [0, 1]")
        alpha = float(value)
        if not 0.0 <= alpha <= 1.0:
            raise AlignlabError(f"alpha = {alpha} is outside [0, 1]")
        return alpha
    if source == "votes":
        pair = record.get("pair")
        if pair is not None:  # a pair of a ranking record: one count per response
            chosen, rejected = pair
            return alpha_from_response_votes(record["votes"], chosen, rejected)
        return alpha_from_votes(record["votes"]).alpha
    return alpha_from_counts(record["votes_chosen"], record["votes_rejected"]).alpha


def alphas_from_records(records: Sequence[Mapping[str, Any]], *, dataset: str) -> torch.Tensor:
    """alpha for each pair record (fraction preferring `chosen`), float64 [B], each from its own fields.

    NaN marks a ranking pair whose two responses got no vote (alpha undefined; module docstring). Raises DataError
    when no record has an alpha source (require_alpha_source's reason), or naming the first record without one,
    or the first record whose alpha is invalid.
    """
    if not records:
        raise DataError(f"dataset {dataset!r} has no records")
    sources = [record_alpha_source(record) for record in records]
    if all(source is None for source in sources):
        require_alpha_source((key for key, value in records[0].items() if value is not None), dataset=dataset)
    alphas = []
    for position, (record, source) in enumerate(zip(records, sources)):
        where = _record_where(record, position, dataset)
        if source is None:
            n_with = sum(other is not None for other in sources)
            if record.get("pair") is not None:
                fields = "'alpha' (2 responses) or 'votes' (one count per response)"
            else:
                fields = "'alpha', 'votes' (1 or 2 per rater) or 'votes_chosen' and 'votes_rejected'"
            raise DataError(
                f"{where}: field 'alpha' is missing and no other alpha source is given ({fields}); {n_with} of "
                f"{len(records)} pairs have one, and idealized ranking accuracy needs alpha for every pair"
            )
        try:
            alphas.append(_record_alpha(record, source))
        except (AlignlabError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: {exc}") from None
    return torch.tensor(alphas, dtype=torch.float64)


__all__ = [
    "ALPHA_FIELDS",
    "VoteSummary",
    "alpha_from_counts",
    "alpha_from_response_votes",
    "alpha_from_votes",
    "alphas_from_records",
    "find_alpha_source",
    "group_votes",
    "record_alpha_source",
    "require_alpha_source",
]
