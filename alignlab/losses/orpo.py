"""ORPO (Hong, Lee, Thorne 2024, arXiv 2403.07691, Eq. 6-8): SFT plus an odds-ratio penalty, no reference model.

With Sbar = S / n (mean token log-prob, so P = exp(Sbar) is the geometric-mean likelihood, Eq. 4) and
odds(y) = P / (1 - P):
  log_odds = (Sbar_w - Sbar_l) - [log(1 - exp(Sbar_w)) - log(1 - exp(Sbar_l))]
  L = NLL_w - lam * log sigma(log_odds)
The NLL term, by `nll_normalization`:
  sequence_mean     NLL_w = -Sbar_w per pair, then the mean over pairs (default). This is the paper's objective:
                    L_SFT is the cross-entropy averaged over the m tokens of the sequence (Sec. 3) and
                    L_ORPO = E_(x, y_w, y_l)[L_SFT + lam L_OR] (Eq. 6), so every pair weighs the same.
  batch_token_mean  -sum_b S_w,b / sum_b n_w,b over the chosen responses of the whole optimizer step: long
                    responses weigh more. TRL 1.16 (experimental ORPO) and the official code (xfactlab/orpo)
                    take a token mean of the chosen NLL over the batch; both also count the prompt tokens
                    (the official code unless --disable_prompt_loss), which alignlab's response-only
                    statistics never do. Row b carries -S_w,b * total_pairs / total_chosen_tokens, so the
                    caller's sum over rows divided by total_pairs is the token mean: pass both totals counted
                    over every micro-batch and rank of the step (gradient accumulation then matches one big
                    batch); left out, they are this batch's own (B and sum_b n_w,b).
log(1 - e^a) is log(-expm1(a)) above -log 2 and log1p(-exp(a)) below it, exact up to a -> 0-, and evaluated
with safe inputs on both branches so neither produces a NaN gradient. Sbar in (-tiny, 0] (tiny = the smallest
normal float; only P == 1 to working precision and subnormals) is taken as -tiny: there log odds is +inf and
its gradient 1 / (1 - P) overflows, while at -tiny both are finite. Computed in float32 or wider. Returns
(losses, chosen_rewards = lam * Sbar_w, rejected_rewards = lam * Sbar_l) like TRL, each [B].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

NLL_NORMALIZATIONS = ("sequence_mean", "batch_token_mean")
_LOG_HALF = -math.log(2.0)


def log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(a)) for a <= 0, exact on both sides of -log 2 (Maechler 2012); -inf at 0; any shape."""
    near_zero = a > _LOG_HALF
    # each branch sees only inputs it is exact and finite on: torch.where sends the unselected branch a zero
    # gradient, and 0 * inf from log1p(-exp(a)) at a -> 0 (or log(-expm1(a)) far below) would be NaN
    hi = torch.where(near_zero, a, torch.full_like(a, _LOG_HALF))
    lo = torch.where(near_zero, torch.full_like(a, _LOG_HALF), a)
    return torch.where(near_zero, torch.log(-torch.expm1(hi)), torch.log1p(-torch.exp(lo)))


def orpo_log_odds(chosen_mean_logps: Tensor, rejected_mean_logps: Tensor) -> Tensor:
    """log odds(y_w) - log odds(y_l) from mean token log-probs [B] -> [B] (float32 or wider)."""
    chosen = chosen_mean_logps.to(torch.promote_types(chosen_mean_logps.dtype, torch.float32))
    rejected = rejected_mean_logps.to(chosen.dtype)
    top = -torch.finfo(chosen.dtype).tiny  # changes only P == 1 and subnormal Sbar (see the module docstring)
    chosen, rejected = chosen.clamp(max=top), rejected.clamp(max=top)
    return (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))


def orpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    *,
    lam: float = 0.1,
    nll_normalization: str = "sequence_mean",
    total_chosen_tokens: float | Tensor | None = None,
    total_pairs: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair ORPO loss (chosen NLL included); all inputs [B], outputs three [B] tensors.

    total_chosen_tokens / total_pairs: batch_token_mean only; the chosen response tokens and the pairs of the
    whole optimizer step (all micro-batches and ranks), the latter being what the caller divides the summed
    rows by.
    """
    if nll_normalization not in NLL_NORMALIZATIONS:
        raise ValueError(f"nll_normalization must be one of {NLL_NORMALIZATIONS}, got {nll_normalization!r}")
    if nll_normalization != "batch_token_mean" and (total_chosen_tokens is not None or total_pairs is not None):
        raise ValueError("total_chosen_tokens / total_pairs apply to nll_normalization 'batch_token_mean' only")
    dtype = torch.promote_types(policy_chosen_logps.dtype, torch.float32)
    chosen_sum, rejected_sum = policy_chosen_logps.to(dtype), policy_rejected_logps.to(dtype)
    chosen_mean = chosen_sum / chosen_lengths.clamp(min=1)
    rejected_mean = rejected_sum / rejected_lengths.clamp(min=1)
    log_odds = orpo_log_odds(chosen_mean, rejected_mean)
    if nll_normalization == "sequence_mean":
        nll = -chosen_mean
    else:
        tokens = float(chosen_lengths.sum() if total_chosen_tokens is None else total_chosen_tokens)
        pairs = float(chosen_sum.shape[0] if total_pairs is None else total_pairs)
        if tokens <= 0 or pairs <= 0:
            raise ValueError(f"total_chosen_tokens and total_pairs must be > 0, got {tokens} and {pairs}")
        nll = -chosen_sum * (pairs / tokens)
    losses = nll - lam * F.logsigmoid(log_odds)
    return losses, lam * chosen_mean.detach(), lam * rejected_mean.detach()


__all__ = ["NLL_NORMALIZATIONS", "log1mexp", "orpo_log_odds", "orpo_loss"]
