"""The methods alignlab trains, one record each: the only place that tests a method's name.

A record says what the method consumes — pairs or single sequences, a reference model, the per-token forward KL
(which needs the reference online), whether precomputed reference sums can serve it — its hyper-parameters (a
frozen dataclass whose field names are the recipe keys, with the papers' defaults and its own validation) and
its loss: per-sequence statistics -> per-example losses, the rewards the method reports and its own metrics.
The trainer, the config's applicability rules and `alignlab train --list-keys` read these records. Adding a
method is one loss file, one entry in METHODS and its test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alignlab.errors import ConfigError
from alignlab.losses.cpo import cpo_loss
from alignlab.losses.dpo import dpo_loss
from alignlab.losses.dpo_variants import length_desensitized_logps, wpo_weights
from alignlab.losses.fdpo import fdpo_loss
from alignlab.losses.ift import ift_loss
from alignlab.losses.kto import KTO_LOSS_TYPES, kto_loss
from alignlab.losses.orpo import NLL_NORMALIZATIONS as ORPO_NLL_NORMALIZATIONS
from alignlab.losses.orpo import orpo_log_odds, orpo_loss
from alignlab.losses.sft import sft_loss
from alignlab.losses.simpo import simpo_loss
from alignlab.losses.tdpo import tdpo_loss

# ------------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class PairStats:
    """Per-sequence statistics of B pairs, every field [B]: summed response log-probs and token counts of the
    policy, the reference's sums (methods with a reference) and the forward sum_t KL(pi_ref || pi_theta)
    (methods with needs_token_kl)."""

    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_lengths: Tensor
    rejected_lengths: Tensor
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    chosen_kl: Tensor | None = None
    rejected_kl: Tensor | None = None
    # the optimizer step's chosen response tokens and pairs, over every micro-batch and rank (methods with
    # needs_step_chosen_tokens): a token mean over the step, kept exact under gradient accumulation
    step_chosen_tokens: float | None = None
    step_pairs: float | None = None
    # per-token statistics [B, T-1], for methods whose extra_stats ask for them: log-probs of the policy (with
    # gradient) and the reference, the scored-position masks, and sum_t log sum_v pi(v|s_t)^2 [B] (no gradient)
    chosen_token_logps: Tensor | None = None
    rejected_token_logps: Tensor | None = None
    ref_chosen_token_logps: Tensor | None = None
    ref_rejected_token_logps: Tensor | None = None
    chosen_mask: Tensor | None = None
    rejected_mask: Tensor | None = None
    chosen_log_sum_sq: Tensor | None = None
    rejected_log_sum_sq: Tensor | None = None


@dataclass(frozen=True)
class SequenceStats:
    """Per-sequence statistics of B single sequences: logps and lengths [B]; token_logps [B, T-1] and its
    scored-position mask [B, T-1] (methods whose extra_stats include "token_logps")."""

    logps: Tensor
    lengths: Tensor
    token_logps: Tensor | None = None
    mask: Tensor | None = None


@dataclass(frozen=True)
class UnpairedStats:
    """Per-sequence statistics of B unpaired examples (KTO), every field [B] except `kl`: summed completion log-probs
    of the policy and the reference, token counts, desirable (bool), and the reference point z0 (0-dim, detached;
    None where the loss type has none)."""

    logps: Tensor
    ref_logps: Tensor
    lengths: Tensor
    desirable: Tensor
    kl: Tensor | None = None


@dataclass
class LossOutput:
    """losses [B] (summed by the caller, then divided by the step's normaliser); chosen / rejected rewards [B]
    for pair methods (None for single sequences); the method's own metrics, name -> [B] detached."""

    losses: Tensor
    chosen_rewards: Tensor | None = None
    rejected_rewards: Tensor | None = None
    metrics: dict[str, Tensor] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- hyper-parameters


def _check(condition: bool, key: str, must: str, value: Any) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' must be {must}; got {value!r}")


def _positive(key: str, value: float) -> None:
    _check(value > 0, key, "> 0", value)


@dataclass(frozen=True)
class Params:
    """Base of a method's hyper-parameters: field names are recipe keys; validate() raises ConfigError."""

    def validate(self) -> None:
        """Check every field; called when the config loads."""


@dataclass(frozen=True)
class BetaParams(Params):
    beta: float = 0.1

    def validate(self) -> None:
        _positive("beta", self.beta)


@dataclass(frozen=True)
class DPOParams(BetaParams):
    """DPO and the loss types TRL users expect (alignlab.losses.dpo_variants: its table and papers): loss_type
    one name or a list summed with loss_weights; label_smoothing for sigmoid (cDPO), robust, exo_pair, aot;
    rpo_alpha adds alpha x the chosen NLL (RPO); discopop_tau for discopop."""

    loss_type: str | list = "sigmoid"
    loss_weights: list | None = None
    label_smoothing: float = 0.0
    rpo_alpha: float | None = None
    discopop_tau: float = 0.05
    use_weighting: bool = False
    ld_alpha: float | None = None

    def validate(self) -> None:
        super().validate()
        if not (isinstance(self.loss_type, str) or (isinstance(self.loss_type, list) and self.loss_type
                                                    and all(isinstance(t, str) for t in self.loss_type))):
            raise ConfigError(f"config key 'loss_type' must be a name or a list of names; got {self.loss_type!r}")
        if self.loss_weights is not None and not (isinstance(self.loss_weights, list) and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) for w in self.loss_weights)):
            raise ConfigError(f"config key 'loss_weights' must be a list of numbers; got {self.loss_weights!r}")
        if self.loss_weights is not None and isinstance(self.loss_type, str):
            raise ConfigError("config key 'loss_weights' weighs a list of loss_type names; loss_type is one name")
        if self.ld_alpha is not None:
            _check(0.0 <= self.ld_alpha <= 1.0, "ld_alpha", "in [0, 1]", self.ld_alpha)
        one, zero, row = torch.ones(1), torch.zeros(1), torch.zeros(1, 1)
        mask = torch.ones(1, 1, dtype=torch.bool)
        try:  # the loss function's own checks (names, label smoothing per type, ...) on a dry run
            _dpo(PairStats(zero, zero, one, one, zero, zero, None, None, None, None, row, row, row, row, mask, mask,
                           zero, zero), self)
        except ValueError as exc:
            raise ConfigError(f"method 'dpo': {exc}") from None

    def inactive(self) -> dict[str, str]:
        names = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type)
        return {} if "discopop" in names else {"discopop_tau": "loss_type: discopop"}

    def extra_stats(self) -> frozenset[str]:
        return frozenset((["token_logps"] if self.ld_alpha is not None else [])
                         + (["log_sum_sq"] if self.use_weighting else []))

    def online_ref_reason(self) -> str | None:
        return "ld_alpha needs the reference's per-token log-probs" if self.ld_alpha is not None else None


