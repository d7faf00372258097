"""Token-level statistics from full logits: the plain reference implementation.

Labels follow the Hugging Face convention: aligned with input_ids, logits at position t predict labels[t + 1],
`ignore_index` (-100) marks prompt, template and padding positions. Every function upcasts logits to fp32 and
uses log_softmax (never softmax().log(), which underflows to -inf and gives 0 * -inf = NaN for logit gaps above
~103 in fp32). Sums over positions are accumulated in fp32 (or the input's dtype when wider).

The chunked path in `alignlab.ops.chunked` computes the same statistics from hidden states without ever holding
[B, T, V] logits; tests pin the two together.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

KL_DIRECTIONS = ("ref||policy", "policy||ref")


def _float(logits: Tensor) -> Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()


def shift_labels(labels: Tensor, *, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """labels [B, T] -> (targets [B, T-1] with ignored positions set to 0, mask [B, T-1] bool).

    Position t of the outputs pairs logits[:, t] with labels[:, t + 1]. Ignored labels are replaced by a valid
    dummy index before any gather (indexing with -100 is an error on every device).
    """
    targets = labels[:, 1:]
    mask = targets != ignore_index
    return targets.masked_fill(~mask, 0), mask


def token_logps(logits: Tensor, labels: Tensor, *, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """Per-token log pi(label): logits [B, T, V], labels [B, T] -> (token_logps [B, T-1] zero off-mask, mask [B, T-1])."""
    targets, mask = shift_labels(labels, ignore_index=ignore_index)
    logp = torch.log_softmax(_float(logits[:, :-1]), dim=-1)
    lp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return lp * mask, mask


def sequence_logps(logits: Tensor, labels: Tensor, *, ignore_index: int = -100, average: bool = False) -> Tensor:
    """Sum (or mean, with `average`) over unmasked positions of log pi(label): logits [B, T, V], labels [B, T] -> [B]."""
    lp, mask = token_logps(logits, labels, ignore_index=ignore_index)
    total = lp.sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


def token_kl(policy_logits: Tensor, ref_logits: Tensor, *, direction: str = "ref||policy") -> Tensor:
    """Per-position KL over the full vocabulary: [B, T, V] x 2 -> [B, T].

    "ref||policy" is the forward KL(pi_ref || pi_theta) = sum_v q_v (log q_v - log p_v) that TDPO uses;
    "policy||ref" is the reverse KL(pi_theta || pi_ref).
    """
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"direction must be one of {KL_DIRECTIONS}, got {direction!r}")
    log_p = torch.log_softmax(_float(policy_logits), dim=-1)
    log_q = torch.log_softmax(_float(ref_logits), dim=-1)
    if direction == "ref||policy":
        return F.kl_div(log_p, log_q, reduction="none", log_target=True).sum(-1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)


def sequence_kl(
    policy_logits: Tensor,
    ref_logits: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = -100,
    direction: str = "ref||policy",
) -> Tensor:
    """Sum over unmasked (shifted) positions of the per-position KL: logits [B, T, V] x 2, labels [B, T] -> [B].

    Position t uses the distributions that predict labels[t + 1], the same positions as `sequence_logps`, so the
    first response token's KL conditions on the whole prompt and the last is the EOS position.
    """
    _, mask = shift_labels(labels, ignore_index=ignore_index)
    kl = token_kl(policy_logits[:, :-1], ref_logits[:, :-1], direction=direction)
    return (kl * mask).sum(-1)


def token_entropy(logits: Tensor) -> Tensor:
    """Predictive entropy H = -sum_v p_v log p_v in nats at every position: [B, T, V] -> [B, T]."""
    log_p = torch.log_softmax(_float(logits), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def sequence_entropy(logits: Tensor, labels: Tensor, *, ignore_index: int = -100, average: bool = True) -> Tensor:
    """Mean (or sum) of the predictive entropy over unmasked shifted positions: [B, T, V], [B, T] -> [B]."""
    _, mask = shift_labels(labels, ignore_index=ignore_index)
    ent = (token_entropy(logits[:, :-1]) * mask).sum(-1)
    return ent / mask.sum(-1).clamp(min=1) if average else ent


def response_lengths(labels: Tensor, *, ignore_index: int = -100) -> Tensor:
    """Number of scored (shifted, unmasked) positions per row: labels [B, T] -> [B] long."""
    return (labels[:, 1:] != ignore_index).sum(-1)


__all__ = [
    "KL_DIRECTIONS",
    "response_lengths",
    "sequence_entropy",
    "sequence_kl",
    "sequence_logps",
    "shift_labels",
    "token_entropy",
    "token_kl",
    "token_logps",
]
