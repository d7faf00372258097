"""CPO (arXiv 2401.08417) against a float64 transcription of TRL 1.16's CPOTrainer (trl/experimental/cpo):
loss = mean_b cpo_loss_b + cpo_alpha * CrossEntropy(chosen tokens), values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.losses.cpo import cpo_loss


def _batch(seed: int, b: int = 4, t: int = 7):
    g = torch.Generator().manual_seed(seed)
    tok_c = (-3 * torch.rand(b, t, generator=g, dtype=torch.float64)).requires_grad_()
    tok_r = (-3 * torch.rand(b, t, generator=g, dtype=torch.float64)).requires_grad_()
    mask_c = torch.arange(t) < torch.randint(2, t + 1, (b, 1), generator=g)
    mask_r = torch.arange(t) < torch.randint(2, t + 1, (b, 1), generator=g)
    return tok_c, tok_r, mask_c, mask_r


def _trl(tok_c, tok_r, mask_c, mask_r, *, beta, loss_type, label_smoothing, simpo_gamma, cpo_alpha):
    """TRL's formula, written from its code: get_batch_logps (sum, or mean for ipo/simpo), cpo_loss, then
    losses.mean() + cpo_alpha * nn.CrossEntropyLoss over the chosen labels (mean over the batch's chosen tokens)."""
    s_c, s_r = (tok_c * mask_c).sum(-1), (tok_r * mask_r).sum(-1)
    if loss_type in ("ipo", "simpo"):
        s_c, s_r = s_c / mask_c.sum(-1), s_r / mask_r.sum(-1)
    logits = s_c - s_r
    if loss_type == "simpo":
        logits = logits - simpo_gamma / beta
    if loss_type in ("sigmoid", "simpo"):
        losses = (-torch.nn.functional.logsigmoid(beta * logits) * (1 - label_smoothing)
                  - torch.nn.functional.logsigmoid(-beta * logits) * label_smoothing)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    nll = -(tok_c * mask_c).sum() / mask_c.sum()
    return losses.mean() + cpo_alpha * nll


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo", "simpo"])
@pytest.mark.parametrize("cpo_alpha", [0.0, 1.0, 0.3])
def test_matches_trl_values_and_gradients(loss_type, cpo_alpha):
    tok_c, tok_r, mask_c, mask_r = _batch(3)
    kw = {"beta": 0.2, "loss_type": loss_type, "label_smoothing": 0.1 if loss_type in ("sigmoid", "simpo") else 0.0,
          "simpo_gamma": 0.5, "cpo_alpha": cpo_alpha}
    want = _trl(tok_c, tok_r, mask_c, mask_r, **kw)
    losses, _, _ = cpo_loss((tok_c * mask_c).sum(-1), (tok_r * mask_r).sum(-1), mask_c.sum(-1), mask_r.sum(-1), **kw)
    got = losses.mean()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g_got = torch.autograd.grad(got, [tok_c, tok_r])
    g_want = torch.autograd.grad(_trl(tok_c, tok_r, mask_c, mask_r, **kw), [tok_c, tok_r])
    for a, w in zip(g_got, g_want):
        torch.testing.assert_close(a, w, rtol=1e-12, atol=1e-12)


def test_step_totals_make_the_nll_a_token_mean_over_micro_batches():
    tok_c, tok_r, mask_c, mask_r = _batch(5, b=8)
    s_c, s_r, n_c, n_r = (tok_c * mask_c).sum(-1), (tok_r * mask_r).sum(-1), mask_c.sum(-1), mask_r.sum(-1)
    whole = cpo_loss(s_c, s_r, n_c, n_r)[0].sum() / 8
    total = float(n_c.sum())
    halves = sum(cpo_loss(s_c[i:i + 4], s_r[i:i + 4], n_c[i:i + 4], n_r[i:i + 4], total_chosen_tokens=total,
                          total_pairs=8)[0].sum() for i in (0, 4)) / 8
    torch.testing.assert_close(halves, whole, rtol=1e-12, atol=1e-12)


def test_known_value_at_equal_log_probs():
    zero, n = torch.zeros(3, dtype=torch.float64), torch.full((3,), 4)
    losses, _, _ = cpo_loss(zero, zero, n, n, cpo_alpha=0.0)
    torch.testing.assert_close(losses, torch.full((3,), math.log(2), dtype=torch.float64))


@pytest.mark.parametrize("kwargs", [{"loss_type": "kto"}, {"beta": 0.0}, {"cpo_alpha": -1.0},
                                    {"loss_type": "hinge", "label_smoothing": 0.1}])
def test_bad_options_raise(kwargs):
    x, n = torch.zeros(1), torch.ones(1)
    with pytest.raises(ValueError):
        cpo_loss(x, x, n, n, **kwargs)
