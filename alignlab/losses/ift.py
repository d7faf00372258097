"""IFT loss (Hua et al., "Intuitive Fine-Tuning", arXiv 2405.11870, §3.3 and the official code's `ift` loss).

Dynamic relation propagation: each response token's NLL l_t is weighted by the discounted sum of the losses still
ahead of it, over absolute positions (masked gaps between assistant turns count in the discount, their l is 0):
  S_t = sum_{k >= t} gamma^(k - t) l_k           (0 where masked)
  L_seq = sum_t l_t S_t / sum_t S_t              (a loss-weighted mean; early tokens weigh more)
gamma == 0 is special-cased to the per-sequence mean NLL, as in the official code (gamma -> 0+ gives
sum l^2 / sum l instead: a deliberate discontinuity). The gradient flows through the weights unless
`detach_weights` (the official code does not detach). The paper's Eq. 21 read literally weights later tokens
more; alignlab follows the code (its official implementation, TsinghuaC3I/Intuitive-Fine-Tuning). The temporal-residual input mix lives in the trainer.
"""

from __future__ import annotations

import torch
from torch import Tensor


def future_discounted_sum(x: Tensor, gamma: float) -> Tensor:
    """S_t = sum_{k >= t} gamma^(k - t) x_k along the last dim; x [B, T] -> [B, T].

    The reverse scan S_t = x_t + gamma S_{t+1} would be T Python steps; one matmul with the upper-triangular
    G[t, k] = gamma^(k - t) (k >= t) is faster at the lengths trained here ([T, T] floats: 4 MiB at T = 1024).
    """
    t = x.shape[-1]
    idx = torch.arange(t, device=x.device)
    expo = (idx[None, :] - idx[:, None]).to(x.dtype)  # [T, T]: k - t
    g = torch.where(expo >= 0, torch.pow(torch.tensor(gamma, dtype=x.dtype, device=x.device), expo.clamp(min=0)),
                    torch.zeros((), dtype=x.dtype, device=x.device))
    return x @ g.transpose(0, 1)


def ift_loss(token_logps: Tensor, loss_mask: Tensor, *, gamma: float = 0.95, detach_weights: bool = False) -> Tensor:
    """Per-sequence IFT loss [B] from aligned (already shifted) `token_logps` [B, T] and `loss_mask` [B, T]."""
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    mask = loss_mask.to(token_logps.dtype)
    losses = -token_logps * mask
    n = mask.sum(-1).clamp(min=1)
    if gamma == 0.0:
        return losses.sum(-1) / n
    weights = future_discounted_sum(losses, gamma) * mask
    if detach_weights:
        weights = weights.detach()
    # Sequences whose loss is exactly 0 everywhere have sum S = 0: their loss is 0 (the mean NLL), not 0/0.
    denom = weights.sum(-1)
    safe = denom > 0
    return torch.where(safe, (losses * weights).sum(-1) / torch.where(safe, denom, torch.ones_like(denom)),
                       losses.sum(-1) / n)


__all__ = ["future_discounted_sum", "ift_loss"]
