"""DPO (Rafailov et al. 2023, arXiv 2305.18290, Eq. 7), cDPO (label smoothing) and IPO (Azar et al. 2023,
arXiv 2310.12036, Eq. 17).

With h = (S_w - S_ref,w) - (S_l - S_ref,l), the margin of sequence log-ratios:
  sigmoid (DPO):  L = -log sigma(beta h) = softplus(-beta h)
  cDPO (eps>0):   L = (1 - eps) softplus(-beta h) + eps softplus(beta h)
  ipo:            L = (h - 1 / (2 beta))^2           (tau = beta)

Inputs are [B] per-sequence sums of response-token log-probs (for the length-normalised IPO of TRL and the IPO
paper, pass per-token means instead). Returns (losses [B], chosen_rewards [B], rejected_rewards [B]) with the
rewards beta * (S - S_ref), detached. The caller reduces.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

LOSS_TYPES = ("sigmoid", "ipo")


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DPO / cDPO / IPO loss; all inputs [B], outputs three [B] tensors."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if loss_type == "ipo" and label_smoothing:
        raise ValueError("label_smoothing (cDPO) applies to loss_type 'sigmoid' only, not 'ipo'")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_margin = policy_chosen_logps - ref_chosen_logps
    rejected_margin = policy_rejected_logps - ref_rejected_logps
    h = chosen_margin - rejected_margin
    if loss_type == "ipo":
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        losses = (1.0 - label_smoothing) * F.softplus(-beta * h) + label_smoothing * F.softplus(beta * h)
    return losses, beta * chosen_margin.detach(), beta * rejected_margin.detach()


def reference_scaled_dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    gamma: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Reference-scaled DPO (Chen et al. 2024, arXiv 2405.19534, Eq. 4), inputs [B], outputs three [B]:
    L = softplus(-beta [(S_w - S_l) - gamma (S_ref,w - S_ref,l)]); gamma = 1 is DPO, gamma = 0 reference-free."""
    h = (policy_chosen_logps - policy_rejected_logps) - gamma * (ref_chosen_logps - ref_rejected_logps)
    losses = F.softplus(-beta * h)
    chosen_rewards = beta * (policy_chosen_logps - gamma * ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - gamma * ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


__all__ = ["LOSS_TYPES", "dpo_loss", "reference_scaled_dpo_loss"]