@dataclass(frozen=True)
class CDPOParams(BetaParams):
    label_smoothing: float = 0.0  # no default in the DPO code: a cDPO run says its epsilon

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.label_smoothing < 0.5:
            raise ConfigError("method 'cdpo' needs config key 'label_smoothing' in (0, 0.5)")


@dataclass(frozen=True)
class IPOParams(BetaParams):
    ipo_normalize: bool = True


FDPO_DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


@dataclass(frozen=True)
class FDPOParams(BetaParams):
    fdpo_divergence: str = "forward_kl"
    fdpo_alpha: float = 0.5

    def validate(self) -> None:
        super().validate()
        _check(self.fdpo_divergence in FDPO_DIVERGENCES, "fdpo_divergence", f"one of {', '.join(FDPO_DIVERGENCES)}",
               self.fdpo_divergence)
        _check(0.0 < self.fdpo_alpha < 1.0, "fdpo_alpha", "in (0, 1)", self.fdpo_alpha)

    def inactive(self) -> dict[str, str]:
        return {} if self.fdpo_divergence == "alpha" else {"fdpo_alpha": "fdpo_divergence: alpha"}


@dataclass(frozen=True)
class TDPO2Params(BetaParams):
    tdpo_alpha: float = 0.5

    def validate(self) -> None:
        super().validate()
        _check(self.tdpo_alpha >= 0, "tdpo_alpha", ">= 0", self.tdpo_alpha)


@dataclass(frozen=True)
class SimPOParams(Params):
    beta: float = 2.0
    simpo_gamma: float = 0.5

    def validate(self) -> None:
        _positive("beta", self.beta)
        _check(self.simpo_gamma >= 0, "simpo_gamma", ">= 0", self.simpo_gamma)


