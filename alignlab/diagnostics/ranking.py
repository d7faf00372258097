"""Ranking accuracy, idealized ranking accuracy and the flip threshold (Chen et al. 2024, "Preference Learning
Algorithms Do Not Learn Preference Rankings", arXiv 2405.19534).

Inputs are [B] per-pair statistics: summed response-token log-probs (`*_logps`, nats) and, for the
length-normalised variants, response token counts (`*_lengths`), which turn every log-prob into a per-token mean.

  ranking accuracy (Def. 2.3, strict):   R  = mean 1[ l(y_w) > l(y_l) ]           (R~: l/n instead of l)
  idealized accuracy (Corollary 3.3):     R* = mean 1[ D_ref + logit(alpha) / beta > 0 ],
                                          D_ref = l_ref(y_w) - l_ref(y_l), alpha clipped to [eps, 1 - eps]
  flip threshold (Theorem 4.1):           f(c) = softplus(-beta c), c = l_ref(y_l) - l_ref(y_w);
                                          pi_theta ranks the pair correctly  <=>  L_DPO < f(c)  (strict)
Everything is computed in float64 on CPU.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from alignlab.diagnostics._inputs import as_float64, as_vector, lengths_pair, positive_float, same_shape
from alignlab.errors import AlignlabError

BETA_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 5.0, 10.0)
"""The beta values of the paper's idealized accuracy (beta is unknown for public models)."""

# alpha within this distance of 0.5 is a tie (e.g. 2 of 4 votes); exact in float64 for vote fractions.
_TIE_ATOL = 1e-12


def _scores(logps: Tensor, lengths: Tensor | None) -> Tensor:
    return logps if lengths is None else logps / lengths


def ranking_correct(
    chosen_logps: Any,
    rejected_logps: Any,
    *,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
    strict: bool = True,
) -> Tensor:
    """Per-pair ranking correctness, bool [B]: 1[score(chosen) > score(rejected)] (>= when strict=False).

    chosen_logps, rejected_logps: [B] summed log-probs; with chosen_lengths, rejected_lengths ([B], > 0) the
    scores are per-token means (Remark 2.4, the length-normalised R~).
    """
    chosen = as_vector(chosen_logps, "chosen_logps")
    rejected = as_vector(rejected_logps, "rejected_logps")
    same_shape(("chosen_logps", chosen), ("rejected_logps", rejected))
    lengths = lengths_pair(chosen_lengths, rejected_lengths, chosen)
    chosen = _scores(chosen, None if lengths is None else lengths[0])
    rejected = _scores(rejected, None if lengths is None else lengths[1])
    return chosen > rejected if strict else chosen >= rejected


def ranking_accuracy(
    chosen_logps: Any,
    rejected_logps: Any,
    *,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
    strict: bool = True,
) -> float:
    """Fraction of pairs whose chosen response scores above the rejected one (Def. 2.3); inputs [B].

    Ties count as wrong (strict=True, what the paper's proofs and code use); strict=False counts them right,
    the literal >= of Def. 2.3. With both length tensors ([B] token counts) it is the length-normalised R~.
    """
    return (
        ranking_correct(
            chosen_logps,
            rejected_logps,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
            strict=strict,
        )
        .double()
        .mean()
        .item()
    )


def _alpha_vector(alpha: Any, batch: Tensor) -> Tensor:
    values = as_float64(alpha, "alpha")
    if values.dim() == 0:  # one alpha for every pair
        values = values.expand(batch.shape)
    values = as_vector(values, "alpha")
    same_shape(("ref_chosen_logps", batch), ("alpha", values))
    bad = (values < 0) | (values > 1)
    if bad.any():
        index = int(bad.nonzero()[0])
        raise AlignlabError(
            f"alpha[{index}] = {values[index].item()}; alpha is the fraction of raters preferring "
            f"the chosen response and must lie in [0, 1]"
        )
    return values


