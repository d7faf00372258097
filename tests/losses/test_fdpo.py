"""f-DPO (arXiv 2309.16240): each divergence against f'(u) written from its f, the limits and init facts."""

import math

import mpmath as mp
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


def test_huge_log_ratios_overflow_only_where_the_true_value_does():
    """Pinned finite capped values before; the true loss 0.1 (e^500 - e^-500) and reward -0.1 e^500 exceed float32
    (+-inf is right there), the rest is exact, and nothing is NaN."""
    x = torch.tensor([-500.0, 300.0])
    losses, cr, rr = fdpo_loss(x, -x, torch.zeros(2), torch.zeros(2), divergence="forward_kl")
    assert losses.tolist() == [math.inf, 0.0]
    assert cr[0] == -math.inf and rr[1] == -math.inf and abs(float(cr[1])) < 1e-30 and abs(float(rr[0])) < 1e-30


def _mp_reference(r_w, r_l, beta, divergence, alpha):
    """Loss and dL/dr_w, dL/dr_l from the paper's f' at 60 digits (mpmath: no overflow), rounded to float64."""
    mp.mp.dps = 60
    r_w, r_l, beta = mp.mpf(r_w), mp.mpf(r_l), mp.mpf(beta)
    a = {"forward_kl": mp.mpf(1), "alpha": mp.mpf(alpha)}.get(divergence)
    if divergence == "reverse_kl":
        bracket, d_w, d_l = r_w - r_l, mp.mpf(1), mp.mpf(-1)
    elif divergence == "js":  # f'(u) = log(2u / (1 + u))
        f = lambda r: mp.log(2 * mp.exp(r) / (1 + mp.exp(r)))
        bracket, d_w, d_l = f(r_w) - f(r_l), 1 / (1 + mp.exp(r_w)), -1 / (1 + mp.exp(r_l))
    else:  # f'(u) = (1 - u^-a) / a, a = 1: forward KL
        f = lambda r: (1 - mp.exp(-a * r)) / a
        bracket, d_w, d_l = f(r_w) - f(r_l), mp.exp(-a * r_w), -mp.exp(-a * r_l)
    x = beta * bracket
    dloss_dx = -1 / (1 + mp.exp(x))
    return float(mp.log(1 + mp.exp(-x))), float(dloss_dx * beta * d_w), float(dloss_dx * beta * d_l)


# +-200 nats (and the pairs just past TRL's / the old cap of 88.72 nats, where the true values still fit float32)
_EXTREME = [-200.0, -199.0, 0.0, 199.0, 200.0]
_GRID = [(w, l) for w in _EXTREME for l in _EXTREME] + [(-180.0, -179.0), (-179.0, -180.0), (-89.0, -88.5),
                                                        (-88.5, -89.0), (-100.0, -100.0)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("divergence,alpha", [("forward_kl", 0.5), ("alpha", 0.5), ("alpha", 0.1), ("js", 0.5),
                                              ("reverse_kl", 0.5)])
def test_extreme_log_ratios_exact_where_representable(dtype, divergence, alpha):
    """Loss and gradients equal the exact value wherever it is representable (the loss is computed in float32 or
    wider, the gradient lands in the input dtype), +-inf with the right sign where it is not, never NaN."""
    r_w = torch.tensor([w for w, _ in _GRID], dtype=dtype, requires_grad=True)
    r_l = torch.tensor([l for _, l in _GRID], dtype=dtype, requires_grad=True)
    zero = torch.zeros(len(_GRID), dtype=dtype)
    losses, _, _ = fdpo_loss(r_w, r_l, zero, zero, beta=0.1, divergence=divergence, alpha=alpha)
    g_w, g_l = torch.autograd.grad(losses.sum(), (r_w, r_l))
    losses = losses.detach()
    rtol = 1e-4 if dtype == torch.float32 else 1e-2  # float32: exp(a r) at a r ~ 100 carries ~100 ulp
    for i, (w, l) in enumerate(_GRID):
        want = _mp_reference(w, l, 0.1, divergence, alpha)
        for got, exact, fmax in zip((losses[i], g_w[i], g_l[i]), want,
                                    (torch.finfo(losses.dtype).max, torch.finfo(dtype).max, torch.finfo(dtype).max)):
            got = float(got)
            assert not math.isnan(got), (w, l)
            if abs(exact) < fmax / 2:
                assert got == pytest.approx(exact, rel=rtol, abs=1e-30), (w, l, got, exact)
            elif abs(exact) > 2 * fmax:
                assert got == math.copysign(math.inf, exact), (w, l, got, exact)
        assert float(g_w[i]) <= 0.0 <= float(g_l[i])  # raising the chosen log-ratio never raises the loss


def test_alpha_beyond_the_old_cap_has_the_dpo_sign_of_gradient():
    """r_w = r_l = -100 at alpha 0.5: loss log 2 and dL/dr_w = -beta e^50 / 2 (the capped code gave NaN at -200
    and a flat loss here)."""
    r = torch.tensor([-100.0], requires_grad=True)
    losses, _, _ = fdpo_loss(r, torch.tensor([-100.0]), torch.zeros(1), torch.zeros(1), divergence="alpha", alpha=0.5)
    (g,) = torch.autograd.grad(losses.sum(), r)
    assert float(losses.detach()) == pytest.approx(math.log(2))
    assert float(g) == pytest.approx(-0.05 * math.exp(50.0), rel=1e-5)


def test_bad_divergence_and_alpha():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="divergence"):
        fdpo_loss(x, x, x, x, divergence="hellinger")
    with pytest.raises(ValueError, match="alpha"):
        fdpo_loss(x, x, x, x, divergence="alpha", alpha=1.0)
