"""One training step's forward for every method: batch -> per-row losses and per-row metrics.

The batch comes from alignlab.data's collators (pairs stacked as [chosen; rejected], 2B rows). Everything that
touches the vocabulary goes through alignlab.ops; every formula comes from alignlab.losses. The caller sums the
per-row losses and divides by the step's global normaliser (rows, or tokens for SFT token_mean).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from alignlab import models
from alignlab.losses import dpo_loss, fdpo_loss, ift_loss, orpo_loss, sft_loss, simpo_loss, tdpo_loss
from alignlab.losses.orpo import orpo_log_odds
from alignlab.models import Trunk
from alignlab.ops import SequenceStats
from alignlab.train.config import TrainConfig


@dataclass
class StepOutput:
    """losses [R] to be summed (R = pairs, or sequences); metrics: name -> per-row values [R], detached."""

    losses: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)
    tokens: int = 0


def _embeds(trunk: Trunk, input_ids: Tensor) -> Tensor:
    # A detached view of the live table is the official IFT "frozen copy, re-synced after every optimizer step".
    return models.unwrap_trunk(trunk).embed(input_ids)


def sequence_stats(cfg: TrainConfig, trunk: Trunk, batch: dict[str, Tensor], *, ref: Trunk | None = None,
                   kl: bool = False, reverse_kl: bool = False, entropy: bool = False,
                   token_logps: bool = False, inputs_embeds: Tensor | None = None) -> SequenceStats:
    """Per-sequence statistics of a batch under the policy (and the reference when given), via alignlab.models."""
    if inputs_embeds is None and cfg.resolved_freeze_input_embeddings:
        inputs_embeds = _embeds(trunk, batch["input_ids"])
    return models.sequence_stats(trunk, batch["input_ids"], batch["attention_mask"], batch["labels"], ref=ref,
                                 inputs_embeds=inputs_embeds, chunked=cfg.chunked_ops, chunk_size=cfg.chunk_size,
                                 kl=kl, reverse_kl=reverse_kl, entropy=entropy, token_logps=token_logps)


def _ranking_metrics(chosen: Tensor, rejected: Tensor, n_chosen: Tensor, n_rejected: Tensor) -> dict[str, Tensor]:
    return {
        "logps/chosen": chosen, "logps/rejected": rejected,
        "ranking/accuracy": (chosen > rejected).float(),
        "ranking/accuracy_normalized": (chosen / n_chosen.clamp(min=1) > rejected / n_rejected.clamp(min=1)).float(),
    }


def pair_step(cfg: TrainConfig, trunk: Trunk, batch: dict[str, Tensor], ref: Trunk | None,
              ref_logps: Tensor | None = None, *, eval_kl: bool = False) -> StepOutput:
    """DPO / IPO / cDPO / f-DPO / TDPO1 / TDPO2 / SimPO / ORPO on one micro-batch of B pairs.

    `ref_logps` [2B] are precomputed reference sums (DPO family); otherwise `ref` runs online. `eval_kl` also
    computes the forward and reverse sequence KL to the reference (for evaluation; TDPO always has it).
    """
    method = cfg.method
    tdpo = method in ("tdpo1", "tdpo2")
    want_kl = tdpo or (eval_kl and ref is not None)
    stats = sequence_stats(cfg, trunk, batch, ref=ref if ref_logps is None else None, kl=want_kl,
                           reverse_kl=eval_kl and ref is not None)
    b = batch["input_ids"].shape[0] // 2
    logps, lengths = stats.logps, stats.lengths
    chosen, rejected, n_chosen, n_rejected = logps[:b], logps[b:], lengths[:b], lengths[b:]
    if ref_logps is None and stats.ref_logps is not None:
        ref_logps = stats.ref_logps
    metrics = _ranking_metrics(chosen.detach(), rejected.detach(), n_chosen, n_rejected)

    if method in ("dpo", "cdpo", "ipo", "fdpo", "tdpo1", "tdpo2"):
        ref_chosen, ref_rejected = ref_logps[:b], ref_logps[b:]
        if method == "fdpo":
            losses, r_chosen, r_rejected = fdpo_loss(chosen, rejected, ref_chosen, ref_rejected,
                                                     beta=cfg.resolved_beta, divergence=cfg.fdpo_divergence,
                                                     alpha=cfg.fdpo_alpha)
        elif tdpo:
            losses, r_chosen, r_rejected = tdpo_loss(chosen - ref_chosen, rejected - ref_rejected,
                                                     stats.kl[:b], stats.kl[b:], beta=cfg.resolved_beta,
                                                     alpha=cfg.tdpo_alpha, variant=method)
        elif method == "ipo" and cfg.ipo_normalize:
            nc, nr = n_chosen.clamp(min=1), n_rejected.clamp(min=1)
            losses, _, _ = dpo_loss(chosen / nc, rejected / nr, ref_chosen / nc, ref_rejected / nr,
                                    beta=cfg.resolved_beta, loss_type="ipo")
            # rewards as DPO's, beta * (S - S_ref) on sums (losses.md §4), whichever IPO variant trains
            r_chosen = cfg.resolved_beta * (chosen - ref_chosen).detach()
            r_rejected = cfg.resolved_beta * (rejected - ref_rejected).detach()
        else:
            losses, r_chosen, r_rejected = dpo_loss(chosen, rejected, ref_chosen, ref_rejected,
                                                    beta=cfg.resolved_beta,
                                                    label_smoothing=cfg.label_smoothing if method == "cdpo" else 0.0,
                                                    loss_type="ipo" if method == "ipo" else "sigmoid")
        margin_chosen = (chosen - ref_chosen).detach()
        margin_rejected = (rejected - ref_rejected).detach()
        metrics["rewards/dpo_accuracy"] = (margin_chosen > margin_rejected).float()
    elif method == "simpo":
        losses, r_chosen, r_rejected = simpo_loss(chosen, rejected, n_chosen, n_rejected,
                                                  beta=cfg.resolved_beta, gamma=cfg.simpo_gamma)
    elif method == "orpo":
        losses, r_chosen, r_rejected = orpo_loss(chosen, rejected, n_chosen, n_rejected, lam=cfg.orpo_lambda)
        metrics["orpo/nll"] = (-chosen / n_chosen.clamp(min=1)).detach()
        metrics["orpo/log_odds_ratio"] = orpo_log_odds(chosen.detach() / n_chosen.clamp(min=1),
                                                       rejected.detach() / n_rejected.clamp(min=1))
    else:
        raise ValueError(f"pair_step does not handle method {method!r}")
    metrics.update({
        "rewards/chosen": r_chosen, "rewards/rejected": r_rejected, "rewards/margins": r_chosen - r_rejected,
        "rewards/accuracies": (r_chosen > r_rejected).float(),
    })
    if stats.kl is not None:
        metrics["kl/chosen"], metrics["kl/rejected"] = stats.kl[:b].detach(), stats.kl[b:].detach()
        metrics["kl/margin"] = metrics["kl/chosen"] - metrics["kl/rejected"]
    if stats.reverse_kl is not None:
        metrics["kl_reverse/chosen"], metrics["kl_reverse/rejected"] = stats.reverse_kl[:b], stats.reverse_kl[b:]
    return StepOutput(losses=losses, metrics=metrics, tokens=int(batch["attention_mask"].sum()))


def ift_lambda(cfg: TrainConfig, step: int, generator: torch.Generator | None = None) -> float:
    """lambda at an optimizer step: constant or a linear ramp, optionally disturbed (ift.md §2)."""
    lam = cfg.ift_lambda
    if cfg.ift_lambda_schedule == "linear":
        ramp = min(1.0, step / max(cfg.ift_ramp_steps, 1))
        lam = cfg.ift_lambda_min + (cfg.ift_lambda - cfg.ift_lambda_min) * ramp
    if cfg.ift_lambda_noise_std > 0:
        z = float(torch.randn((), generator=generator))
        lam = min(max(lam * (1.0 + cfg.ift_lambda_noise_std * z), 0.0), 1.0)
    return lam


def sequence_step(cfg: TrainConfig, trunk: Trunk, batch: dict[str, Tensor], *, lam: float = 0.0) -> StepOutput:
    """SFT or IFT on one micro-batch of B sequences; losses [B] (for token_mean: -S_b, normalised by the caller)."""
    labels = batch["labels"]
    if cfg.method == "ift":
        ids = batch["input_ids"]
        e_true = _embeds(trunk, ids)
        metrics = {"ift/lambda": torch.full((ids.shape[0],), lam)}
        e_in = e_true
        if lam > 0:
            # one-step-ahead greedy guesses from the gold prefix, never full logits
            guesses = models.greedy_next_tokens(trunk, batch["attention_mask"], e_true, chunk_size=cfg.chunk_size)
            guess = torch.cat([ids[:, :1], guesses[:, :-1]], dim=1)  # guess[:, t] predicts the token at t
            response = labels != -100
            mixed = torch.where(response, guess, ids)
            # bit-exact e_true off the response (a (1-lam)e + lam e blend is not, by an ulp)
            e_in = torch.where(response.unsqueeze(-1), (1.0 - lam) * e_true + lam * _embeds(trunk, mixed), e_true)
            wrong = ((guess != ids) & response).sum(-1).float() / response.sum(-1).clamp(min=1)
            metrics["ift/guess_error_rate"] = wrong
        stats = sequence_stats(cfg, trunk, batch, inputs_embeds=e_in, token_logps=True)
        mask = labels[:, 1:] != -100
        losses = ift_loss(stats.token_logps, mask, gamma=cfg.ift_gamma, detach_weights=cfg.ift_detach_weights)
        metrics["nll/seq_mean"] = (-stats.logps / stats.lengths.clamp(min=1)).detach()
    else:
        stats = sequence_stats(cfg, trunk, batch)
        if cfg.sft_normalization == "token_mean":
            losses = -stats.logps  # the caller divides by the step's global token count
        else:
            losses = sft_loss(stats.logps, stats.lengths, normalization=cfg.sft_normalization)
        metrics = {"nll/seq_mean": (-stats.logps / stats.lengths.clamp(min=1)).detach()}
    metrics["logps/sequence"] = stats.logps.detach()
    return StepOutput(losses=losses, metrics=metrics, tokens=int(batch["attention_mask"].sum()))


__all__ = ["StepOutput", "ift_lambda", "pair_step", "sequence_stats", "sequence_step"]
