"""SimPO and ORPO against their paper formulas, init values and gradient facts (arXiv 2405.14734, 2403.07691)."""

import math

import mpmath as mp
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses import orpo_loss, simpo_loss
from alignlab.losses.orpo import log1mexp, orpo_log_odds


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


# ------------------------------------------------------------------ exactness near P = 1 and the NLL normalisations


def _mp_log1mexp(a):
    mp.mp.dps = 60
    return mp.log(1 - mp.exp(mp.mpf(a)))


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-13), (torch.float32, 1e-6)])
def test_log1mexp_exact_with_finite_gradient_up_to_zero(dtype, rtol):
    """Value and gradient -e^a / (1 - e^a) match 60-digit references on both branches; the unselected branch
    used to send NaN gradients once exp(a) rounds to 1 (a > -1e-8 in float32)."""
    values = [-1e-30, -1e-20, -1e-10, -1e-7, -0.5, -0.7, -5.0, -50.0]
    a = torch.tensor(values, dtype=dtype, requires_grad=True)
    out = log1mexp(a)
    (g,) = torch.autograd.grad(out.sum(), a)
    out = out.detach()
    mp.mp.dps = 60
    for i in range(len(values)):
        v = float(a[i].detach())  # the value as stored in dtype
        e = mp.exp(mp.mpf(v))
        assert float(out[i]) == pytest.approx(float(_mp_log1mexp(v)), rel=rtol)
        assert float(g[i]) == pytest.approx(float(-e / (1 - e)), rel=rtol)
    assert float(log1mexp(torch.zeros(1, dtype=dtype))) == -math.inf


def _mp_orpo(sc, sr, nc, nr, lam):
    """Loss, log odds from the paper's P = exp(S / n), odds = P / (1 - P), at 60 digits."""
    mp.mp.dps = 60
    pw, pl = mp.exp(mp.mpf(sc) / nc), mp.exp(mp.mpf(sr) / nr)
    log_odds = mp.log(pw / (1 - pw)) - mp.log(pl / (1 - pl))
    return float(-mp.mpf(sc) / nc + lam * mp.log(1 + mp.exp(-log_odds))), float(log_odds)


# float32: log odds near P = 1 is a difference of logs of ~20 nats, so ~1e-6 of it is rounding
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_orpo_exact_when_mean_probability_is_near_one(dtype, rtol):
    """Mean log-probs above -1e-6 (P > 1 - 1e-6) were clamped to -1e-6, moving the log odds by up to ln(1e6 / 4e-12)."""
    sc = torch.tensor([-4e-7, -4e-9, -4e-12, -2.0], dtype=dtype)
    sr = torch.tensor([-3.0, -1e-8, -8.0, -4e-10], dtype=dtype)
    n = torch.tensor([4, 4, 4, 4])
    losses, _, _ = orpo_loss(sc, sr, n, n, lam=0.5)
    log_odds = orpo_log_odds(sc / 4, sr / 4)
    for i in range(4):
        want_loss, want_odds = _mp_orpo(float(sc[i]), float(sr[i]), 4, 4, 0.5)
        assert float(losses[i]) == pytest.approx(want_loss, rel=rtol)
        assert float(log_odds[i]) == pytest.approx(want_odds, rel=rtol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_orpo_finite_gradient_at_probability_one(dtype):
    """Sbar = 0 exactly (every token at probability 1 in the working precision): finite loss and gradients with
    the right signs, on either side and on both."""
    sc = torch.tensor([0.0, -3.0, 0.0], dtype=dtype, requires_grad=True)
    sr = torch.tensor([-3.0, 0.0, 0.0], dtype=dtype, requires_grad=True)
    n = torch.tensor([3, 3, 3])
    losses, _, _ = orpo_loss(sc, sr, n, n)
    g_c, g_r = torch.autograd.grad(losses.sum(), (sc, sr))
    assert torch.isfinite(losses).all() and torch.isfinite(g_c).all() and torch.isfinite(g_r).all()
    assert (g_c < 0).all() and (g_r >= 0).all()


def _batch(seed, b=8):
    g = torch.Generator().manual_seed(seed)
    nc, nr = torch.randint(1, 40, (b,), generator=g), torch.randint(1, 40, (b,), generator=g)
    sc = -(torch.rand(b, generator=g, dtype=torch.float64) * 2 + 0.05) * nc
    sr = -(torch.rand(b, generator=g, dtype=torch.float64) * 2 + 0.05) * nr
    return sc, sr, nc, nr


def test_orpo_batch_token_mean_value():
    """The caller's mean over rows is -sum S_w / sum n_w + lam mean_b -log sigma(log odds_b) (TRL's reduction)."""
    sc, sr, nc, nr = _batch(0)
    losses, _, _ = orpo_loss(sc, sr, nc, nr, lam=0.25, nll_normalization="batch_token_mean")
    odds_terms = [_mp_orpo(float(sc[i]), float(sr[i]), int(nc[i]), int(nr[i]), 0.25)[0] + float(sc[i]) / int(nc[i])
                  for i in range(8)]
    want = -float(sc.sum()) / int(nc.sum()) + sum(odds_terms) / 8
    assert float(losses.mean()) == pytest.approx(want, rel=1e-12)
    seq, _, _ = orpo_loss(sc, sr, nc, nr, lam=0.25)  # the default: per-sequence means
    assert float(seq.mean()) == pytest.approx(sum(-float(sc[i]) / int(nc[i]) for i in range(8)) / 8
                                              + sum(odds_terms) / 8, rel=1e-12)


def _step_grads(sc, sr, nc, nr, micro, **kwargs):
    """The trainer's reduction: per-row losses of each micro-batch summed, divided by the step's pair count."""
    sc, sr = sc.clone().requires_grad_(), sr.clone().requires_grad_()
    total = sum(orpo_loss(sc[i:i + micro], sr[i:i + micro], nc[i:i + micro], nr[i:i + micro], lam=0.1,
                          nll_normalization="batch_token_mean", **kwargs)[0].sum()
                for i in range(0, len(sc), micro)) / len(sc)
    return (total.detach(), *torch.autograd.grad(total, (sc, sr)))


def test_orpo_batch_token_mean_accumulation_invariance():
    """8 x 1 equals 4 x 2 (and 2 x 4) once every micro-batch gets the step's totals; a per-micro-batch token mean
    does not (the lengths differ between micro-batches)."""
    sc, sr, nc, nr = _batch(1)
    full = _step_grads(sc, sr, nc, nr, 8)
    for micro in (4, 2):
        split = _step_grads(sc, sr, nc, nr, micro, total_chosen_tokens=int(nc.sum()), total_pairs=8)
        for a, b in zip(full, split):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    local = _step_grads(sc, sr, nc, nr, 4)
    assert not torch.allclose(local[1], full[1])


def test_orpo_nll_options_validated():
    sc, sr, nc, nr = _batch(2, b=2)
    with pytest.raises(ValueError, match="nll_normalization"):
        orpo_loss(sc, sr, nc, nr, nll_normalization="token_mean")
    with pytest.raises(ValueError, match="batch_token_mean"):
        orpo_loss(sc, sr, nc, nr, total_chosen_tokens=10)
    with pytest.raises(ValueError, match="> 0"):
        orpo_loss(sc, sr, nc, nr, nll_normalization="batch_token_mean", total_chosen_tokens=0)