@dataclass(frozen=True)
class CPOParams(BetaParams):
    """CPO (alignlab.losses.cpo): loss_type sigmoid, hinge, ipo or simpo; cpo_alpha weighs the chosen NLL."""

    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5
    cpo_alpha: float = 1.0

    def validate(self) -> None:
        super().validate()
        _check(isinstance(self.loss_type, str), "loss_type", "one name for method cpo", self.loss_type)
        one, zero = torch.ones(1), torch.zeros(1)
        try:  # the loss function's own checks on a dry run
            _cpo(PairStats(zero, zero, one, one), self)
        except ValueError as exc:
            raise ConfigError(f"method 'cpo': {exc}") from None

    def inactive(self) -> dict[str, str]:
        return {} if self.loss_type == "simpo" else {"simpo_gamma": "loss_type: simpo"}


@dataclass(frozen=True)
class KTOParams(BetaParams):
    """KTO (alignlab.losses.kto): loss_type kto or apo_zero_unpaired; weights of desirable / undesirable examples."""

    loss_type: str = "kto"
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        _check(self.loss_type in KTO_LOSS_TYPES, "loss_type", f"one of {', '.join(KTO_LOSS_TYPES)} for method kto",
               self.loss_type)
        _check(self.desirable_weight >= 0, "desirable_weight", ">= 0", self.desirable_weight)
        _check(self.undesirable_weight >= 0, "undesirable_weight", ">= 0", self.undesirable_weight)

    def needs_kl_batch(self) -> bool:
        return self.loss_type == "kto"

    def min_micro_batch_size(self) -> int:
        return 2 if self.needs_kl_batch() else 1  # the KL completions come from the other examples of the batch


@dataclass(frozen=True)
class ORPOParams(Params):
    orpo_lambda: float = 0.1
    orpo_nll_normalization: str = "sequence_mean"  # the paper's per-sequence mean (alignlab/losses/orpo.py)

    def validate(self) -> None:
        _check(self.orpo_lambda >= 0, "orpo_lambda", ">= 0", self.orpo_lambda)
        _check(self.orpo_nll_normalization in ORPO_NLL_NORMALIZATIONS, "orpo_nll_normalization",
               f"one of {', '.join(ORPO_NLL_NORMALIZATIONS)}", self.orpo_nll_normalization)


SFT_NORMALIZATIONS = ("sum", "seq_mean", "token_mean")


@dataclass(frozen=True)
class SFTParams(Params):
    sft_normalization: str = "seq_mean"

    def validate(self) -> None:
        _check(self.sft_normalization in SFT_NORMALIZATIONS, "sft_normalization",
               f"one of {', '.join(SFT_NORMALIZATIONS)}", self.sft_normalization)


IFT_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True)
class IFTParams(Params):
    ift_lambda: float = 0.2
    ift_gamma: float = 0.95
    ift_lambda_schedule: str = "constant"
    ift_lambda_min: float = 0.0
    ift_ramp_steps: int = 150
    ift_lambda_noise_std: float = 0.0
    ift_detach_weights: bool = False

    def validate(self) -> None:
        _check(0.0 <= self.ift_lambda <= 1.0, "ift_lambda", "in [0, 1]", self.ift_lambda)
        _check(0.0 <= self.ift_gamma < 1.0, "ift_gamma", "in [0, 1)", self.ift_gamma)
        _check(self.ift_lambda_schedule in IFT_SCHEDULES, "ift_lambda_schedule", f"one of {', '.join(IFT_SCHEDULES)}",
               self.ift_lambda_schedule)
        _check(0.0 <= self.ift_lambda_min <= self.ift_lambda, "ift_lambda_min", "in [0, ift_lambda]",
               self.ift_lambda_min)
        _check(self.ift_ramp_steps >= 1, "ift_ramp_steps", ">= 1", self.ift_ramp_steps)
        _check(self.ift_lambda_noise_std >= 0, "ift_lambda_noise_std", ">= 0", self.ift_lambda_noise_std)

    def extra_stats(self) -> frozenset[str]:
        return frozenset({"token_logps"})  # the future-discounted loss weighs each token

    def inactive(self) -> dict[str, str]:
        linear = self.ift_lambda_schedule == "linear"
        return {} if linear else {"ift_lambda_min": "ift_lambda_schedule: linear",
                                  "ift_ramp_steps": "ift_lambda_schedule: linear"}