def idealized_ranking_correct(
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    alpha: Any,
    *,
    beta: float,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
    eps: float = 1e-3,
) -> tuple[Tensor, Tensor]:
    """Per-pair idealized correctness (Corollary 3.3): returns (correct bool [B], kept bool [B]).

    ref_*_logps: [B] summed log-probs of the reference model; alpha: [B] or a scalar, the fraction of raters
    preferring the chosen response, clipped to [eps, 1 - eps] (symmetric; ln(999)/beta for unanimous votes).
    A pair is correct iff the DPO/RLHF optimum ranks chosen above rejected (Eq. 2):
    D_ref + logit(alpha) / beta > 0 (strict). Pairs with alpha == 0.5 have no majority: kept[i] is False and
    correct[i] is False. With lengths, D_ref uses per-token means (R~*). Orient pairs so that chosen is the
    majority (alpha > 0.5, see votes.alpha_from_votes); alpha < 0.5 means the labels disagree with the raters
    and the pair is scored against the labels, as ranking_accuracy does.
    """
    ref_chosen = as_vector(ref_chosen_logps, "ref_chosen_logps")
    ref_rejected = as_vector(ref_rejected_logps, "ref_rejected_logps")
    same_shape(("ref_chosen_logps", ref_chosen), ("ref_rejected_logps", ref_rejected))
    alpha_values = _alpha_vector(alpha, ref_chosen)
    beta = positive_float(beta, "beta")
    eps = positive_float(eps, "eps")
    if eps >= 0.5:
        raise AlignlabError(f"eps must be in (0, 0.5), got {eps}; it clips alpha to [eps, 1 - eps]")
    lengths = lengths_pair(chosen_lengths, rejected_lengths, ref_chosen)
    ref_logratio = _scores(ref_chosen, None if lengths is None else lengths[0]) - _scores(
        ref_rejected, None if lengths is None else lengths[1]
    )
    if torch.isnan(ref_logratio).any():
        index = int(torch.isnan(ref_logratio).nonzero()[0])
        raise AlignlabError(
            f"pair {index}: both reference log-probs are -inf; the log-ratio is undefined"
        )
    clipped = alpha_values.clamp(eps, 1.0 - eps)
    condition = ref_logratio + torch.logit(clipped) / beta
    kept = (alpha_values - 0.5).abs() > _TIE_ATOL
    return (condition > 0) & kept, kept


def idealized_ranking_accuracy(
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    alpha: Any,
    *,
    beta: float,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
    eps: float = 1e-3,
) -> float:
    """Idealized ranking accuracy R* (Corollary 3.3) over the pairs with alpha != 0.5; inputs [B].

    The accuracy a perfectly optimised DPO/RLHF model (Theorem 3.1, under Bradley-Terry with alpha the true
    preference probability) would reach from this reference at this beta. See idealized_ranking_correct for
    the convention; raises AlignlabError when every pair is tied (alpha == 0.5) because no pair is left.
    """
    correct, kept = idealized_ranking_correct(
        ref_chosen_logps,
        ref_rejected_logps,
        alpha,
        beta=beta,
        chosen_lengths=chosen_lengths,
        rejected_lengths=rejected_lengths,
        eps=eps,
    )
    if not kept.any():
        raise AlignlabError(
            f"all {kept.numel()} pairs are tied (alpha == 0.5), so no pair is left to score; "
            f"idealized ranking accuracy needs pairs with a majority preference"
        )
    return correct[kept].double().mean().item()


def flip_threshold(ref_chosen_logps: Any, ref_rejected_logps: Any, *, beta: float) -> Tensor:
    """Theorem 4.1: the DPO loss a pair must go below for pi_theta to rank it correctly; float64 [B].

    f(c) = softplus(-beta c) = log(1 + exp(-beta c)) with c = ref_rejected - ref_chosen (c > 0: the reference
    ranks the pair wrongly). Since L_DPO = softplus(-beta (m + c)) with m = policy_chosen - policy_rejected and
    softplus is increasing: m > 0 <=> L_DPO < f(c), and m >= 0 <=> L_DPO <= f(c).
    """
    ref_chosen = as_vector(ref_chosen_logps, "ref_chosen_logps")
    ref_rejected = as_vector(ref_rejected_logps, "ref_rejected_logps")
    same_shape(("ref_chosen_logps", ref_chosen), ("ref_rejected_logps", ref_rejected))
    beta = positive_float(beta, "beta")
    c = ref_rejected - ref_chosen
    # logaddexp(0, x) is softplus without torch's linear cut-over at x > 20, exact to float64 rounding.
    return torch.logaddexp(torch.zeros_like(c), -beta * c)


