"""f-DPO (Wang et al. 2024, "Beyond Reverse KL", arXiv 2309.16240, Theorem 1 / Table 1).

The optimum of max E[r] - beta D_f(pi || pi_ref) has r = beta f'(u) + const with u = pi / pi_ref = exp(r_seq), so
  L = -log sigma(beta [f'(u_w) - f'(u_l)]),     r_w = S_w - S_ref,w,  r_l = S_l - S_ref,l
with the bracket per divergence:
  reverse_kl  r_w - r_l                                     (== DPO)
  forward_kl  exp(-r_l) - exp(-r_w)
  js          log sigma(r_w) - log sigma(r_l)               (f'(u) = log(2u / (1 + u)) = log 2 + log sigma(r))
  alpha       (exp(-alpha r_l) - exp(-alpha r_w)) / alpha   (alpha in (0, 1); -> reverse_kl as alpha -> 0)

Long responses reach log-ratios of hundreds of nats, where exp(-a r) (a = 1 for forward_kl) overflows although
the loss may not: it depends on the pair only through x = beta [exp(A) - exp(B)] / a, A = -a r_l, B = -a r_w.
forward_kl and alpha therefore compute x as sign * exp(log(beta / a) + max(A, B) + log(1 - exp(-|A - B|))), and
the gradients dL/dr_w = -beta exp(B) sigma(-x), dL/dr_l = beta exp(A) sigma(-x) in log space as well, with the
incoming gradient folded in before the exp. Loss and gradients are then finite and exact to rounding wherever
their true value is representable, never NaN, and +-inf (with the right sign) only where the true value is
not representable (e.g. dL/dr_w = -beta exp(100) / 2 at r_w = r_l = -200, alpha = 0.5). Capping the exponent
instead (log(float32 max)) makes the loss NaN (inf - inf) or flat with zero gradient past the cap.
Everything is computed in float32 or wider (bf16 / fp16 inputs are upcast; float64 stays float64).
Inputs [B]; returns (losses, chosen_rewards = beta f'(u_w), rejected_rewards = beta f'(u_l)), each [B]. The
reported rewards drop f''s additive constant and overflow to -inf where beta f'(u) is not representable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


def _working(t: Tensor) -> Tensor:
    # exp / log1p of bf16 or fp16 log-ratios lose the digits that the cancellations below rely on
    return t.to(torch.promote_types(t.dtype, torch.float32))


def f_prime(r: Tensor, divergence: str, alpha: float = 0.5) -> Tensor:
    """f'(u) at u = exp(r), up to the additive constant that cancels in the pair difference; r: any shape."""
    r = _working(r)
    if divergence == "reverse_kl":
        return r
    if divergence == "forward_kl":
        return -torch.exp(-r)
    if divergence == "js":
        return F.logsigmoid(r)  # log(2u/(1+u)) - log 2; exact, unlike -softplus(-r) (linear past 20)
    if divergence == "alpha":
        return -torch.exp(-alpha * r - math.log(alpha))  # one exp: no overflow from dividing by alpha after it
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


class _ExpBracketLoss(torch.autograd.Function):
    """-log sigma(x), x = beta (exp(-a r_l) - exp(-a r_w)) / a, with value and gradients in log space.

    A custom backward because autograd through any factorisation of x meets 0 * inf where the common scale
    exp(max(A, B)) overflows and the difference vanishes (r_w = r_l far below 0), giving NaN gradients.
    """

    @staticmethod
    def forward(ctx, r_w: Tensor, r_l: Tensor, beta: float, a: float) -> Tensor:
        big_a, big_b = -a * r_l, -a * r_w
        delta = a * (r_w - r_l)  # A - B from the difference of inputs: no cancellation of two rounded products
        # |exp(A) - exp(B)| = exp(max(A, B)) * (1 - exp(-|A - B|)): expm1 keeps the small-difference digits
        scale = math.log(beta / a) + torch.maximum(big_a, big_b)
        mag = -torch.expm1(-delta.abs())
        # one rounding less while exp(scale) is finite (kept 2 below the overflow point so it surely is)
        safe = math.log(torch.finfo(r_w.dtype).max) - 2.0
        direct = torch.exp(scale.clamp(max=safe)) * mag
        x = torch.sign(delta) * torch.where(scale <= safe, direct, torch.exp(scale + torch.log(mag)))
        ctx.save_for_backward(big_a, big_b, x)
        ctx.log_beta = math.log(beta)
        return -F.logsigmoid(x)  # +inf only where x < -max: the true loss ~ -x is not representable either

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        big_a, big_b, x = ctx.saved_tensors
        # |grad| * beta * exp(A or B) * sigma(-x) in one exp: finite wherever the product is representable;
        # log sigma(-x) = -inf where x = +inf (the loss is 0 and flat), and grad = 0 gives 0, not 0 * inf
        log_common = torch.log(grad.abs()) + ctx.log_beta + F.logsigmoid(-x)
        sign = torch.sign(grad)
        grad_w = -sign * torch.exp(log_common + big_b) if ctx.needs_input_grad[0] else None
        grad_l = sign * torch.exp(log_common + big_a) if ctx.needs_input_grad[1] else None
        return grad_w, grad_l, None, None


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
    """Per-pair f-DPO loss; inputs [B] sequence log-prob sums, outputs three [B] tensors (float32 or wider)."""
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")
    if divergence == "alpha" and not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1) for the alpha-divergence, got {alpha}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    r_w = _working(policy_chosen_logps) - _working(ref_chosen_logps)
    r_l = _working(policy_rejected_logps) - _working(ref_rejected_logps)
    if divergence == "reverse_kl":
        losses = -F.logsigmoid(beta * (r_w - r_l))
    elif divergence == "js":
        losses = -F.logsigmoid(beta * (F.logsigmoid(r_w) - F.logsigmoid(r_l)))
    else:
        losses = _ExpBracketLoss.apply(r_w, r_l, beta, 1.0 if divergence == "forward_kl" else alpha)
    f_chosen = f_prime(r_w.detach(), divergence, alpha)
    f_rejected = f_prime(r_l.detach(), divergence, alpha)
    return losses, beta * f_chosen, beta * f_rejected


__all__ = ["DIVERGENCES", "f_prime", "fdpo_loss"]