# ------------------------------------------------------------------------------------------------------ losses


def _margins(s: PairStats) -> tuple[Tensor, Tensor]:
    return s.chosen_logps - s.ref_chosen_logps, s.rejected_logps - s.ref_rejected_logps


def _dpo(s: PairStats, p: DPOParams) -> LossOutput:
    chosen, rejected, ref_chosen, ref_rejected = s.chosen_logps, s.rejected_logps, s.ref_chosen_logps, s.ref_rejected_logps
    if p.ld_alpha is not None:  # LD-DPO: the longer response's tokens past the shorter's length count alpha times
        chosen, rejected = length_desensitized_logps(s.chosen_token_logps, s.rejected_token_logps, s.chosen_mask,
                                                     s.rejected_mask, alpha=p.ld_alpha)
        ref_chosen, ref_rejected = length_desensitized_logps(s.ref_chosen_token_logps, s.ref_rejected_token_logps,
                                                             s.chosen_mask, s.rejected_mask, alpha=p.ld_alpha)
    # The sft loss type and RPO add the chosen responses' token-mean NLL. dpo_loss takes it over the batch (TRL, per
    # micro-batch); here each row carries -S_c * pairs / tokens of the whole optimizer step, so the caller's
    # sum / pairs is the step's token mean and accumulation leaves the gradient unchanged.
    names = [p.loss_type] if isinstance(p.loss_type, str) else list(p.loss_type)
    weights = list(p.loss_weights) if p.loss_weights is not None else [1.0] * len(names)
    nll_weight = sum(w for n, w in zip(names, weights) if n == "sft") + (p.rpo_alpha or 0.0)
    rest = [(n, w) for n, w in zip(names, weights) if n != "sft"]
    if rest:
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            chosen, rejected, ref_chosen, ref_rejected, beta=p.beta, label_smoothing=p.label_smoothing,
            loss_type=[n for n, _ in rest], loss_weights=[w for _, w in rest], chosen_lengths=s.chosen_lengths,
            rejected_lengths=s.rejected_lengths, discopop_tau=p.discopop_tau)
    else:  # loss_type: sft alone
        losses = chosen.new_zeros(chosen.shape)
        chosen_rewards, rejected_rewards = (p.beta * (chosen - ref_chosen).detach(),
                                            p.beta * (rejected - ref_rejected).detach())
    if nll_weight:
        tokens = float(s.chosen_lengths.sum() if s.step_chosen_tokens is None else s.step_chosen_tokens)
        pairs = float(chosen.shape[0] if s.step_pairs is None else s.step_pairs)
        losses = losses - nll_weight * s.chosen_logps * (pairs / max(tokens, 1.0))
    if p.use_weighting:
        losses = losses * wpo_weights(s.chosen_logps, s.chosen_log_sum_sq, s.chosen_lengths, s.rejected_logps,
                                      s.rejected_log_sum_sq, s.rejected_lengths, loss_type=p.loss_type)
    return LossOutput(losses, chosen_rewards, rejected_rewards)


def _cdpo(s: PairStats, p: CDPOParams) -> LossOutput:
    return LossOutput(*dpo_loss(s.chosen_logps, s.rejected_logps, s.ref_chosen_logps, s.ref_rejected_logps,
                                beta=p.beta, label_smoothing=p.label_smoothing))


def _ipo(s: PairStats, p: IPOParams) -> LossOutput:
    if not p.ipo_normalize:
        return LossOutput(*dpo_loss(s.chosen_logps, s.rejected_logps, s.ref_chosen_logps, s.ref_rejected_logps,
                                    beta=p.beta, loss_type="ipo"))
    nc, nr = s.chosen_lengths.clamp(min=1), s.rejected_lengths.clamp(min=1)
    losses, _, _ = dpo_loss(s.chosen_logps / nc, s.rejected_logps / nr, s.ref_chosen_logps / nc,
                            s.ref_rejected_logps / nr, beta=p.beta, loss_type="ipo")
    chosen_margin, rejected_margin = _margins(s)  # rewards as DPO's, beta (S - S_ref) on sums
    return LossOutput(losses, p.beta * chosen_margin.detach(), p.beta * rejected_margin.detach())


