"""SFT normalisations and the IFT loss (arXiv 2405.11870 and its official code): closed form, worked example, special cases."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses import future_discounted_sum, ift_loss, sft_loss


def test_sft_normalizations():
    logps = torch.tensor([-6.0, -2.0])
    n = torch.tensor([3, 1])
    torch.testing.assert_close(sft_loss(logps, n, normalization="sum"), torch.tensor([6.0, 2.0]))
    torch.testing.assert_close(sft_loss(logps, n, normalization="seq_mean"), torch.tensor([2.0, 2.0]))
    assert float(sft_loss(logps, n, normalization="token_mean").mean()) == pytest.approx(8.0 / 4)
    # with a global token count the per-row values sum over micro-batches to the global token mean
    assert float(sft_loss(logps, n, normalization="token_mean", total_tokens=8).mean()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="normalization"):
        sft_loss(logps, n, normalization="mean")


def test_ift_worked_example():
    """l = (2, 1), gamma 0.5: S = (2.5, 1), loss = (2*2.5 + 1*1) / 3.5 = 1.714."""
    lp = torch.tensor([[-2.0, -1.0]])
    assert float(ift_loss(lp, torch.ones(1, 2), gamma=0.5)) == pytest.approx(6.0 / 3.5)


def _closed_form(lp, mask, gamma):
    """Loops in float64: S_t = sum_{k >= t, masked} gamma^(k - t) l_k over absolute positions."""
    out = []
    for b in range(lp.shape[0]):
        l = [(-float(lp[b, t]) if mask[b, t] else 0.0) for t in range(lp.shape[1])]
        s = [sum(gamma ** (k - t) * l[k] for k in range(t, len(l))) if mask[b, t] else 0.0 for t in range(len(l))]
        den = sum(s)
        out.append(sum(a * c for a, c in zip(l, s)) / den if den else 0.0)
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), gamma=st.floats(0.01, 0.99), length=st.integers(1, 12))
def test_ift_matches_closed_form_with_masked_gaps(seed, gamma, length):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(3, length, generator=g, dtype=torch.float64) * 4
    mask = torch.rand(3, length, generator=g) > 0.3
    mask[:, 0] = True
    torch.testing.assert_close(ift_loss(lp, mask, gamma=gamma), _closed_form(lp, mask, gamma))


def test_gamma_zero_is_per_sequence_mean_nll_with_same_gradients():
    g = torch.Generator().manual_seed(0)
    lp = (-torch.rand(2, 6, generator=g, dtype=torch.float64) * 3).requires_grad_()
    mask = torch.tensor([[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    ift = ift_loss(lp, mask, gamma=0.0)
    sft = sft_loss((lp * mask).sum(-1), mask.sum(-1), normalization="seq_mean")
    torch.testing.assert_close(ift, sft)
    torch.testing.assert_close(torch.autograd.grad(ift.sum(), lp)[0], torch.autograd.grad(sft.sum(), lp)[0])


def test_detach_weights_changes_gradient_not_value():
    lp = torch.tensor([[-2.0, -1.0, -0.5]], dtype=torch.float64, requires_grad=True)
    m = torch.ones(1, 3)
    a = ift_loss(lp, m, detach_weights=False)
    b = ift_loss(lp, m, detach_weights=True)
    torch.testing.assert_close(a, b)
    ga, gb = torch.autograd.grad(a.sum(), lp)[0], torch.autograd.grad(b.sum(), lp)[0]
    assert not torch.allclose(ga, gb)


def test_future_discounted_sum_reverse_scan():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(future_discounted_sum(x, 0.5), torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0]]))


def test_zero_loss_row_is_zero_not_nan():
    out = ift_loss(torch.zeros(1, 4), torch.ones(1, 4))
    assert float(out) == 0.0


def test_gamma_out_of_range():
    with pytest.raises(ValueError, match="gamma"):
        ift_loss(torch.zeros(1, 2), torch.ones(1, 2), gamma=1.0)
