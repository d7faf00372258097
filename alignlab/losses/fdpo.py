"""f-DPO (Wang et al. 2024, "Beyond Reverse KL", arXiv 2309.16240, Theorem 1 / Table 1).

The optimum of max E[r] - beta D_f(pi || pi_ref) has r = beta f'(u) + const with u = pi / pi_ref = exp(r_seq), so
  L = -log sigma(beta [f'(u_w) - f'(u_l)]),     r_w = S_w - S_ref,w,  r_l = S_l - S_ref,l
with the bracket per divergence:
  reverse_kl  r_w - r_l                                     (== DPO)
  forward_kl  exp(-r_l) - exp(-r_w)
  js          softplus(-r_l) - softplus(-r_w)               (f'(u) = log(2u / (1 + u)))
  alpha       (exp(-alpha r_l) - exp(-alpha r_w)) / alpha   (alpha in (0, 1); -> reverse_kl as alpha -> 0)

exp(-r) overflows for the hundreds of nats long responses reach, so its exponent is capped at log(float32 max).
Inputs [B]; returns (losses, chosen_rewards = beta f'(u_w), rejected_rewards = beta f'(u_l)), each [B].
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")
_MAX_EXP = 88.72  # log(float32 max): the cap TRL uses too


def _exp_neg(r: Tensor, scale: float = 1.0) -> Tensor:
    return (-scale * r).clamp(max=_MAX_EXP).exp()


def f_prime(r: Tensor, divergence: str, alpha: float = 0.5) -> Tensor:
    """f'(u) at u = exp(r), up to the additive constant that cancels in the pair difference; r: any shape."""
    if divergence == "reverse_kl":
        return r
    if divergence == "forward_kl":
        return -_exp_neg(r)
    if divergence == "js":
        return -F.softplus(-r)  # log(2u/(1+u)) = log 2 - softplus(-r)
    if divergence == "alpha":
        return -_exp_neg(r, alpha) / alpha
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


def fdpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    divergence: str = "forward_kl",
    alpha: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair f-DPO loss; inputs [B] sequence log-prob sums, outputs three [B] tensors."""
    if divergence == "alpha" and not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) for the alpha-divergence, got {alpha}")
    f_chosen = f_prime(policy_chosen_logps - ref_chosen_logps, divergence, alpha)
    f_rejected = f_prime(policy_rejected_logps - ref_rejected_logps, divergence, alpha)
    losses = F.softplus(-beta * (f_chosen - f_rejected))
    return losses, beta * f_chosen.detach(), beta * f_rejected.detach()


__all__ = ["DIVERGENCES", "f_prime", "fdpo_loss"]
