"""KTO (Ethayarajh et al. 2024, arXiv 2402.01306, Eq. 7-8) and TRL 1.16's unpaired APO-zero (D'Oosterlinck et
al. 2024, arXiv 2408.06266, Eq. 7), exactly as TRL 1.16's KTOTrainer computes them.

With r = S - S_ref, the sequence log-ratio of one completion (S: summed completion-token log-probs), and z0 the
reference point (``kto_reference_point``):
  kto                desirable:   L = w_D (1 - sigma(beta (r - z0)))
                     undesirable: L = w_U (1 - sigma(beta (z0 - r)))
  apo_zero_unpaired  desirable:   L = w_D (1 - sigma(beta r))
                     undesirable: L = w_U sigma(beta r)           (no reference point)
  z0 = max(0, mean_b (S_kl,b - S_ref_kl,b)), over the batch's mismatched KL completions (prompt b with another
  example's completion), detached: the paper's estimate of KL(pi_theta || pi_ref) at the batch's prompts.
TRL's loss is the mean over the B examples of the weighted losses (desirable and undesirable concatenated, so
the order does not matter; ``nanmean``, equal to the mean when nothing is NaN): the mean of ``losses`` here.

Inputs are [B] per-sequence sums of completion-token log-probs; ``labels`` [B] bool (True = desirable).
Returns (losses [B], rewards [B]) in batch order; rewards = beta * r, detached (TRL's chosen_rewards on the
desirable rows, rejected_rewards on the undesirable ones). The caller reduces.

TRL 1.16 defaults (KTOConfig):
  loss_type "kto" | beta 0.1 | desirable_weight 1.0 | undesirable_weight 1.0 | max_length 1024 |
  learning_rate 1e-6 | train_sampling_strategy "sequential" (the KL pairing needs a fixed batch order) |
  per_device_train_batch_size > 1 for "kto" (a batch of one is its own KL completion)
Eq. 8's advice for imbalanced data: w_D n_D / (w_U n_U) in [1, 1.33] (TRL warns outside it: ``kto_weight_range``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

KTO_LOSS_TYPES = ("kto", "apo_zero_unpaired")


def kto_reference_point(
    policy_kl_logps: Tensor,
    ref_kl_logps: Tensor,
    *,
    all_reduce_mean: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """KTO's reference point z0 (a 0-dim tensor, detached), from [B] summed log-probs of the mismatched KL
    completions under the policy and the reference: clamp(mean_b(policy - ref), min=0).

    Several processes: TRL averages the per-process batch means (``gather_for_metrics(kl).mean()``) and clamps
    after that. Pass ``all_reduce_mean``, a function from this process's mean to the mean over processes (e.g.
    ``dist.all_reduce(x); x / world_size``), so the clamp comes after the average, as in TRL.
    """
    if policy_kl_logps.ndim != 1 or policy_kl_logps.shape != ref_kl_logps.shape or policy_kl_logps.numel() == 0:
        raise ValueError(
            "policy_kl_logps and ref_kl_logps must be non-empty [B] tensors of one shape, got "
            f"{tuple(policy_kl_logps.shape)} and {tuple(ref_kl_logps.shape)}"
        )
    kl = (policy_kl_logps - ref_kl_logps).mean().detach()
    if all_reduce_mean is not None:
        kl = all_reduce_mean(kl)
    return kl.clamp(min=0)


def kto_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    labels: Tensor,
    kl: Tensor | None,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    loss_type: str = "kto",
) -> tuple[Tensor, Tensor]:
    """Per-example KTO losses; policy_logps, ref_logps [B] float, labels [B] bool, kl a 0-dim (or one-element)
    reference point z0 from ``kto_reference_point`` (None allowed for apo_zero_unpaired, which has none).
    Returns (losses [B], rewards [B]); TRL's loss is ``losses.mean()``."""
    if loss_type not in KTO_LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {KTO_LOSS_TYPES}, got {loss_type!r}")
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    for name, w in (("desirable_weight", desirable_weight), ("undesirable_weight", undesirable_weight)):
        if not (isinstance(w, (int, float)) and w >= 0 and w != float("inf")):
            raise ValueError(f"{name} must be a finite number >= 0, got {w!r}")
    if policy_logps.ndim != 1 or policy_logps.shape != ref_logps.shape or policy_logps.shape != labels.shape:
        raise ValueError(
            "policy_logps, ref_logps and labels must be [B] tensors of one shape, got "
            f"{tuple(policy_logps.shape)}, {tuple(ref_logps.shape)} and {tuple(labels.shape)}"
        )
    if policy_logps.numel() == 0:
        raise ValueError("kto_loss needs at least one example")
    if labels.dtype != torch.bool:
        raise ValueError(f"labels must be a bool tensor (True = desirable), got {labels.dtype}")
    if loss_type == "kto":
        if kl is None or kl.numel() != 1:
            raise ValueError("loss_type 'kto' needs kl, the reference point: a one-element tensor")
        z0 = kl.reshape(())

    logratios = policy_logps - ref_logps
    if loss_type == "kto":  # Eq. 7: value relative to z0, gain for desirable, loss for undesirable
        desirable = 1 - torch.sigmoid(beta * (logratios - z0))
        undesirable = 1 - torch.sigmoid(beta * (z0 - logratios))
    else:  # APO-zero unpaired: push desirable log-ratios up and undesirable ones down, from 0
        desirable = 1 - torch.sigmoid(beta * logratios)
        undesirable = torch.sigmoid(beta * logratios)
    losses = torch.where(labels, desirable_weight * desirable, undesirable_weight * undesirable)
    return losses, beta * logratios.detach()


