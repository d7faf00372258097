"""SimPO (Meng, Xia, Chen 2024, arXiv 2405.14734, Eq. 6): a reference-free, length-normalised margin loss.

  L = -log sigma(beta S_w / n_w - beta S_l / n_l - gamma) = softplus(gamma - beta (Sbar_w - Sbar_l))
Inputs [B]: policy log-prob sums over response tokens and response token counts. gamma is the absolute margin
(the official config gives gamma / beta = 0.25, i.e. gamma = 0.5 at beta = 2). Returns (losses, chosen_rewards,
rejected_rewards) with rewards beta * Sbar (detached), so SimPO's reward accuracy is the length-normalised
ranking accuracy.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def simpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    chosen_lengths: Tensor,
    rejected_lengths: Tensor,
    *,
    beta: float = 2.0,
    gamma: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair SimPO loss; all inputs [B], outputs three [B] tensors."""
    chosen_mean = policy_chosen_logps / chosen_lengths.clamp(min=1)
    rejected_mean = policy_rejected_logps / rejected_lengths.clamp(min=1)
    # -log sigma exactly: F.softplus turns linear past 20, off by up to 2e-9 there
    losses = -F.logsigmoid(beta * (chosen_mean - rejected_mean) - gamma)
    return losses, beta * chosen_mean.detach(), beta * rejected_mean.detach()


__all__ = ["simpo_loss"]
