"""f-DPO (arXiv 2309.16240): each divergence against f'(u) written from its f, the limits and init facts."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses import dpo_loss, fdpo_loss


def _stats(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, generator=g, dtype=torch.float64) * 3 for _ in range(4)]


def _fprime(u, divergence, alpha):
    """f'(u) from Table 1 of the paper, differentiated by hand (constants kept: they cancel in differences)."""
    if divergence == "reverse_kl":  # f = u log u
        return torch.log(u) + 1
    if divergence == "forward_kl":  # f = -log u
        return -1 / u
    if divergence == "js":  # f = u log u - (u + 1) log((u + 1) / 2)
        return torch.log(u) - torch.log((u + 1) / 2)
    return (1 - u ** (-alpha)) / alpha  # alpha-divergence


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.05, 2.0), alpha=st.floats(0.05, 0.95),
       divergence=st.sampled_from(["reverse_kl", "forward_kl", "js", "alpha"]))
def test_matches_fprime_of_each_divergence(seed, beta, alpha, divergence):
    pc, pr, rc, rr = _stats(seed)
    losses, cr, rr_ = fdpo_loss(pc, pr, rc, rr, beta=beta, divergence=divergence, alpha=alpha)
    uw, ul = torch.exp(pc - rc), torch.exp(pr - rr)
    bracket = _fprime(uw, divergence, alpha) - _fprime(ul, divergence, alpha)
    x = beta * bracket
    torch.testing.assert_close(losses, torch.logaddexp(torch.zeros_like(x), -x))  # -log sigma(x), overflow-free
    torch.testing.assert_close(cr - rr_, beta * bracket)


def test_reverse_kl_equals_dpo():
    pc, pr, rc, rr = _stats(0)
    torch.testing.assert_close(fdpo_loss(pc, pr, rc, rr, divergence="reverse_kl")[0], dpo_loss(pc, pr, rc, rr)[0])


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "js", "alpha"])
def test_log2_at_init_and_initial_gradient(divergence):
    x = torch.tensor([-7.0], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([-7.0], dtype=torch.float64)
    losses, _, _ = fdpo_loss(x, c, c, c, beta=0.1, divergence=divergence)
    assert float(losses.detach()) == pytest.approx(math.log(2))
    (g,) = torch.autograd.grad(losses.sum(), x)
    expected = -0.05 * (0.5 if divergence == "js" else 1.0)  # d bracket / d r_w = 1, or 1/2 for JS
    assert float(g) == pytest.approx(expected)


def test_alpha_limits():
    pc, pr, rc, rr = _stats(4)
    near_rkl = fdpo_loss(pc, pr, rc, rr, divergence="alpha", alpha=1e-4)[0]
    near_fkl = fdpo_loss(pc, pr, rc, rr, divergence="alpha", alpha=1 - 1e-4)[0]
    torch.testing.assert_close(near_rkl, fdpo_loss(pc, pr, rc, rr, divergence="reverse_kl")[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(near_fkl, fdpo_loss(pc, pr, rc, rr, divergence="forward_kl")[0], rtol=1e-3, atol=1e-3)


def test_forward_kl_finite_for_huge_log_ratios():
    x = torch.tensor([-500.0, 300.0])
    losses, cr, rr = fdpo_loss(x, -x, torch.zeros(2), torch.zeros(2), divergence="forward_kl")
    assert torch.isfinite(losses).all() and torch.isfinite(cr).all() and torch.isfinite(rr).all()


def test_bad_divergence_and_alpha():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="divergence"):
        fdpo_loss(x, x, x, x, divergence="hellinger")
    with pytest.raises(ValueError, match="alpha"):
        fdpo_loss(x, x, x, x, divergence="alpha", alpha=1.0)