def _fdpo(s: PairStats, p: FDPOParams) -> LossOutput:
    return LossOutput(*fdpo_loss(s.chosen_logps, s.rejected_logps, s.ref_chosen_logps, s.ref_rejected_logps,
                                 beta=p.beta, divergence=p.fdpo_divergence, alpha=p.fdpo_alpha))


def _tdpo(variant: str) -> Callable[[PairStats, BetaParams], LossOutput]:
    def loss(s: PairStats, p: BetaParams) -> LossOutput:
        chosen_margin, rejected_margin = _margins(s)
        return LossOutput(*tdpo_loss(chosen_margin, rejected_margin, s.chosen_kl, s.rejected_kl, beta=p.beta,
                                     alpha=getattr(p, "tdpo_alpha", 0.5), variant=variant))
    return loss


def _simpo(s: PairStats, p: SimPOParams) -> LossOutput:
    return LossOutput(*simpo_loss(s.chosen_logps, s.rejected_logps, s.chosen_lengths, s.rejected_lengths,
                                  beta=p.beta, gamma=p.simpo_gamma))


def _orpo(s: PairStats, p: ORPOParams) -> LossOutput:
    totals = {}
    if p.orpo_nll_normalization == "batch_token_mean":
        totals = {"total_chosen_tokens": s.step_chosen_tokens, "total_pairs": s.step_pairs}
    out = LossOutput(*orpo_loss(s.chosen_logps, s.rejected_logps, s.chosen_lengths, s.rejected_lengths,
                                lam=p.orpo_lambda, nll_normalization=p.orpo_nll_normalization, **totals))
    chosen_mean = s.chosen_logps.detach() / s.chosen_lengths.clamp(min=1)
    out.metrics["orpo/nll"] = -chosen_mean
    out.metrics["orpo/log_odds_ratio"] = orpo_log_odds(chosen_mean,
                                                       s.rejected_logps.detach() / s.rejected_lengths.clamp(min=1))
    return out


def _cpo(s: PairStats, p: CPOParams) -> LossOutput:
    out = LossOutput(*cpo_loss(s.chosen_logps, s.rejected_logps, s.chosen_lengths, s.rejected_lengths, beta=p.beta,
                               loss_type=p.loss_type, label_smoothing=p.label_smoothing, simpo_gamma=p.simpo_gamma,
                               cpo_alpha=p.cpo_alpha, total_chosen_tokens=s.step_chosen_tokens,
                               total_pairs=s.step_pairs))
    out.metrics["cpo/nll"] = (-s.chosen_logps.detach() / s.chosen_lengths.clamp(min=1))
    return out


def _kto(s: UnpairedStats, p: KTOParams) -> LossOutput:
    losses, rewards = kto_loss(s.logps, s.ref_logps, s.desirable, s.kl, beta=p.beta,
                               desirable_weight=p.desirable_weight, undesirable_weight=p.undesirable_weight,
                               loss_type=p.loss_type)
    return LossOutput(losses, metrics={"kto/reward": rewards})


def _sft(s: SequenceStats, p: SFTParams) -> LossOutput:
    if p.sft_normalization == "token_mean":
        return LossOutput(-s.logps)  # the caller divides by the step's global token count (normaliser "tokens")
    return LossOutput(sft_loss(s.logps, s.lengths, normalization=p.sft_normalization))


def _ift(s: SequenceStats, p: IFTParams) -> LossOutput:
    return LossOutput(ift_loss(s.token_logps, s.mask, gamma=p.ift_gamma, detach_weights=p.ift_detach_weights))


