"""TDPO1 / TDPO2 (arXiv 2404.11999) formulas and gradient facts, including the chunked TDPO2 path."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses import dpo_loss, tdpo_loss
from alignlab.ops import chunked_sequence_stats, plain_sequence_stats


def _leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 2.0), alpha=st.floats(0.0, 1.0))
def test_paper_formulas(seed, beta, alpha):
    g = torch.Generator().manual_seed(seed)
    dw, dl = torch.randn(4, generator=g, dtype=torch.float64) * 5, torch.randn(4, generator=g, dtype=torch.float64) * 5
    kw, kl = torch.rand(4, generator=g, dtype=torch.float64) * 10, torch.rand(4, generator=g, dtype=torch.float64) * 10
    l1, c1, r1 = tdpo_loss(dw, dl, kw, kl, beta=beta, variant="tdpo1")
    torch.testing.assert_close(l1, -torch.log(torch.sigmoid(beta * ((dw - dl) - (kl - kw)))))
    l2, c2, r2 = tdpo_loss(dw, dl, kw, kl, beta=beta, alpha=alpha, variant="tdpo2")
    torch.testing.assert_close(l2, -torch.log(torch.sigmoid(beta * ((dw - dl) - alpha * (kl - kw)))))
    torch.testing.assert_close(c1, beta * (dw + kw))
    torch.testing.assert_close(r2, beta * (dl + kl))
    torch.testing.assert_close(c2, c1)  # rewards do not depend on the variant
    torch.testing.assert_close(c1 - r1, beta * ((dw - dl) - (kl - kw)))  # TDPO1's reward margin is beta * z


def test_log2_at_init_for_both_variants():
    z = torch.zeros(3)
    for variant in ("tdpo1", "tdpo2"):
        torch.testing.assert_close(tdpo_loss(z, z, z, z, variant=variant)[0], torch.full((3,), math.log(2)))


def test_stop_gradient_on_chosen_kl_only():
    for variant, expected_kw, expected_kl in (("tdpo1", 1.0, -1.0), ("tdpo2", 0.0, -0.5)):
        dw, dl, kw, kl = _leaf([1.0]), _leaf([0.5]), _leaf([2.0]), _leaf([3.0])
        losses, _, _ = tdpo_loss(dw, dl, kw, kl, beta=0.1, alpha=0.5, variant=variant)
        g = torch.autograd.grad(losses.sum(), [dw, kw, kl], allow_unused=True)
        dloss_dz = float(g[0])  # dz/d(Delta_w) = 1
        grad_kw = 0.0 if g[1] is None else float(g[1])  # None: K_w is not even in TDPO2's graph
        assert grad_kw == pytest.approx(expected_kw * dloss_dz, abs=1e-15)
        assert float(g[2]) == pytest.approx(expected_kl * dloss_dz)
        if variant == "tdpo2":
            assert grad_kw == 0.0


def test_alpha_one_equal_values_different_gradients():
    args = ([1.0], [0.2], [0.7], [2.0])
    t1 = [_leaf(a) for a in args]
    t2 = [_leaf(a) for a in args]
    l1 = tdpo_loss(*t1, variant="tdpo1")[0]
    l2 = tdpo_loss(*t2, alpha=1.0, variant="tdpo2")[0]
    torch.testing.assert_close(l1, l2)
    g1 = torch.autograd.grad(l1.sum(), t1[2])[0]
    g2 = torch.autograd.grad(l2.sum(), t2[2], allow_unused=True)[0]
    assert float(g1) != 0.0 and (g2 is None or float(g2) == 0.0)


def test_raising_rejected_kl_raises_tdpo2_loss():
    base = tdpo_loss(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1))[0]
    more = tdpo_loss(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.ones(1) * 5)[0]
    assert float(more) > float(base)


def test_unknown_variant():
    z = torch.zeros(1)
    with pytest.raises(ValueError, match="tdpo1"):
        tdpo_loss(z, z, z, z, variant="tdpo3")


def _pair_batch(seed, batch=2, length=8, hidden=10, vocab=31):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2 * batch, length, hidden, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(vocab, hidden, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.randint(0, vocab, (2 * batch, length), generator=g)
    labels[:, :3] = -100
    return h, w, labels


@pytest.mark.parametrize("variant", ["tdpo1", "tdpo2"])
def test_chunked_tdpo_matches_plain(variant):
    h, w, labels = _pair_batch(0)
    hr = torch.randn_like(h).detach()
    wr = torch.randn_like(w).detach()
    grads, values = [], []
    for fn in (plain_sequence_stats, chunked_sequence_stats):
        s = fn(h, w, labels, ref_hidden=hr, ref_weight=wr, kl=True, chunk_size=3)
        margin = s.logps - s.ref_logps
        losses, _, _ = tdpo_loss(margin[:2], margin[2:], s.kl[:2], s.kl[2:], variant=variant)
        values.append(losses)
        grads.append(torch.autograd.grad(losses.mean(), [h, w]))
    torch.testing.assert_close(values[0], values[1], rtol=1e-5, atol=1e-8)
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-8)


def test_identical_gradients_to_dpo_at_init():
    """At pi_theta == pi_ref, d KL / dz = p - q = 0, so DPO, TDPO1 and TDPO2 have equal parameter gradients."""
    h, w, labels = _pair_batch(1)
    grads = []
    for method in ("dpo", "tdpo1", "tdpo2"):
        s = chunked_sequence_stats(h, w, labels, ref_hidden=h.detach(), ref_weight=w.detach(), kl=True)
        margin = s.logps - s.ref_logps
        if method == "dpo":
            losses = dpo_loss(s.logps[:2], s.logps[2:], s.ref_logps[:2], s.ref_logps[2:])[0]
        else:
            losses = tdpo_loss(margin[:2], margin[2:], s.kl[:2], s.kl[2:], variant=method)[0]
        torch.testing.assert_close(losses, torch.full((2,), math.log(2), dtype=torch.float64))
        grads.append(torch.autograd.grad(losses.mean(), [h, w]))
    for other in grads[1:]:
        for a, c in zip(grads[0], other):
            torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
