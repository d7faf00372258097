"""CPO (Xu et al. 2024, "Contrastive Preference Optimization", arXiv 2401.08417, Eq. 3 and 5), as TRL 1.16
computes it (trl/experimental/cpo): a reference-free preference term plus a behaviour-cloning NLL on the chosen
responses,

  L = mean_b l_b + cpo_alpha * NLL,      NLL = -sum_b S_c,b / sum_b n_c,b   (token mean over the chosen responses)

with z = S_c - S_r (summed log-probs; per-token means for "ipo" and "simpo") and per pair
  sigmoid  l = -(1-eps) log sigma(beta z) - eps log sigma(-beta z)      (Eq. 3; eps: label smoothing)
  hinge    l = max(0, 1 - beta z)
  ipo      l = (z - 1/(2 beta))^2
  simpo    l as sigmoid with z - simpo_gamma / beta                     (CPO-SimPO)
Inputs are [B]; returns (losses [B], chosen_rewards [B], rejected_rewards [B]) with rewards beta * S (or beta * the
mean for ipo/simpo), detached. Row b carries l_b - cpo_alpha * S_c,b * total_pairs / total_chosen_tokens, so the
caller's sum over rows divided by total_pairs is L: pass the optimizer step's totals (all micro-batches and ranks)
to keep the token mean exact under accumulation, or leave them None for this batch's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOSS_TYPES = ("sigmoid", "hinge", "ipo", "simpo")


def cpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    cpo_alpha: float = 1.0,
    total_chosen_tokens: float | Tensor | None = None,
    total_pairs: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair CPO loss with the chosen NLL folded in (module docstring); all inputs [B], outputs three [B]."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta <= 0 or cpo_alpha < 0 or not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"need beta > 0, cpo_alpha >= 0, label_smoothing in [0, 0.5); got {beta}, {cpo_alpha}, "
                         f"{label_smoothing}")
    if label_smoothing and loss_type in ("hinge", "ipo"):
        raise ValueError(f"label_smoothing does not apply to loss_type '{loss_type}'")
    chosen, rejected = policy_chosen_logps, policy_rejected_logps
    if loss_type in ("ipo", "simpo"):  # TRL averages the log-probs over tokens for these two
        chosen, rejected = chosen / chosen_lengths.clamp(min=1), rejected / rejected_lengths.clamp(min=1)
    z = chosen - rejected
    if loss_type == "simpo":
        z = z - simpo_gamma / beta
    if loss_type == "hinge":
        losses = torch.relu(1 - beta * z)
    elif loss_type == "ipo":
        losses = (z - 1 / (2 * beta)) ** 2
    else:
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * z) - label_smoothing * F.logsigmoid(-beta * z)
    if cpo_alpha:
        tokens = float(chosen_lengths.sum() if total_chosen_tokens is None else total_chosen_tokens)
        pairs = float(chosen.shape[0] if total_pairs is None else total_pairs)
        losses = losses - cpo_alpha * policy_chosen_logps * (pairs / max(tokens, 1.0))
    return losses, beta * chosen.detach(), beta * rejected.detach()


__all__ = ["LOSS_TYPES", "cpo_loss"]
