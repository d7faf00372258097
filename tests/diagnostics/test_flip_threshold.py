"""Theorem 4.1: pi_theta ranks a pair correctly (m > 0) exactly when its DPO loss is below
flip_threshold = softplus(-beta c), c = ref_rejected - ref_chosen."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alignlab.diagnostics import BETA_GRID, flip_threshold, ranking_correct
from alignlab.errors import AlignlabError
from alignlab.losses import dpo_loss


def _softplus(x: float) -> float:
    """log(1 + e^x) in float64, written independently of the library (stable for large |x|)."""
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def test_worked_example_beta_0_1():
    beta, c = 0.1, 20.0
    threshold = flip_threshold([0.0], [c], beta=beta)
    assert threshold.dtype == torch.float64 and threshold.shape == (1,)
    assert threshold.item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-12)
    assert round(threshold.item(), 4) == 0.1269
    ref_chosen, ref_rejected = (
        torch.tensor([0.0], dtype=torch.float64),
        torch.tensor([c], dtype=torch.float64),
    )
    for m, expected_loss, correct in ((-20.0, math.log(2), False), (-5.0, 0.201, False), (0.5, None, True)):
        policy_chosen, policy_rejected = (
            torch.tensor([m], dtype=torch.float64),
            torch.zeros(1, dtype=torch.float64),
        )
        loss = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta)[0].item()
        if expected_loss is not None:
            assert round(loss, 3) == round(expected_loss, 3)
        assert (loss < threshold.item()) == correct == bool(ranking_correct(policy_chosen, policy_rejected))
    # the loss at m = -5 is far below log 2 yet above the threshold: the pair is still ranked wrongly
    assert 0.1269 < _softplus(-1.5) < math.log(2)
    # c = -10: correct at init, threshold softplus(1) = 1.313
    assert round(flip_threshold([10.0], [0.0], beta=beta).item(), 3) == 1.313


# arXiv 2405.19534, Theorem 4.1: f(c) for beta in {0.01, 0.1, 1}, as printed (significant digits as shown)
C_VALUES = (-10, 0, 0.26, 1, 5, 10, 50, 100, 457.6)
TABLE = {
    0.01: ("0.744", "0.693", "0.692", "0.688", "0.668", "0.644", "0.474", "0.313", "0.0102"),
    0.1: ("1.313", "0.693", "0.680", "0.644", "0.474", "0.313", "6.7e-3", "4.5e-5", "1.3e-20"),
    1.0: ("10.0", "0.693", "0.572", "0.313", "6.7e-3", "4.5e-5", "1.9e-22", "3.7e-44", "1.8e-199"),
}


def _significant_digits(text: str) -> int:
    mantissa = text.split("e")[0].replace("-", "").replace(".", "").lstrip("0")
    return len(mantissa)


@pytest.mark.parametrize("beta", sorted(TABLE))
def test_threshold_table(beta):
    got = flip_threshold(torch.zeros(len(C_VALUES)), torch.tensor(C_VALUES, dtype=torch.float64), beta=beta)
    for value, text in zip(got.tolist(), TABLE[beta]):
        digits = _significant_digits(text)
        assert f"{value:.{digits - 1}e}" == f"{float(text):.{digits - 1}e}", (beta, text, value)


_logp = st.floats(-60.0, 0.0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_logp, _logp, _logp, _logp), min_size=1, max_size=16), st.sampled_from(BETA_GRID))
def test_theorem_4_1_identity(rows, beta):
    ref_chosen, ref_rejected, policy_chosen, policy_rejected = (list(column) for column in zip(*rows))
    for pc, pr in zip(policy_chosen, policy_rejected):
        assume(abs(beta * (pc - pr)) > 1e-6)  # away from float ties (and F.softplus's linear cut-over)
    threshold = flip_threshold(ref_chosen, ref_rejected, beta=beta).tolist()
    losses = dpo_loss(
        *(
            torch.tensor(x, dtype=torch.float64)
            for x in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)
        ),
        beta=beta,
    )[0].tolist()
    for index, (rc, rr, pc, pr) in enumerate(rows):
        c, m = rr - rc, pc - pr
        assert threshold[index] == pytest.approx(_softplus(-beta * c), rel=1e-12, abs=1e-300)
        loss = _softplus(-beta * (m + c))
        assert (loss < threshold[index]) == (m > 0)
        assert (loss <= threshold[index]) == (m >= 0)
        # the library's DPO loss gives the same verdict
        assert (losses[index] < threshold[index]) == (m > 0)


def test_flip_threshold_errors():
    with pytest.raises(AlignlabError, match="shape"):
        flip_threshold([0.0, 1.0], [0.0], beta=0.1)
    with pytest.raises(AlignlabError, match="beta"):
        flip_threshold([0.0], [0.0], beta=-1.0)
    with pytest.raises(AlignlabError, match="empty"):
        flip_threshold([], [], beta=0.1)
