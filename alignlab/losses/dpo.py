"""DPO (Rafailov et al. 2023, arXiv 2305.18290, Eq. 7), cDPO (label smoothing), IPO (Azar et al. 2023,
arXiv 2310.12036, Eq. 17), RPO (Pang et al. 2024, arXiv 2404.19733; TRL's paper index also files Liu et al.,
arXiv 2405.16436, as sigmoid + sft) and the other TRL 1.16 loss types.

With h = (S_c - S_ref,c) - (S_r - S_ref,r), the margin of sequence log-ratios:
  sigmoid (DPO):  L = -log sigma(beta h)
  cDPO (eps>0):   L = -(1 - eps) log sigma(beta h) - eps log sigma(-beta h)
  ipo:            L = (h - 1 / (2 beta))^2     (tau = beta; h per token when lengths are given, as TRL)
  + rpo_alpha:    L + alpha sum_b NLL_c,b / sum_b n_c,b   (TRL's chosen-token mean of the batch, every b)
All fifteen TRL loss types (hinge, exo_pair, nca_pair, robust, bco_pair, sppo_hard, aot, aot_unpaired,
apo_zero, apo_down, discopop, sigmoid_norm, sft, ...) are tabulated in dpo_variants.py, one line each.

Inputs are [B] per-sequence sums of response-token log-probs. Returns (losses [B], chosen_rewards [B],
rejected_rewards [B]), the rewards beta * (S - S_ref), detached, for every loss type (as TRL reports them).
The caller reduces (TRL takes the batch mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor

from alignlab.losses.dpo_variants import (
    LABEL_SMOOTHED,
    LOSS_FUNCTIONS,
    LOSS_TYPES,
    NEEDS_BOTH_LENGTHS,
    NEEDS_CHOSEN_LENGTHS,
    NEEDS_LABEL_SMOOTHING,
    READS_LENGTHS_IF_GIVEN,
    VariantInputs,
)


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: str | Sequence[str] = "sigmoid",
    loss_weights: Sequence[float] | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    chosen_nll: Tensor | None = None,
    discopop_tau: float = 0.05,
    bco_delta: float | Tensor = 0.0,
    rpo_alpha: float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DPO-family loss; all inputs [B], outputs three [B] tensors.

    loss_type: one of LOSS_TYPES, or a list of them whose per-example losses are summed with loss_weights
      (same length, default all 1.0), as TRL's list: TRL's loss sum_k w_k mean_b L_k,b is the mean of ours.
    label_smoothing: eps in [0, 0.5), read by sigmoid (cDPO), robust, aot, aot_unpaired, exo_pair (needs > 0).
    chosen_lengths, rejected_lengths: [B] completion token counts. sigmoid_norm needs both; sft and rpo_alpha
      the chosen ones; ipo divides the log-ratios by them when given (TRL's IPO), else takes them as they are.
    chosen_nll: [B] summed NLL of the chosen tokens for sft and rpo_alpha; default -policy_chosen_logps.
    discopop_tau: discopop's temperature (TRL's default). bco_delta: bco_pair's reward shift (TRL 1.16: 0;
      dpo_variants.BCORewardMean gives the running mean of TRL <= 0.2x).
    rpo_alpha: adds alpha times the sft term (TRL <= 0.2x's rpo_alpha; TRL 1.16 writes the same loss as
      loss_type ["sigmoid", "sft"], loss_weights [1, alpha]).
    """
    loss_types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    weights = _checked_weights(loss_types, loss_weights)
    kinds = set(loss_types)
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if label_smoothing and not kinds & set(LABEL_SMOOTHED):
        raise ValueError(f"label_smoothing applies to loss types {LABEL_SMOOTHED} only, not {loss_types}")
    if not label_smoothing and kinds & set(NEEDS_LABEL_SMOOTHING):
        raise ValueError(f"loss types {NEEDS_LABEL_SMOOTHING} need label_smoothing > 0 (EXO recommends 1e-3)")
    if not discopop_tau > 0:
        raise ValueError(f"discopop_tau must be > 0, got {discopop_tau}")
    if rpo_alpha is not None and not math.isfinite(rpo_alpha):
        raise ValueError(f"rpo_alpha must be a finite number or None, got {rpo_alpha}")
    any_lengths = chosen_lengths is not None or rejected_lengths is not None
    if (kinds & set(NEEDS_BOTH_LENGTHS) or kinds & set(READS_LENGTHS_IF_GIVEN) and any_lengths) and (
            chosen_lengths is None or rejected_lengths is None):
        raise ValueError(f"loss_type {loss_types} needs both chosen_lengths and rejected_lengths (counts)")
    if (kinds & set(NEEDS_CHOSEN_LENGTHS) or rpo_alpha is not None) and chosen_lengths is None:
        raise ValueError(f"loss types {NEEDS_CHOSEN_LENGTHS} and rpo_alpha need chosen_lengths (counts)")

    x = VariantInputs(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                      beta=beta, label_smoothing=label_smoothing, discopop_tau=discopop_tau,
                      bco_delta=bco_delta, chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                      chosen_nll=chosen_nll)
    losses = weights[0] * LOSS_FUNCTIONS[loss_types[0]](x)
    for name, weight in zip(loss_types[1:], weights[1:], strict=True):
        losses = losses + weight * LOSS_FUNCTIONS[name](x)
    if rpo_alpha is not None:
        losses = losses + rpo_alpha * LOSS_FUNCTIONS["sft"](x)
    return losses, beta * x.chosen_logratios.detach(), beta * x.rejected_logratios.detach()


def _checked_weights(loss_types: list[str], loss_weights: Sequence[float] | None) -> list[float]:
    if not loss_types:
        raise ValueError(f"loss_type must name at least one of {LOSS_TYPES}")
    unknown = [name for name in loss_types if name not in LOSS_FUNCTIONS]
    if unknown:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {unknown[0]!r}")
    if loss_weights is None:
        return [1.0] * len(loss_types)
    weights = [float(w) for w in loss_weights]
    if len(weights) != len(loss_types):
        raise ValueError(f"loss_weights has {len(weights)} entries, loss_type {loss_types} {len(loss_types)}")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"loss_weights must be finite numbers, got {weights}")
    return weights


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
    losses = -F.logsigmoid(beta * h)  # exact; F.softplus turns linear past 20 (off by up to 2e-9 there)
    chosen_rewards = beta * (policy_chosen_logps - gamma * ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - gamma * ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


__all__ = ["LOSS_TYPES", "dpo_loss", "reference_scaled_dpo_loss"]
