"""Every -log sigma(z) in alignlab.losses is exact in float64: F.softplus turns linear at z < -20 (log(1 + e^20)
is returned as 20, 2e-9 short), so the float64 references of the papers' formulas agree only to ~1e-9 with it.
References: the formulas evaluated at 60 digits (mpmath) from the float64 inputs, then rounded."""

import mpmath as mp
import pytest
import torch

from alignlab.losses import dpo_loss, fdpo_loss, orpo_loss, reference_scaled_dpo_loss, simpo_loss, tdpo_loss

# -log sigma(z) past softplus's cut-over (gaps e^z: 1.2e-9, 7.6e-10, 1.0e-10) and two ordinary points
Z = [-20.5, -21.0, -23.0, -1.5, 4.0]
TOL = 1e-12  # absolute; float64 rounding of values near 23 is 3.6e-15


def _nls(z):
    """-log sigma(z) at 60 digits."""
    return mp.log(1 + mp.exp(-z))


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _check(got, want):
    for g, w in zip(got.tolist(), want):
        assert abs(g - float(w)) <= TOL, (g, float(w), g - float(w))


@pytest.fixture(autouse=True)
def _digits():
    mp.mp.dps = 60


def test_dpo_and_cdpo():
    beta, eps = 0.1, 0.1
    h = _t([z / beta for z in Z])
    zero = torch.zeros_like(h)
    zs = [mp.mpf(beta) * mp.mpf(x) for x in h.tolist()]
    _check(dpo_loss(h, zero, zero, zero, beta=beta)[0], [_nls(z) for z in zs])
    cdpo = dpo_loss(h, zero, zero, zero, beta=beta, label_smoothing=eps)[0]
    _check(cdpo, [(1 - mp.mpf(eps)) * _nls(z) + mp.mpf(eps) * _nls(-z) for z in zs])


def test_reference_scaled_dpo():
    beta, gamma = 0.1, 0.5
    pc, rc = _t([z / beta for z in Z]), _t([3.0, -2.0, 1.0, 0.5, -4.0])
    zero = torch.zeros_like(pc)
    want = [_nls(mp.mpf(beta) * (mp.mpf(p) - mp.mpf(gamma) * mp.mpf(r))) for p, r in zip(pc.tolist(), rc.tolist())]
    _check(reference_scaled_dpo_loss(pc, zero, rc, zero, beta=beta, gamma=gamma)[0], want)


def test_simpo():
    beta, gamma, n = 2.0, 0.5, 4
    sc = _t([n * (z + gamma) / beta for z in Z])
    sr = torch.zeros_like(sc)
    lengths = torch.full((len(Z),), n)
    want = [_nls(mp.mpf(beta) * mp.mpf(s) / n - mp.mpf(gamma)) for s in sc.tolist()]
    _check(simpo_loss(sc, sr, lengths, lengths, beta=beta, gamma=gamma)[0], want)


@pytest.mark.parametrize("variant", ["tdpo1", "tdpo2"])
def test_tdpo(variant):
    beta, alpha = 0.1, 0.5
    margin_c = _t([z / beta for z in Z])
    margin_r = torch.zeros_like(margin_c)
    kl_c, kl_r = _t([0.3, 1.0, 0.0, 2.0, 0.7]), _t([1.1, 0.2, 0.4, 0.0, 0.9])
    a = 1 if variant == "tdpo1" else mp.mpf(alpha)
    want = [_nls(mp.mpf(beta) * (mp.mpf(m) - a * (mp.mpf(kr) - mp.mpf(kc))))
            for m, kc, kr in zip(margin_c.tolist(), kl_c.tolist(), kl_r.tolist())]
    _check(tdpo_loss(margin_c, margin_r, kl_c, kl_r, beta=beta, alpha=alpha, variant=variant)[0], want)


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "js", "alpha"])
def test_fdpo(divergence):
    beta, alpha = 0.1, 0.5
    # log-ratios with beta * bracket about z; the reference recomputes the bracket from them exactly
    a = {"forward_kl": 1.0, "alpha": alpha}.get(divergence)
    r_w, r_l = [], []
    for z in Z:
        if a is None:  # reverse_kl: bracket r_w - r_l; js: log sigma(r_w) - log sigma(r_l) ~ r_w - r_l + log 2
            w, l = z / beta, 0.0
        elif z < 0:  # bracket (1 - e^(-a r_w)) / a at r_l = 0
            w, l = -float(mp.log(1 - a * mp.mpf(z) / beta)) / a, 0.0
        else:  # bracket (e^(-a r_l) - 1) / a at r_w = 0
            w, l = 0.0, -float(mp.log(1 + a * mp.mpf(z) / beta)) / a
        r_w.append(w)
        r_l.append(l)
    r_w, r_l = _t(r_w), _t(r_l)
    zero = torch.zeros_like(r_w)

    def f_prime(r):  # Table 1 of arXiv 2309.16240, u = e^r
        u = mp.exp(r)
        return {"reverse_kl": mp.log(u), "forward_kl": -1 / u, "js": mp.log(2 * u / (1 + u)),
                "alpha": (1 - u ** (-alpha)) / alpha}[divergence]

    want = [_nls(mp.mpf(beta) * (f_prime(mp.mpf(w)) - f_prime(mp.mpf(l)))) for w, l in zip(r_w.tolist(), r_l.tolist())]
    _check(fdpo_loss(r_w, r_l, zero, zero, beta=beta, divergence=divergence, alpha=alpha)[0], want)


def test_orpo():
    lam, n = 0.5, 5
    sc = _t([-0.01 * n] * len(Z))  # P_w = e^-0.01, odds_w fixed; the rejected side sets log odds = z
    mp_logit_w = mp.mpf(-0.01) - mp.log(1 - mp.exp(mp.mpf(-0.01)))
    # log odds_l = logit_w - z  ->  Sbar_l = log sigma(logit_w - z)
    sr = _t([n * float(-mp.log(1 + mp.exp(-(mp_logit_w - z)))) for z in Z])
    lengths = torch.full((len(Z),), n)

    def want(s_c, s_r):
        pw, pl = mp.exp(mp.mpf(s_c) / n), mp.exp(mp.mpf(s_r) / n)
        log_odds = mp.log(pw / (1 - pw)) - mp.log(pl / (1 - pl))
        return -mp.mpf(s_c) / n + lam * _nls(log_odds)

    got = orpo_loss(sc, sr, lengths, lengths, lam=lam)[0]
    for g, w in zip(got.tolist(), [want(c, r) for c, r in zip(sc.tolist(), sr.tolist())]):
        # log odds is a difference of ~5-nat logs: float64 carries it to ~1e-15 relative, not absolute 1e-12 here
        assert abs(g - float(w)) <= 1e-11 * max(1.0, abs(float(w)))
