"""The DPO-family loss types of TRL 1.16 (trl/trainer/dpo_trainer.py, DPOTrainer._compute_loss).

Per pair b of a batch of B ([B] tensors): S = sum of response-token log-probs under the policy, S_ref under
the reference; Δc = S_c - S_ref,c and Δr = S_r - S_ref,r (log-ratios); h = Δc - Δr; σ the logistic function;
β = beta; ε = label_smoothing; n_c, n_r completion token counts; NLL_c = -S_c (or the chosen_nll given).

  name          per-example loss                                                        paper (arXiv)
  sigmoid       -log σ(βh)    [ε > 0, alignlab's cDPO: -(1-ε) log σ(βh) - ε log σ(-βh)]  2305.18290 Eq. 7
  hinge         max(0, 1 - βh)                                                          2309.06657, 2305.10425
  ipo           (h' - 1/(2β))^2,  h' = Δc/n_c - Δr/n_r  (h' = h when no lengths given)  2310.12036 Eq. 17
  exo_pair      σ(βh) [log σ(βh) - log(1-ε)] + σ(-βh) [log σ(-βh) - log ε],  ε > 0       2402.00856 Eq. 16
  nca_pair      -log σ(βΔc) - ½ log σ(-βΔc) - ½ log σ(-βΔr)                             2402.05369
  robust        [-(1-ε) log σ(βh) + ε log σ(-βh)] / (1 - 2ε)                            2403.00409
  bco_pair      -log σ(βΔc - δ) - log σ(-(βΔr - δ)),  δ = bco_delta (TRL 1.16: δ = 0)   2404.04656
  sppo_hard     (Δc - 1/(2β))^2 + (Δr + 1/(2β))^2                                       2405.00675 Eq. 4.7
  aot           -(1-ε) log σ(βd) - ε log σ(-βd),  d = sort(S_c - S_r) - sort(S_ref,c - S_ref,r)
                                                                                        2406.05882
  aot_unpaired  as aot with d = sort(Δc) - sort(Δr)                                     2406.05882
  apo_zero      1 - σ(βΔc) + σ(βΔr)                                                     2408.06266 Eq. 7
  apo_down      σ(βΔc) + 1 - σ(βh)                                                      2408.06266 Eq. 8
  discopop      (1 - m) (-log σ(βh)) + m exp(-βh),  m = σ(βh / τ),  τ = discopop_tau    2406.08414 Eq. 5
  sigmoid_norm  -log σ(β (Δc/n_c - Δr/n_r))                                             (none cited)
  sft           Σ_b NLL_c,b / Σ_b n_c,b, the same value for every b                     (none cited)

ipo and sigmoid_norm clamp n to >= 1 (as TRL); sft does not (TRL's mean over the chosen tokens of the batch).
Batch coupling: aot / aot_unpaired sort within the batch, so entry b is the b-th order statistic, not pair b,
and the loss depends on the batch size and composition (only its mean is meaningful); sft is one batch-level
token mean broadcast to [B] (its mean is TRL's scalar). Every other type is per pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class VariantInputs:
    """What a loss type may read: [B] log-prob sums, optional [B] counts and chosen NLL sums, the scalars."""

    policy_chosen_logps: Tensor
    policy_rejected_logps: Tensor
    ref_chosen_logps: Tensor
    ref_rejected_logps: Tensor
    beta: float
    label_smoothing: float = 0.0
    discopop_tau: float = 0.05
    bco_delta: float | Tensor = 0.0
    chosen_lengths: Tensor | None = None
    rejected_lengths: Tensor | None = None
    chosen_nll: Tensor | None = None  # [B] summed NLL of the chosen tokens; None means -policy_chosen_logps

    @property
    def chosen_logratios(self) -> Tensor:
        return self.policy_chosen_logps - self.ref_chosen_logps

    @property
    def rejected_logratios(self) -> Tensor:
        return self.policy_rejected_logps - self.ref_rejected_logps

    def per_token_logratios(self) -> tuple[Tensor, Tensor]:
        # TRL divides by completion_mask.sum(1).clamp(min=1.0) for ipo and sigmoid_norm
        return (self.chosen_logratios / self.chosen_lengths.clamp(min=1),
                self.rejected_logratios / self.rejected_lengths.clamp(min=1))


def _smoothed(z: Tensor, eps: float) -> Tensor:
    return -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)


def _sigmoid(x: VariantInputs) -> Tensor:
    # TRL 1.16's sigmoid ignores ε; ε > 0 keeps alignlab's cDPO here (ε = 0 is TRL's value exactly)
    return _smoothed(x.beta * (x.chosen_logratios - x.rejected_logratios), x.label_smoothing)


def _hinge(x: VariantInputs) -> Tensor:
    return torch.relu(1 - x.beta * (x.chosen_logratios - x.rejected_logratios))


def _ipo(x: VariantInputs) -> Tensor:
    if x.chosen_lengths is None:  # inputs taken as they are (pre-normalised means, or the paper's sums)
        h = x.chosen_logratios - x.rejected_logratios
    else:
        chosen, rejected = x.per_token_logratios()
        h = chosen - rejected
    return (h - 1 / (2 * x.beta)) ** 2


def _exo_pair(x: VariantInputs) -> Tensor:
    # KL(softmax over {chosen, rejected} of the policy's β log-ratios || [1 - ε, ε]), expanded for K = 2
    z = x.beta * (x.chosen_logratios - x.rejected_logratios)
    eps = x.label_smoothing
    return (torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-eps))
            + torch.sigmoid(-z) * (F.logsigmoid(-z) - math.log(eps)))


def _nca_pair(x: VariantInputs) -> Tensor:
    chosen, rejected = x.beta * x.chosen_logratios, x.beta * x.rejected_logratios
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def _robust(x: VariantInputs) -> Tensor:
    # unbiased under labels flipped with probability ε (rDPO): the flipped term enters with a minus sign
    z = x.beta * (x.chosen_logratios - x.rejected_logratios)
    eps = x.label_smoothing
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


def _bco_pair(x: VariantInputs) -> Tensor:
    delta = x.bco_delta.detach() if isinstance(x.bco_delta, Tensor) else x.bco_delta  # baseline: no gradient
    chosen, rejected = x.beta * x.chosen_logratios, x.beta * x.rejected_logratios
    return -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))


def _sppo_hard(x: VariantInputs) -> Tensor:
    # SPPO with hard probabilities P(chosen wins) = 1: regress the log-ratios to ±1/(2β)
    return (x.chosen_logratios - 0.5 / x.beta) ** 2 + (x.rejected_logratios + 0.5 / x.beta) ** 2


def _aot(x: VariantInputs) -> Tensor:
    # distributional dominance: the sorted policy gaps S_c - S_r against the sorted reference gaps
    policy_gaps, _ = torch.sort(x.policy_chosen_logps - x.policy_rejected_logps, dim=0)
    ref_gaps, _ = torch.sort(x.ref_chosen_logps - x.ref_rejected_logps, dim=0)
    return _smoothed(x.beta * (policy_gaps - ref_gaps), x.label_smoothing)


def _aot_unpaired(x: VariantInputs) -> Tensor:
    chosen, _ = torch.sort(x.chosen_logratios, dim=0)
    rejected, _ = torch.sort(x.rejected_logratios, dim=0)
    return _smoothed(x.beta * (chosen - rejected), x.label_smoothing)


def _apo_zero(x: VariantInputs) -> Tensor:
    return 1 - torch.sigmoid(x.beta * x.chosen_logratios) + torch.sigmoid(x.beta * x.rejected_logratios)


def _apo_down(x: VariantInputs) -> Tensor:
    return (torch.sigmoid(x.beta * x.chosen_logratios)
            + 1 - torch.sigmoid(x.beta * (x.chosen_logratios - x.rejected_logratios)))


def _discopop(x: VariantInputs) -> Tensor:
    # log-ratio modulated: logistic loss for negative margins, exponential loss for positive ones
    z = x.beta * (x.chosen_logratios - x.rejected_logratios)
    m = torch.sigmoid(z / x.discopop_tau)
    return -F.logsigmoid(z) * (1 - m) + torch.exp(-z) * m


def _sigmoid_norm(x: VariantInputs) -> Tensor:
    chosen, rejected = x.per_token_logratios()
    return -F.logsigmoid(x.beta * (chosen - rejected))


def _sft(x: VariantInputs) -> Tensor:
    nll = -x.policy_chosen_logps if x.chosen_nll is None else x.chosen_nll
    return (nll.sum() / x.chosen_lengths.sum()).expand_as(nll)


LOSS_FUNCTIONS: dict[str, Callable[[VariantInputs], Tensor]] = {
    "sigmoid": _sigmoid, "hinge": _hinge, "ipo": _ipo, "exo_pair": _exo_pair, "nca_pair": _nca_pair,
    "robust": _robust, "bco_pair": _bco_pair, "sppo_hard": _sppo_hard, "aot": _aot,
    "aot_unpaired": _aot_unpaired, "apo_zero": _apo_zero, "apo_down": _apo_down, "discopop": _discopop,
    "sigmoid_norm": _sigmoid_norm, "sft": _sft,
}
LOSS_TYPES = tuple(LOSS_FUNCTIONS)
LABEL_SMOOTHED = ("sigmoid", "exo_pair", "robust", "aot", "aot_unpaired")  # the types that read ε
NEEDS_LABEL_SMOOTHING = ("exo_pair",)  # log ε: TRL refuses ε = 0
NEEDS_BOTH_LENGTHS = ("sigmoid_norm",)
READS_LENGTHS_IF_GIVEN = ("ipo",)  # TRL's per-token IPO; without lengths, the log-ratios as they are
NEEDS_CHOSEN_LENGTHS = ("sft",)


class BCORewardMean:
    """Caller-owned running reward mean δ for bco_pair (BCO, arXiv 2404.04656), as TRL <= 0.2x kept it.

    TRL 1.16 dropped it: its bco_pair uses δ = 0, dpo_loss's default. For the older behaviour, each step
    call `delta = state.update(chosen_rewards, rejected_rewards)`, rewards = beta * (policy - ref logps),
    before the loss, and pass `bco_delta=delta`. δ is then the mean over the steps so far, this one included,
    of each step's mean of the 2B rewards (TRL's RunningMoments, updated once per step with the batch mean).
    Under data parallelism, average the batch mean over ranks first (TRL gathered it). Checkpoint mean, count.
    """

    def __init__(self, mean: float = 0.0, count: int = 0) -> None:
        self.mean, self.count = mean, count

    @torch.no_grad()
    def update(self, chosen_rewards: Tensor, rejected_rewards: Tensor) -> float:
        batch_mean = float(torch.cat((chosen_rewards, rejected_rewards)).double().mean())
        self.count += 1
        self.mean += (batch_mean - self.mean) / self.count
        return self.mean


def length_desensitized_logps(chosen_token_logps: Tensor, rejected_token_logps: Tensor, chosen_mask: Tensor,
                              rejected_mask: Tensor, *, alpha: float) -> tuple[Tensor, Tensor]:
    """LD-DPO (Liu et al. 2024, "Length Desensitization in Direct Preference Optimization", arXiv 2409.06411, as
    TRL's `ld_alpha`): per-pair sums where the tokens of either response past the shorter one's length count
    alpha times.

    token log-probs and masks [B, T] (mask: scored positions; response tokens in order) -> two [B] sums,
    shared + alpha * tail, shared = the first min(n_c, n_r) response tokens of each side."""
    positions_c, positions_r = chosen_mask.cumsum(-1), rejected_mask.cumsum(-1)  # 1-based response position
    shared = torch.minimum(chosen_mask.sum(-1), rejected_mask.sum(-1)).unsqueeze(-1)

    def ld_sum(token_logps: Tensor, mask: Tensor, positions: Tensor) -> Tensor:
        head = (mask & (positions <= shared)).to(token_logps.dtype)
        tail = (mask & (positions > shared)).to(token_logps.dtype)
        return (token_logps * head).sum(-1) + alpha * (token_logps * tail).sum(-1)

    return ld_sum(chosen_token_logps, chosen_mask, positions_c), ld_sum(rejected_token_logps, rejected_mask, positions_r)


def wpo_weights(chosen_logps: Tensor, chosen_log_sum_sq: Tensor, chosen_lengths: Tensor, rejected_logps: Tensor,
                rejected_log_sum_sq: Tensor, rejected_lengths: Tensor, *, loss_type: str | list = "sigmoid") -> Tensor:
    """WPO (Zhou et al. 2024, arXiv 2406.11827, Eq. 2, as TRL's `use_weighting`): each pair's loss is weighted by
    w_c w_r, w = exp(mean_t [log pi(y_t) - log sum_v pi(v)^2]) over the response tokens, without gradient.

    [B] summed log-probs, summed log sum_v pi^2 and token counts of each side -> [B] weights. Not defined for aot
    and aot_unpaired, whose entries are sorted across the batch (TRL refuses the combination too)."""
    names = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if any(name in ("aot", "aot_unpaired") for name in names):
        raise ValueError("use_weighting (WPO) is not defined for loss types 'aot' / 'aot_unpaired', which sort the "
                         "batch")
    with torch.no_grad():
        w_c = torch.exp((chosen_logps - chosen_log_sum_sq) / chosen_lengths.clamp(min=1))
        w_r = torch.exp((rejected_logps - rejected_log_sum_sq) / rejected_lengths.clamp(min=1))
    return (w_c * w_r).detach()


__all__ = ["LABEL_SMOOTHED", "LOSS_FUNCTIONS", "LOSS_TYPES", "NEEDS_BOTH_LENGTHS", "NEEDS_CHOSEN_LENGTHS",
           "NEEDS_LABEL_SMOOTHING", "READS_LENGTHS_IF_GIVEN", "BCORewardMean", "VariantInputs",
           "length_desensitized_logps", "wpo_weights"]
