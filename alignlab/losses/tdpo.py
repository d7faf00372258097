"""TDPO1 and TDPO2 (Zeng et al. 2024, "Token-level Direct Preference Optimization", arXiv 2404.11999, Eq. 19-20).

Inputs are [B] per-sequence statistics over response tokens:
  *_logps_margin = sum_t (log pi_theta(y_t) - log pi_ref(y_t))            (Delta)
  *_kl           = sum_t KL(pi_ref(.|s_t) || pi_theta(.|s_t))             (forward SeqKL, ops.sequence_kl "ref||policy")
  TDPO1:  z = (Delta_w - Delta_l) - (K_l - K_w)
  TDPO2:  z = (Delta_w - Delta_l) - alpha (K_l - sg(K_w))
  L = -log sigma(beta z) = softplus(-beta z)
Only the chosen SeqKL is detached in TDPO2: TDPO1 can lower its loss by raising K_w (an anti-regulariser on the
chosen side), which is why the stop-gradient exists. At alpha = 1 TDPO1 and TDPO2 have equal values, not gradients.
Returns (losses, chosen_rewards, rejected_rewards), each [B]; the rewards are those the official code reports,
beta (Delta + K), detached (not DPO's implicit rewards).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

VARIANTS = ("tdpo1", "tdpo2")


def tdpo_loss(
    chosen_logps_margin: Tensor,
    rejected_logps_margin: Tensor,
    chosen_kl: Tensor,
    rejected_kl: Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 0.5,
    variant: str = "tdpo2",
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair TDPO loss; all inputs [B], outputs three [B] tensors."""
    if variant == "tdpo1":
        kl_term = rejected_kl - chosen_kl
    elif variant == "tdpo2":
        kl_term = alpha * (rejected_kl - chosen_kl.detach())
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    z = (chosen_logps_margin - rejected_logps_margin) - kl_term
    losses = -F.logsigmoid(beta * z)  # exact; F.softplus turns linear past 20 (off by up to 2e-9 there)
    chosen_rewards = beta * (chosen_logps_margin + chosen_kl).detach()
    rejected_rewards = beta * (rejected_logps_margin + rejected_kl).detach()
    return losses, chosen_rewards, rejected_rewards


__all__ = ["VARIANTS", "tdpo_loss"]
