"""DPO / cDPO / IPO against hand-computed values, the paper formulas and gradient facts (arXiv 2305.18290, 2310.12036)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses import dpo_loss, reference_scaled_dpo_loss

LOG2 = math.log(2.0)


def _stats(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64) * 10 for _ in range(4)]


def test_log2_at_init():
    x = torch.tensor([-12.5, -3.0, -80.0])
    losses, cr, rr = dpo_loss(x, x - 1, x, x - 1)
    torch.testing.assert_close(losses, torch.full((3,), LOG2))
    assert torch.equal(cr, torch.zeros(3)) and torch.equal(rr, torch.zeros(3))


def test_hand_computed_value():
    # h = (-10 - -12) - (-20 - -19) = 2 - (-1) = 3 ; beta 0.5 -> softplus(-1.5)
    losses, cr, rr = dpo_loss(torch.tensor([-10.0]), torch.tensor([-20.0]), torch.tensor([-12.0]),
                              torch.tensor([-19.0]), beta=0.5)
    assert float(losses) == pytest.approx(math.log1p(math.exp(-1.5)), rel=1e-6)
    assert float(cr) == pytest.approx(1.0) and float(rr) == pytest.approx(-0.5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 5.0), eps=st.floats(0.0, 0.49))
def test_paper_formulas(seed, beta, eps):
    pc, pr, rc, rr = _stats(seed)
    h = (pc - rc) - (pr - rr)
    sig = 1 / (1 + torch.exp(-beta * h))
    dpo, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta)
    torch.testing.assert_close(dpo, -torch.log(sig))
    cdpo, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps)
    one_minus_sig = 1 / (1 + torch.exp(beta * h))  # float64: no cancellation in 1 - sig
    torch.testing.assert_close(cdpo, -(1 - eps) * torch.log(sig) - eps * torch.log(one_minus_sig))
    ipo, _, _ = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type="ipo")
    torch.testing.assert_close(ipo, (h - 1 / (2 * beta)) ** 2)


def test_cdpo_zero_smoothing_equals_dpo():
    pc, pr, rc, rr = _stats(1)
    assert torch.equal(dpo_loss(pc, pr, rc, rr)[0], dpo_loss(pc, pr, rc, rr, label_smoothing=0.0)[0])


def test_gradient_at_init_is_minus_beta_over_two():
    pc = torch.tensor([-5.0], dtype=torch.float64, requires_grad=True)
    losses, _, _ = dpo_loss(pc, torch.tensor([-5.0]), torch.tensor([-5.0]), torch.tensor([-5.0]), beta=0.3)
    (g,) = torch.autograd.grad(losses.sum(), pc)
    assert float(g) == pytest.approx(-0.15)


def test_cdpo_has_finite_minimiser():
    """dL/dh = 0 at h* = log((1 - eps) / eps) / beta (21.97 at eps 0.1, beta 0.1)."""
    h = torch.tensor([math.log(9.0) / 0.1], dtype=torch.float64, requires_grad=True)
    z = torch.zeros(1, dtype=torch.float64)
    losses, _, _ = dpo_loss(h, z, z, z, beta=0.1, label_smoothing=0.1)
    (g,) = torch.autograd.grad(losses.sum(), h)
    assert abs(float(g)) < 1e-12


def test_ipo_init_value_and_optimum():
    z = torch.zeros(2)
    assert torch.allclose(dpo_loss(z, z, z, z, beta=0.1, loss_type="ipo")[0], torch.full((2,), 25.0))
    h = torch.tensor([5.0])
    assert float(dpo_loss(h, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=0.1, loss_type="ipo")[0]) == 0.0


def test_swap_maps_h_to_minus_h():
    pc, pr, rc, rr = _stats(2)
    h = (pc - rc) - (pr - rr)
    torch.testing.assert_close(dpo_loss(pr, pc, rr, rc)[0], torch.nn.functional.softplus(0.1 * h))


def test_reference_scaled_limits():
    pc, pr, rc, rr = _stats(3)
    torch.testing.assert_close(reference_scaled_dpo_loss(pc, pr, rc, rr, gamma=1.0)[0], dpo_loss(pc, pr, rc, rr)[0])
    z = torch.zeros_like(pc)
    torch.testing.assert_close(reference_scaled_dpo_loss(pc, pr, rc, rr, gamma=0.0)[0], dpo_loss(pc, pr, z, z)[0])


@pytest.mark.parametrize("kwargs,match", [({"loss_type": "hinge_typo"}, "loss_type"), ({"label_smoothing": 0.5}, "label_smoothing"),
                                          ({"loss_type": "ipo", "label_smoothing": 0.1}, "ipo"), ({"beta": 0.0}, "beta")])
def test_bad_options_rejected(kwargs, match):
    x = torch.zeros(1)
    with pytest.raises(ValueError, match=match):
        dpo_loss(x, x, x, x, **kwargs)