@dataclass(frozen=True)
class GapSummary:
    """One variant (raw R or length-normalised R~) of the alignment gap; accuracies are fractions in [0, 1]."""

    observed: float
    idealized_by_beta: dict[float, float]
    idealized_min: float
    idealized_median: float
    idealized_max: float
    gap_min: float  # idealized_min - observed
    gap_median: float  # idealized_median - observed: the paper's headline gap
    gap_max: float  # idealized_max - observed


@dataclass(frozen=True)
class AlignmentGap:
    """Idealized minus observed ranking accuracy over a beta grid (Table 1); `normalized` is None without lengths."""

    betas: tuple[float, ...]
    eps: float
    n_pairs: int  # pairs scored (alpha != 0.5)
    n_tied_excluded: int  # pairs dropped because alpha == 0.5
    raw: GapSummary
    normalized: GapSummary | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (beta keys become strings)."""
        out = asdict(self)
        out["betas"] = list(self.betas)
        for variant in ("raw", "normalized"):
            if out[variant] is not None:
                out[variant]["idealized_by_beta"] = {
                    repr(float(beta)): acc for beta, acc in out[variant]["idealized_by_beta"].items()
                }
        return out


def _gap_summary(observed: float, idealized: dict[float, float]) -> GapSummary:
    values = list(idealized.values())
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return GapSummary(observed, idealized, lo, mid, hi, lo - observed, mid - observed, hi - observed)


def alignment_gap(
    policy_chosen_logps: Any,
    policy_rejected_logps: Any,
    ref_chosen_logps: Any,
    ref_rejected_logps: Any,
    alpha: Any,
    *,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
    betas: tuple[float, ...] = BETA_GRID,
    eps: float = 1e-3,
) -> AlignmentGap:
    """Alignment gap of a preference-tuned policy: idealized R* (from the reference) minus observed R.

    All inputs [B] (alpha may be a scalar). Pairs with alpha == 0.5 are excluded from both sides, as in the
    paper's Table 1. R* is computed at every beta in `betas` and summarised as min / median / max; the gaps are
    those minus the observed accuracy. With chosen_lengths and rejected_lengths the length-normalised variant
    (R~, R~*) is reported as well, using the same lengths for policy and reference.
    """
    if not betas:
        raise AlignlabError("betas is empty; pass at least one beta (default BETA_GRID)")
    betas = tuple(positive_float(beta, "beta") for beta in betas)
    if len(set(betas)) != len(betas):
        raise AlignlabError(f"betas {list(betas)} has repeated values; each beta counts once")
    policy_chosen = as_vector(policy_chosen_logps, "policy_chosen_logps")
    policy_rejected = as_vector(policy_rejected_logps, "policy_rejected_logps")
    ref_chosen = as_vector(ref_chosen_logps, "ref_chosen_logps")
    same_shape(
        ("policy_chosen_logps", policy_chosen),
        ("policy_rejected_logps", policy_rejected),
        ("ref_chosen_logps", ref_chosen),
    )
    variants: dict[str, GapSummary | None] = {"raw": None, "normalized": None}
    kept = None
    for variant, lengths in (("raw", (None, None)), ("normalized", (chosen_lengths, rejected_lengths))):
        if variant == "normalized" and chosen_lengths is None and rejected_lengths is None:
            continue
        idealized = {}
        for beta in betas:
            correct, kept = idealized_ranking_correct(
                ref_chosen,
                ref_rejected_logps,
                alpha,
                beta=beta,
                chosen_lengths=lengths[0],
                rejected_lengths=lengths[1],
                eps=eps,
            )
            if not kept.any():
                raise AlignlabError(
                    f"all {kept.numel()} pairs are tied (alpha == 0.5), so no pair is left to score"
                )
            idealized[beta] = correct[kept].double().mean().item()
        observed = ranking_correct(
            policy_chosen, policy_rejected, chosen_lengths=lengths[0], rejected_lengths=lengths[1]
        )
        variants[variant] = _gap_summary(observed[kept].double().mean().item(), idealized)
    assert kept is not None and variants["raw"] is not None
    n_pairs = int(kept.sum())
    return AlignmentGap(
        betas, float(eps), n_pairs, kept.numel() - n_pairs, variants["raw"], variants["normalized"]
    )


__all__ = [
    "BETA_GRID",
    "AlignmentGap",
    "GapSummary",
    "alignment_gap",
    "flip_threshold",
    "idealized_ranking_accuracy",
    "idealized_ranking_correct",
    "ranking_accuracy",
    "ranking_correct",
]
