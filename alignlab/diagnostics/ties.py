"""Ranking accuracy with ties (Chen et al. 2024, arXiv 2405.19534, App. C.1, Def. C.1).

For a pair (y1, y2) with alpha = fraction of raters preferring y1 and model scores s1, s2:
  alpha == 0.5:  R_ties = 1[ |s1 - s2| < tol ]      (the model must call it a tie too)
  alpha >  0.5:  R_ties = 1[ s1 > s2 ]
  alpha <  0.5:  R_ties = 1[ s1 < s2 ]
The tolerance only means something in a stated score space, so the space is an explicit argument. The paper's code
uses tol = 0.01 on summed log-probs (nats) for R and on 1/perplexity for R~.
"""

from __future__ import annotations

from typing import Any

import torch

from alignlab.diagnostics._inputs import as_float64, as_vector, lengths_pair, positive_float, same_shape
from alignlab.errors import AlignlabError

SCORE_SPACES = ("logprob", "mean_logprob", "prob", "inv_perplexity")
"""logprob: summed log-prob (nats); mean_logprob: per-token mean; prob: exp(summed log-prob);
inv_perplexity: exp(per-token mean), the geometric-mean token probability. The mean_* spaces need lengths."""

_TIE_ATOL = 1e-12


def ranking_accuracy_with_ties(
    first_logps: Any,
    second_logps: Any,
    alpha: Any,
    *,
    space: str,
    tol: float = 0.01,
    first_lengths: Any = None,
    second_lengths: Any = None,
) -> float:
    """R_ties (Def. C.1) over all pairs, tied ones included; inputs [B] (alpha [B] or a scalar, in [0, 1]).

    first_logps, second_logps: summed response log-probs of y1 and y2; alpha: fraction preferring y1.
    space: one of SCORE_SPACES, the space in which `tol` applies; first_lengths / second_lengths are required
    for mean_logprob and inv_perplexity and rejected otherwise.
    """
    if space not in SCORE_SPACES:
        raise AlignlabError(f"space must be one of {SCORE_SPACES}, got {space!r}")
    tol = positive_float(tol, "tol")
    first = as_vector(first_logps, "first_logps")
    second = as_vector(second_logps, "second_logps")
    same_shape(("first_logps", first), ("second_logps", second))
    alpha_tensor = as_float64(alpha, "alpha")
    alpha_values = as_vector(
        alpha_tensor.expand(first.shape) if alpha_tensor.dim() == 0 else alpha_tensor, "alpha"
    )
    same_shape(("first_logps", first), ("alpha", alpha_values))
    if ((alpha_values < 0) | (alpha_values > 1)).any():
        raise AlignlabError("alpha must lie in [0, 1] (the fraction of raters preferring y1)")
    needs_lengths = space in ("mean_logprob", "inv_perplexity")
    lengths = lengths_pair(first_lengths, second_lengths, first, first="first", second="second")
    if needs_lengths and lengths is None:
        raise AlignlabError(f"space {space!r} needs first_lengths and second_lengths")
    if not needs_lengths and lengths is not None:
        raise AlignlabError(
            f"space {space!r} uses summed log-probs; lengths apply to 'mean_logprob' or 'inv_perplexity'"
        )
    if lengths is not None:
        first, second = first / lengths[0], second / lengths[1]
    if space in ("prob", "inv_perplexity"):
        first, second = first.exp(), second.exp()
    tied = (alpha_values - 0.5).abs() <= _TIE_ATOL
    correct = torch.where(
        tied,
        (first - second).abs() < tol,
        torch.where(alpha_values > 0.5, first > second, first < second),
    )
    return correct.double().mean().item()


__all__ = ["SCORE_SPACES", "ranking_accuracy_with_ties"]
