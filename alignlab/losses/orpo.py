"""ORPO (Hong, Lee, Thorne 2024, arXiv 2403.07691, Eq. 6-8): SFT plus an odds-ratio penalty, no reference model.

With Sbar = S / n (mean token log-prob, so P = exp(Sbar) is the geometric-mean likelihood) and
odds(y) = P / (1 - P):
  log_odds = (Sbar_w - Sbar_l) - [log(1 - exp(Sbar_w)) - log(1 - exp(Sbar_l))]
  L = NLL_w - lam * log sigma(log_odds),   NLL_w = -Sbar_w (length-averaged, over response tokens)
log(1 - e^a) uses the expm1 / log1p branches, in fp32 or wider; Sbar is clamped strictly below 0 because the
gradient 1 / (1 - P) diverges as P -> 1. Returns (losses, chosen_rewards = lam * Sbar_w,
rejected_rewards = lam * Sbar_l) like TRL, each [B].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

_MAX_MEAN_LOGP = -1e-6


def log1mexp(a: Tensor) -> Tensor:
    """log(1 - exp(a)) for a < 0, stable on both sides of -log 2 (Maechler 2012); any shape."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def orpo_log_odds(chosen_mean_logps: Tensor, rejected_mean_logps: Tensor) -> Tensor:
    """log odds(y_w) - log odds(y_l) from mean token log-probs [B] -> [B]."""
    chosen = chosen_mean_logps.clamp(max=_MAX_MEAN_LOGP)
    rejected = rejected_mean_logps.clamp(max=_MAX_MEAN_LOGP)
    return (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))


def orpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    *,
    lam: float = 0.1,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair ORPO loss (chosen NLL included); all inputs [B], outputs three [B] tensors."""
    chosen_mean = policy_chosen_logps / chosen_lengths.clamp(min=1)
    rejected_mean = policy_rejected_logps / rejected_lengths.clamp(min=1)
    log_odds = orpo_log_odds(chosen_mean, rejected_mean)
    losses = -chosen_mean - lam * F.logsigmoid(log_odds)
    return losses, lam * chosen_mean.detach(), lam * rejected_mean.detach()


__all__ = ["log1mexp", "orpo_log_odds", "orpo_loss"]
