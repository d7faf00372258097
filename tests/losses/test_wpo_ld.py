"""WPO weighting (arXiv 2406.11827 Eq. 2) and LD-DPO (arXiv 2409.06411) against a float64 transcription of TRL
1.16's DPOTrainer._compute_loss (per-token log-probs, completion masks, log_sum_sq_probs), through the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alignlab.losses.registry import PairStats, get_method


def _tokens(seed: int, b: int = 3, t: int = 9):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, t + 1, (2 * b,), generator=g)
    mask = torch.arange(t) < lengths.unsqueeze(1)  # [2B, T] chosen rows then rejected rows
    logits = torch.randn(2 * b, t, 11, generator=g, dtype=torch.float64) * 2
    logits.requires_grad_()
    targets = torch.randint(0, 11, (2 * b, t), generator=g)
    ref_logits = torch.randn(2 * b, t, 11, generator=g, dtype=torch.float64) * 2
    return logits, ref_logits, targets, mask


def _per_token(logits, targets, mask):
    return torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask


def _trl(logits, ref_logits, targets, mask, *, beta, ld_alpha, use_weighting):
    """TRL 1.16, transcribed: LD sums from comp_pos / shared_lens, sigmoid loss, WPO weights from log_sum_sq."""
    per_token = _per_token(logits, targets, mask)
    ref_per_token = _per_token(ref_logits, targets, mask).detach()
    if ld_alpha is None:
        logps, ref_logps = per_token.sum(1), ref_per_token.sum(1)
    else:
        comp_pos = mask.cumsum(dim=1)
        chosen_lens, rejected_lens = mask.sum(dim=1).long().chunk(2, dim=0)
        shared = torch.minimum(chosen_lens, rejected_lens)
        shared = torch.cat([shared, shared], dim=0)
        shared_mask = (comp_pos > 0) & (comp_pos <= shared.unsqueeze(1))
        tail_mask = comp_pos > shared.unsqueeze(1)
        logps = (per_token * shared_mask).sum(1) + ld_alpha * (per_token * tail_mask).sum(1)
        ref_logps = (ref_per_token * shared_mask).sum(1) + ld_alpha * (ref_per_token * tail_mask).sum(1)
    c, r = logps.chunk(2)
    rc, rr = ref_logps.chunk(2)
    loss = -F.logsigmoid(beta * ((c - rc) - (r - rr)))
    if use_weighting:
        lengths = mask.sum(1).clamp_min(1)
        with torch.no_grad():
            log_sum_sq = torch.logsumexp(2 * torch.log_softmax(logits, -1), -1)
            aligned = (per_token - log_sum_sq) * mask
        weights = torch.exp(aligned.sum(1) / lengths)
        wc, wr = weights.chunk(2)
        loss = loss * wc * wr
    return loss


@pytest.mark.parametrize(("ld_alpha", "use_weighting"), [(None, True), (0.5, False), (0.0, False), (0.3, True)])
def test_matches_trl(ld_alpha, use_weighting):
    logits, ref_logits, targets, mask = _tokens(7)
    want = _trl(logits, ref_logits, targets, mask, beta=0.2, ld_alpha=ld_alpha, use_weighting=use_weighting)
    method = get_method("dpo")
    params = method.make_params({"beta": 0.2, "ld_alpha": ld_alpha, "use_weighting": use_weighting})
    tok = _per_token(logits, targets, mask)
    ref_tok = _per_token(ref_logits, targets, mask).detach()
    with torch.no_grad():
        lss = (torch.logsumexp(2 * torch.log_softmax(logits, -1), -1) * mask).sum(1)
    b = 3
    n = mask.sum(1)
    stats = PairStats(tok.sum(1)[:b], tok.sum(1)[b:], n[:b], n[b:], ref_tok.sum(1)[:b], ref_tok.sum(1)[b:],
                      chosen_token_logps=tok[:b], rejected_token_logps=tok[b:], ref_chosen_token_logps=ref_tok[:b],
                      ref_rejected_token_logps=ref_tok[b:], chosen_mask=mask[:b], rejected_mask=mask[b:],
                      chosen_log_sum_sq=lss[:b], rejected_log_sum_sq=lss[b:])
    got = method.loss(stats, params).losses
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g_got, = torch.autograd.grad(got.sum(), [logits])
    g_want, = torch.autograd.grad(_trl(logits, ref_logits, targets, mask, beta=0.2, ld_alpha=ld_alpha,
                                       use_weighting=use_weighting).sum(), [logits])
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)


def test_ld_alpha_one_is_plain_dpo_through_the_registry():
    logits, ref_logits, targets, mask = _tokens(3)
    tok, ref_tok, n, b = _per_token(logits, targets, mask), _per_token(ref_logits, targets, mask), mask.sum(1), 3
    full = PairStats(tok.sum(1)[:b], tok.sum(1)[b:], n[:b], n[b:], ref_tok.sum(1)[:b], ref_tok.sum(1)[b:],
                     chosen_token_logps=tok[:b], rejected_token_logps=tok[b:], ref_chosen_token_logps=ref_tok[:b],
                     ref_rejected_token_logps=ref_tok[b:], chosen_mask=mask[:b], rejected_mask=mask[b:])
    method = get_method("dpo")
    torch.testing.assert_close(method.loss(full, method.make_params({"ld_alpha": 1.0})).losses,
                               method.loss(full, method.make_params({})).losses, rtol=1e-12, atol=1e-12)