def kto_batch_metrics(policy_logps: Tensor, rewards: Tensor, labels: Tensor, kl: Tensor | None) -> dict[str, float]:
    """TRL's KTO metrics for one process's batch: ``kl``, ``rewards/chosen``, ``logps/chosen`` (means over the
    desirable examples), ``rewards/rejected``, ``logps/rejected`` (undesirable), ``rewards/margins`` (their
    difference). A side with no example in the batch has no key, as in TRL (margins need both sides).

    Several processes: TRL sums each side's values and counts over processes and divides the totals (not a mean
    of process means); the caller all-reduces the sums and counts the same way (``kl`` is already global).
    """
    out = {"kl": float(kl) if kl is not None else 0.0}
    for side, mask in (("chosen", labels), ("rejected", ~labels)):
        n = int(mask.sum())
        if n:
            out[f"rewards/{side}"] = float(rewards[mask].detach().nansum()) / n
            out[f"logps/{side}"] = float(policy_logps[mask].detach().nansum()) / n
    if "rewards/chosen" in out and "rewards/rejected" in out:
        out["rewards/margins"] = out["rewards/chosen"] - out["rewards/rejected"]
    return out


def kto_weight_range(n_desirable: int, n_examples: int, *, desirable_weight: float = 1.0,
                     undesirable_weight: float = 1.0) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """TRL's Eq. 8 check on a training set of ``n_examples`` with ``n_desirable`` desirable ones: None when the
    counts are equal, else ((lo, hi) for desirable_weight, (lo, hi) for undesirable_weight), rounded to 2
    decimals as TRL computes them; TRL warns when neither weight is in its range."""
    n_desirable = max(n_desirable, 1)  # TRL's guards against division by zero, in its order
    n_undesirable = max(n_examples - n_desirable, 1)
    if n_desirable == n_undesirable:
        return None
    d = n_undesirable * undesirable_weight / n_desirable
    u = n_desirable * desirable_weight / n_undesirable
    return (round(d, 2), round(d * 1.33, 2)), (round(u / 1.33, 2), round(u, 2))


__all__ = ["KTO_LOSS_TYPES", "kto_batch_metrics", "kto_loss", "kto_reference_point", "kto_weight_range"]
