"""One training step's forward for every method: batch -> statistics -> the method's loss -> per-row metrics.

The batch comes from alignlab.data's collators (pairs stacked as [chosen; rejected], 2B rows; with prefix sharing
or packing the batch also carries its packed rows, which the models run instead of the padded ones, every
statistic staying the padded batch's: alignlab.models.packing). Statistics come
from alignlab.models (the one scorer); what a method consumes and its loss come from its record in
alignlab.losses.registry, so nothing here tests a method's name. The caller sums the per-row losses and divides
by the step's global normaliser (rows, or tokens for a token-normalised method).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from alignlab import models
from alignlab.losses.kto import kto_reference_point
from alignlab.losses.registry import IFTParams, PairStats, SequenceStats, UnpairedStats
from alignlab.models import Trunk
from alignlab.ops import SequenceStats as TokenStats
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
                   token_logps: bool = False, log_sum_sq: bool = False,
                   inputs_embeds: Tensor | None = None) -> TokenStats:
    """Per-sequence statistics of a batch under the policy (and the reference when given), via alignlab.models.
    With packed rows in the batch, the models run them (inputs_embeds are then the rows')."""
    layout = models.PackedLayout.from_batch(batch)
    if inputs_embeds is None and cfg.method.resolved_freeze_input_embeddings:
        inputs_embeds = _embeds(trunk, batch["input_ids"] if layout is None else layout.input_ids)
    return models.sequence_stats(trunk, batch["input_ids"], batch["attention_mask"], batch["labels"], ref=ref,
                                 inputs_embeds=inputs_embeds, layout=layout, chunked=cfg.model.chunked_ops,
                                 chunk_size=cfg.model.chunk_size, chunk_bytes=cfg.model.chunk_mib * 2**20,
                                 kl=kl, reverse_kl=reverse_kl, entropy=entropy, token_logps=token_logps,
                                 log_sum_sq=log_sum_sq)


def _ranking_metrics(chosen: Tensor, rejected: Tensor, n_chosen: Tensor, n_rejected: Tensor) -> dict[str, Tensor]:
    return {
        "logps/chosen": chosen, "logps/rejected": rejected,
        "ranking/accuracy": (chosen > rejected).float(),
        "ranking/accuracy_normalized": (chosen / n_chosen.clamp(min=1) > rejected / n_rejected.clamp(min=1)).float(),
    }


def pair_step(cfg: TrainConfig, trunk: Trunk, batch: dict[str, Tensor], ref: Trunk | None,
              ref_logps: Tensor | None = None, *, eval_kl: bool = False,
              step_totals: tuple[float, float] | None = None) -> StepOutput:
    """Any paired method of the registry on one micro-batch of B pairs: statistics -> method.loss -> metrics.

    `ref_logps` [2B] are precomputed reference sums; otherwise `ref` runs online (methods with a reference).
    `eval_kl` also computes the forward and reverse sequence KL to the reference (for evaluation; methods that
    need the per-token KL always have it).
    """
    method, params = cfg.method.record, cfg.method.params
    extra = method.extra_stats(params)
    want_kl = method.needs_token_kl or (eval_kl and ref is not None)
    stats = sequence_stats(cfg, trunk, batch, ref=ref if ref_logps is None else None, kl=want_kl,
                           reverse_kl=eval_kl and ref is not None, token_logps="token_logps" in extra,
                           log_sum_sq="log_sum_sq" in extra)
    b = batch["input_ids"].shape[0] // 2
    logps, lengths = stats.logps, stats.lengths
    if ref_logps is None:
        ref_logps = stats.ref_logps
    kl = stats.kl if method.needs_token_kl else None
    pair = PairStats(logps[:b], logps[b:], lengths[:b], lengths[b:],
                     *((ref_logps[:b], ref_logps[b:]) if ref_logps is not None else (None, None)),
                     *((kl[:b], kl[b:]) if kl is not None else (None, None)),
                     *(step_totals or (None, None)), *_token_fields(stats, batch["labels"], b))
    out = method.loss(pair, params)
    metrics = _ranking_metrics(pair.chosen_logps.detach(), pair.rejected_logps.detach(), lengths[:b], lengths[b:])
    if pair.ref_chosen_logps is not None:
        margin_chosen = (pair.chosen_logps - pair.ref_chosen_logps).detach()
        metrics["rewards/dpo_accuracy"] = (margin_chosen > (pair.rejected_logps - pair.ref_rejected_logps)).float()
    r_chosen, r_rejected = out.chosen_rewards, out.rejected_rewards
    metrics.update(out.metrics)
    metrics.update({
        "rewards/chosen": r_chosen, "rewards/rejected": r_rejected, "rewards/margins": r_chosen - r_rejected,
        "rewards/accuracies": (r_chosen > r_rejected).float(),
    })
    if stats.kl is not None:
        metrics["kl/chosen"], metrics["kl/rejected"] = stats.kl[:b].detach(), stats.kl[b:].detach()
        metrics["kl/margin"] = metrics["kl/chosen"] - metrics["kl/rejected"]
    if stats.reverse_kl is not None:
        metrics["kl_reverse/chosen"], metrics["kl_reverse/rejected"] = stats.reverse_kl[:b], stats.reverse_kl[b:]
    return StepOutput(losses=out.losses, metrics=metrics, tokens=int(batch["attention_mask"].sum()))


# metrics of one side's rows only (KTO's desirable / undesirable examples): NaN on the others, averaged nan-aware
SIDE_METRICS = frozenset({"logps/chosen", "logps/rejected", "rewards/chosen", "rewards/rejected"})


def unpaired_step(cfg: TrainConfig, trunk: Trunk, batch: dict[str, Tensor], ref: Trunk, *,
                  all_reduce_mean: Callable[[Tensor], Tensor] | None = None) -> StepOutput:
    """An unpaired method of the registry (KTO) on one micro-batch of B labelled completions: statistics of the
    batch under the policy and the reference; with a KL batch (kl_* keys: each prompt with another example's
    completion) the reference point z0 from both models without gradient, averaged over processes before the
    clamp (`all_reduce_mean`), as TRL does; then method.loss. Per-side metrics are NaN on the other side's rows."""
    method, params = cfg.method.record, cfg.method.params
    stats = sequence_stats(cfg, trunk, batch, ref=ref)
    kl = None
    if "kl_input_ids" in batch:
        kl_batch = {k[len("kl_"):]: v for k, v in batch.items() if k.startswith("kl_")}  # with its packed rows
        with torch.no_grad():
            kl_stats = sequence_stats(cfg, trunk, kl_batch, ref=ref)
        kl = kto_reference_point(kl_stats.logps, kl_stats.ref_logps, all_reduce_mean=all_reduce_mean)
    desirable = batch["desirable"]
    out = method.loss(UnpairedStats(stats.logps, stats.ref_logps, stats.lengths, desirable, kl), params)
    nan = torch.full_like(stats.logps, float("nan"))
    rewards = out.metrics.pop("kto/reward")
    metrics = {
        "logps/chosen": torch.where(desirable, stats.logps.detach(), nan),
        "logps/rejected": torch.where(desirable, nan, stats.logps.detach()),
        "rewards/chosen": torch.where(desirable, rewards, nan),
        "rewards/rejected": torch.where(desirable, nan, rewards),
        **out.metrics,
    }
    if kl is not None:
        metrics["kl"] = kl.expand_as(stats.logps)
    return StepOutput(losses=out.losses, metrics=metrics, tokens=int(batch["attention_mask"].sum()))


def _token_fields(stats: TokenStats, labels: Tensor, b: int) -> tuple:
    """PairStats' per-token fields (policy and reference token log-probs, masks, log sum p^2), None where absent."""
    mask = labels[:, 1:] != -100

    def halves(x: Tensor | None) -> tuple:
        return (x[:b], x[b:]) if x is not None else (None, None)

    tokens = stats.token_logps is not None
    return (*halves(stats.token_logps), *halves(stats.ref_token_logps), *halves(mask if tokens else None),
            *halves(stats.log_sum_sq))


def ift_lambda(p: IFTParams, step: int, generator: torch.Generator | None = None, *, noise: bool = True) -> float:
    """IFT's lambda at an optimizer step: constant or a linear ramp, disturbed when p.ift_lambda_noise_std > 0
    and `noise` (training; evaluation runs at the scheduled value), arXiv 2405.11870 Sec. 4."""
    lam = p.ift_lambda
    if p.ift_lambda_schedule == "linear":
        ramp = min(1.0, step / max(p.ift_ramp_steps, 1))
        lam = p.ift_lambda_min + (p.ift_lambda - p.ift_lambda_min) * ramp
    if noise and p.ift_lambda_noise_std > 0:
        z = float(torch.randn((), generator=generator))
        lam = min(max(lam * (1.0 + p.ift_lambda_noise_std * z), 0.0), 1.0)
    return lam


def sequence_step(cfg: TrainConfig, trunk: Trunk, batch: dict[str, Tensor], *, lam: float = 0.0) -> StepOutput:
    """A single-sequence method of the registry (SFT, IFT) on one micro-batch of B sequences: losses [B] (summed
    by the caller and divided by rows, or by tokens where the method is token-normalised). `lam` is the
    temporal-residual mix of methods that mix their inputs (IFT)."""
    labels = batch["labels"]
    method = cfg.method.record
    metrics: dict[str, Tensor] = {}
    if method.mixes_inputs:
        # on packed rows the mix runs on the rows, token for token as on the padded ones: a sequence's first token
        # (position 0) has no previous position of its own, and no two sequences share a prefix
        layout = models.PackedLayout.from_batch(batch)
        if layout is not None and layout.shared:
            raise ValueError("IFT mixes each sequence's own previous prediction: its rows cannot share prefixes")
        ids, row_labels = (batch["input_ids"], labels) if layout is None else (layout.input_ids, layout.labels)
        e_true = _embeds(trunk, ids)
        metrics["ift/lambda"] = torch.full((labels.shape[0],), lam)
        e_in = e_true
        if lam > 0:
            # one-step-ahead greedy guesses from the gold prefix, never full logits
            guesses = models.greedy_next_tokens(trunk, batch["attention_mask"], e_true, chunk_size=cfg.model.chunk_size,
                                                chunk_bytes=cfg.model.chunk_mib * 2**20, layout=layout)
            guess = torch.cat([ids[:, :1], guesses[:, :-1]], dim=1)  # guess[:, t] predicts the token at t
            if layout is not None:
                guess = torch.where(layout.position_ids > 0, guess, ids)
            response = row_labels != -100
            mixed = torch.where(response, guess, ids)
            # bit-exact e_true off the response (a (1-lam)e + lam e blend is not, by an ulp)
            e_in = torch.where(response.unsqueeze(-1), (1.0 - lam) * e_true + lam * _embeds(trunk, mixed), e_true)
            if layout is not None:  # back to the logical sequences for the per-sequence metric
                guess, response = layout.to_logical(guess), labels != -100
            wrong = ((guess != batch["input_ids"]) & response).sum(-1).float() / response.sum(-1).clamp(min=1)
            metrics["ift/guess_error_rate"] = wrong
    else:
        e_in = None  # the ids (or, with freeze_input_embeddings, the frozen view sequence_stats makes of them)
    stats = sequence_stats(cfg, trunk, batch, inputs_embeds=e_in,
                           token_logps="token_logps" in method.extra_stats(cfg.method.params))
    mask = labels[:, 1:] != -100
    out = method.loss(SequenceStats(stats.logps, stats.lengths, stats.token_logps, mask), cfg.method.params)
    losses = out.losses
    metrics.update(out.metrics)
    metrics["nll/seq_mean"] = (-stats.logps / stats.lengths.clamp(min=1)).detach()
    metrics["logps/sequence"] = stats.logps.detach()
    return StepOutput(losses=losses, metrics=metrics, tokens=int(batch["attention_mask"].sum()))


__all__ = ["SIDE_METRICS", "StepOutput", "ift_lambda", "pair_step", "sequence_stats", "sequence_step", "unpaired_step"]