# ----------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Method:
    """One training method. paired: trains on (chosen, rejected) pairs, else on single sequences; needs_ref: a
    reference model (frozen copy, adapter-disabled LoRA policy, or precomputed sums); needs_token_kl: the
    per-token forward KL to the reference (so the reference runs online); precomputable_ref: reference sums
    may be precomputed once; extra_stats(params): the statistics beyond sums its loss reads ("token_logps",
    "log_sum_sq"), from the params' own extra_stats(); mixes_inputs: IFT's
    temporal-residual input mix (a frozen embedding view and a greedy pass); keeps_dropout: dropout stays on
    unless disabled; token_normalised(params): the step divides by global response tokens, not rows."""

    name: str
    paper: str
    params: type[Params]
    loss: Callable[[Any, Any], LossOutput]
    paired: bool = True
    unpaired: bool = False  # single completions labelled desirable or not (KTO), with a mismatched KL batch
    needs_ref: bool = False
    needs_token_kl: bool = False
    precomputable_ref: bool = False
    extra_stats: Callable[[Any], frozenset[str]] = lambda params: getattr(params, "extra_stats", frozenset)()
    mixes_inputs: bool = False
    keeps_dropout: bool = False
    token_normalised: Callable[[Any], bool] = lambda params: False
    needs_step_chosen_tokens: Callable[[Any], bool] = lambda params: False

    def param_keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.params))

    def make_params(self, values: dict[str, Any]) -> Params:
        """The validated hyper-parameters from recipe values (missing keys take the paper's default)."""
        params = self.params(**{k: v for k, v in values.items() if k in self.param_keys()})
        params.validate()
        return params


_DPO_FAMILY = {"needs_ref": True, "precomputable_ref": True}
_TDPO = {"needs_ref": True, "needs_token_kl": True}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("sft", "supervised fine-tuning NLL", SFTParams, _sft, paired=False, keeps_dropout=True,
           token_normalised=lambda p: p.sft_normalization == "token_mean"),
    Method("ift", "IFT, arXiv 2405.11870", IFTParams, _ift, paired=False, mixes_inputs=True),
    Method("dpo", "DPO, arXiv 2305.18290 Eq. 7", DPOParams, _dpo, **_DPO_FAMILY,
           needs_step_chosen_tokens=lambda p: bool(p.rpo_alpha) or "sft" in (
               [p.loss_type] if isinstance(p.loss_type, str) else p.loss_type)),
    Method("ipo", "IPO, arXiv 2310.12036 Eq. 17", IPOParams, _ipo, **_DPO_FAMILY),
    Method("cdpo", "cDPO (DPO with label smoothing)", CDPOParams, _cdpo, **_DPO_FAMILY),
    Method("fdpo", "f-DPO, arXiv 2309.16240 Theorem 1", FDPOParams, _fdpo, **_DPO_FAMILY),
    Method("tdpo1", "TDPO1, arXiv 2404.11999 Eq. 19", BetaParams, _tdpo("tdpo1"), **_TDPO),
    Method("tdpo2", "TDPO2, arXiv 2404.11999 Eq. 20", TDPO2Params, _tdpo("tdpo2"), **_TDPO),
    Method("simpo", "SimPO, arXiv 2405.14734 Eq. 6", SimPOParams, _simpo),
    Method("cpo", "CPO, arXiv 2401.08417 Eq. 3, 5", CPOParams, _cpo,
           needs_step_chosen_tokens=lambda p: p.cpo_alpha > 0),
    Method("kto", "KTO, arXiv 2402.01306 Eq. 7", KTOParams, _kto, paired=False, unpaired=True, needs_ref=True),
    Method("orpo", "ORPO, arXiv 2403.07691 Eq. 6-8", ORPOParams, _orpo,
           needs_step_chosen_tokens=lambda p: p.orpo_nll_normalization == "batch_token_mean"),
)}


def get_method(name: str) -> Method:
    """The record of a method name; ConfigError listing the names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"config key 'method' must be one of {', '.join(METHODS)}; got {name!r}") from None


def methods_with_key(key: str) -> tuple[str, ...]:
    """Names of the methods whose hyper-parameters include recipe key `key`."""
    return tuple(name for name, m in METHODS.items() if key in m.param_keys())


def param_defaults(key: str) -> dict[str, Any]:
    """method name -> the paper's default of recipe key `key`, for the methods that have it."""
    return {name: next(f.default for f in dataclasses.fields(m.params) if f.name == key)
            for name, m in METHODS.items() if key in m.param_keys()}


__all__ = ["METHODS", "LossOutput", "Method", "PairStats", "Params", "SequenceStats", "UnpairedStats", "get_method",
           "methods_with_key", "param_defaults"]
