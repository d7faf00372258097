"""SimPO and ORPO against their paper formulas, init values and gradient facts (losses.md §7-8)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses import orpo_loss, simpo_loss
from alignlab.losses.orpo import log1mexp


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.5, 10.0), gamma=st.floats(0.0, 3.0))
def test_simpo_formula(seed, beta, gamma):
    g = torch.Generator().manual_seed(seed)
    sc, sr = -torch.rand(4, generator=g, dtype=torch.float64) * 40, -torch.rand(4, generator=g, dtype=torch.float64) * 40
    nc, nr = torch.randint(1, 30, (4,), generator=g), torch.randint(1, 30, (4,), generator=g)
    losses, cr, rr = simpo_loss(sc, sr, nc, nr, beta=beta, gamma=gamma)
    torch.testing.assert_close(rr, beta * sr / nr)
    torch.testing.assert_close(losses, -torch.log(torch.sigmoid(beta * sc / nc - beta * sr / nr - gamma)))
    torch.testing.assert_close(cr, beta * sc / nc)


def test_simpo_init_value():
    x = torch.tensor([-10.0])
    n = torch.tensor([5])
    assert float(simpo_loss(x, x, n, n, gamma=0.5)[0]) == pytest.approx(0.974, abs=1e-3)
    assert float(simpo_loss(x, x, n, n, beta=2.0, gamma=1.6)[0]) == pytest.approx(1.784, abs=1e-3)


def test_simpo_token_gradient():
    """d L / d log pi(y_t) = -(beta / n_w) sigma(gamma - beta (Sbar_w - Sbar_l)) at every chosen token."""
    sc = torch.tensor([-6.0], dtype=torch.float64, requires_grad=True)
    sr = torch.tensor([-9.0], dtype=torch.float64)
    nc, nr = torch.tensor([3]), torch.tensor([4])
    (g,) = torch.autograd.grad(simpo_loss(sc, sr, nc, nr)[0].sum(), sc)
    expected = -(2.0 / 3) * torch.sigmoid(torch.tensor(0.5 - 2.0 * (-2.0 + 2.25), dtype=torch.float64))
    assert float(g) == pytest.approx(float(expected))


def test_log1mexp_stable_both_branches():
    a = torch.tensor([-1e-8, -0.1, -0.7, -5.0, -50.0], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(a), torch.log(-torch.expm1(a)))
    assert torch.isfinite(log1mexp(torch.tensor([-1e-7, -100.0]))).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), lam=st.floats(0.01, 1.0))
def test_orpo_formula(seed, lam):
    g = torch.Generator().manual_seed(seed)
    nc, nr = torch.randint(1, 20, (4,), generator=g), torch.randint(1, 20, (4,), generator=g)
    sc = -(torch.rand(4, generator=g, dtype=torch.float64) * 3 + 0.05) * nc
    sr = -(torch.rand(4, generator=g, dtype=torch.float64) * 3 + 0.05) * nr
    losses, cr, rr = orpo_loss(sc, sr, nc, nr, lam=lam)
    torch.testing.assert_close(rr, lam * sr / nr)
    pw, pl = torch.exp(sc / nc), torch.exp(sr / nr)
    log_odds = torch.log(pw / (1 - pw)) - torch.log(pl / (1 - pl))
    torch.testing.assert_close(losses, -sc / nc - lam * torch.log(torch.sigmoid(log_odds)))
    torch.testing.assert_close(cr, lam * sc / nc)


def test_orpo_init_equal_means():
    x = torch.tensor([-8.0])
    n = torch.tensor([4])
    assert float(orpo_loss(x, x, n, n, lam=0.1)[0]) == pytest.approx(2.0 + 0.1 * math.log(2))


def test_orpo_finite_near_zero_logp():
    losses, _, _ = orpo_loss(torch.tensor([0.0]), torch.tensor([-3.0]), torch.tensor([3]), torch.tensor([3]))
    assert torch.isfinite(losses).all()
