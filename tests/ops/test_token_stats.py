"""Plain token ops against float64 references written independently (loops over positions, numpy-style math)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.ops import sequence_entropy, sequence_kl, sequence_logps, token_kl


def _labels(batch, length, vocab, gen, prompt=2):
    labels = torch.randint(0, vocab, (batch, length), generator=gen)
    labels[:, :prompt] = -100
    labels[0, -1] = -100  # padding on one row
    return labels


def _ref_logps(logits, labels):
    """Loop over rows and positions in float64: sum of log softmax(logits[t])[labels[t+1]]."""
    out = []
    for b in range(logits.shape[0]):
        total = 0.0
        for t in range(logits.shape[1] - 1):
            y = int(labels[b, t + 1])
            if y == -100:
                continue
            row = logits[b, t].double()
            total += float(row[y] - torch.logsumexp(row, 0))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def _ref_kl(p_logits, q_logits, labels, direction):
    out = []
    for b in range(p_logits.shape[0]):
        total = 0.0
        for t in range(p_logits.shape[1] - 1):
            if int(labels[b, t + 1]) == -100:
                continue
            lp = torch.log_softmax(p_logits[b, t].double(), 0)
            lq = torch.log_softmax(q_logits[b, t].double(), 0)
            a, c = (lq, lp) if direction == "ref||policy" else (lp, lq)
            total += float((a.exp() * (a - c)).sum())
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), length=st.integers(3, 9), vocab=st.integers(2, 40))
def test_sequence_logps_and_kl_match_float64_loops(seed, batch, length, vocab):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, length, vocab, generator=gen) * 3
    ref = torch.randn(batch, length, vocab, generator=gen) * 3
    labels = _labels(batch, length, vocab, gen)
    torch.testing.assert_close(sequence_logps(logits, labels).double(), _ref_logps(logits, labels), rtol=1e-5, atol=1e-5)
    for direction in ("ref||policy", "policy||ref"):
        got = sequence_kl(logits, ref, labels, direction=direction).double()
        torch.testing.assert_close(got, _ref_kl(logits, ref, labels, direction), rtol=1e-5, atol=1e-5)


def test_average_divides_by_scored_count():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 11, generator=gen)
    labels = _labels(2, 6, 11, gen)
    n = (labels[:, 1:] != -100).sum(-1)
    torch.testing.assert_close(sequence_logps(logits, labels, average=True), sequence_logps(logits, labels) / n)


def test_masked_positions_never_contribute():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 7, 13, generator=gen)
    labels = _labels(2, 7, 13, gen)
    noisy = logits.clone()
    noisy[:, 0] += 1000.0  # position 0 predicts labels[1], which is prompt (-100)
    assert torch.equal(sequence_logps(logits, labels), sequence_logps(noisy, labels))
    noisy = logits.clone()
    noisy[:, -1] += 1000.0  # the last position predicts nothing
    assert torch.equal(sequence_logps(logits, labels), sequence_logps(noisy, labels))


def test_kl_nonnegative_and_zero_under_constant_shift():
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(3, 5, 17, generator=gen)
    ref = torch.randn(3, 5, 17, generator=gen)
    assert (token_kl(z, ref) >= -1e-6).all() and (token_kl(z, ref, direction="policy||ref") >= -1e-6).all()
    torch.testing.assert_close(token_kl(z, z + 7.5), torch.zeros(3, 5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("gap", [200.0, 1e4])
def test_finite_for_huge_logit_gaps(gap):
    z = torch.zeros(1, 3, 5)
    z[..., 0] = gap
    ref = torch.zeros(1, 3, 5)
    ref[..., 1] = gap
    labels = torch.tensor([[-100, 2, 3]])
    for value in (sequence_logps(z, labels), sequence_kl(z, ref, labels), sequence_kl(z, ref, labels, direction="policy||ref"),
                  sequence_entropy(z, labels)):
        assert torch.isfinite(value).all()
    # the exact forward KL at one position is ~ gap nats: q puts all mass on token 1, where log p = -gap
    assert abs(float(sequence_kl(z, ref, labels)) - 2 * gap) / (2 * gap) < 1e-4


def test_bf16_inputs_are_upcast():
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(2, 6, 64, generator=gen) * 20).to(torch.bfloat16)
    labels = _labels(2, 6, 64, gen)
    got = sequence_logps(logits, labels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), _ref_logps(logits.float(), labels), rtol=1e-5, atol=1e-4)


def test_entropy_of_uniform_is_log_v():
    logits = torch.zeros(1, 4, 10)
    labels = torch.tensor([[-100, 1, 2, 3]])
    torch.testing.assert_close(sequence_entropy(logits, labels), torch.tensor([math.log(10.0)]))


def test_logit_gradients_match_closed_forms():
    """d lp / dz = onehot - p; d KL(q||p) / dz = p - q."""
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(1, 2, 9, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(1, 2, 9, generator=gen, dtype=torch.float64)
    labels = torch.tensor([[-100, 4]])
    (g,) = torch.autograd.grad(sequence_logps(z, labels).sum(), z)
    p = torch.softmax(z[0, 0].detach(), 0)
    torch.testing.assert_close(g[0, 0], torch.nn.functional.one_hot(torch.tensor(4), 9).double() - p)
    assert torch.count_nonzero(g[0, 1]) == 0
    (g,) = torch.autograd.grad(sequence_kl(z, ref, labels).sum(), z)
    torch.testing.assert_close(g[0, 0], p - torch.softmax(ref[0, 0], 0))
