"""Ranking accuracy, idealized ranking accuracy (Corollary 3.3) and the alignment gap: known values from the
paper's examples and independent numpy/math computations."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.diagnostics import (
    BETA_GRID,
    alignment_gap,
    idealized_ranking_accuracy,
    idealized_ranking_correct,
    ranking_accuracy,
    ranking_correct,
)
from alignlab.errors import AlignlabError

# --- ranking accuracy -----------------------------------------------------------------------------------------


def test_ranking_accuracy_is_strict_on_ties():
    chosen = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    rejected = torch.tensor([-2.0, -2.0, -1.0, -4.0])  # right, tie, wrong, tie
    assert ranking_accuracy(chosen, rejected) == 0.25
    assert ranking_accuracy(chosen, rejected, strict=False) == 0.75
    assert ranking_correct(chosen, rejected).tolist() == [True, False, False, False]


def test_ranking_accuracy_length_normalised_compares_per_token_means():
    # raw: -10 < -6 (wrong); per token: -10/10 = -1 > -6/3 = -2 (right)
    assert ranking_accuracy([-10.0], [-6.0]) == 0.0
    assert ranking_accuracy([-10.0], [-6.0], chosen_lengths=[10], rejected_lengths=[3]) == 1.0
    # equal means are a tie, hence wrong
    assert ranking_accuracy([-4.0], [-8.0], chosen_lengths=[2], rejected_lengths=[4]) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-500, 0), st.floats(-500, 0), st.integers(1, 400), st.integers(1, 400)),
        min_size=1,
        max_size=40,
    )
)
def test_ranking_accuracy_matches_python(pairs):
    chosen, rejected, n_chosen, n_rejected = (list(column) for column in zip(*pairs))
    expected_raw = sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)
    expected_norm = sum(c / nc > r / nr for c, r, nc, nr in pairs) / len(pairs)
    assert ranking_accuracy(chosen, rejected) == pytest.approx(expected_raw, abs=1e-12)
    got = ranking_accuracy(chosen, rejected, chosen_lengths=n_chosen, rejected_lengths=n_rejected)
    assert got == pytest.approx(expected_norm, abs=1e-12)


def test_ranking_accuracy_accepts_float32_and_grad_tensors():
    chosen = torch.tensor([-1.0, -3.0], requires_grad=True)
    assert ranking_accuracy(chosen, torch.tensor([-2.0, -2.0])) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chosen_logps": [1.0, 2.0], "rejected_logps": [1.0]}, "shape"),
        ({"chosen_logps": [], "rejected_logps": []}, "empty"),
        ({"chosen_logps": [[1.0]], "rejected_logps": [[1.0]]}, r"shape \[B\]"),
        ({"chosen_logps": [float("nan")], "rejected_logps": [1.0]}, "NaN"),
        (
            {"chosen_logps": [1.0], "rejected_logps": [1.0], "chosen_lengths": [3]},
            "rejected_lengths is missing",
        ),
        (
            {"chosen_logps": [1.0], "rejected_logps": [1.0], "chosen_lengths": [0], "rejected_lengths": [2]},
            "positive",
        ),
        (
            {
                "chosen_logps": [1.0],
                "rejected_logps": [1.0],
                "chosen_lengths": [1, 2],
                "rejected_lengths": [2, 2],
            },
            "shape",
        ),
    ],
)
def test_ranking_accuracy_rejects_bad_input(kwargs, message):
    with pytest.raises(AlignlabError, match=message):
        ranking_accuracy(**kwargs)


# --- idealized ranking accuracy -------------------------------------------------------------------------------

# arXiv 2405.19534, Sec. 3: alpha = 3/4, the reference error (Delta_ref, nats) that the optimum can still override.
COROLLARY_EXAMPLE = {0.01: -109.9, 0.1: -10.99, 1.0: -1.10, 5.0: -0.22, 10.0: -0.11}


@pytest.mark.parametrize("beta", sorted(COROLLARY_EXAMPLE))
def test_corollary_example_alpha_three_quarters(beta):
    threshold = -math.log(3.0) / beta  # Delta_ref + ln(3)/beta > 0
    documented = COROLLARY_EXAMPLE[beta]
    decimals = len(str(documented).split(".")[1])
    assert round(threshold, decimals) == pytest.approx(documented, abs=1e-12)
    delta = 1e-9 * max(1.0, abs(threshold))
    # the reference prefers rejected by slightly less / slightly more than the overridable amount
    assert idealized_ranking_accuracy([0.0], [-threshold - delta], 0.75, beta=beta) == 1.0
    assert idealized_ranking_accuracy([0.0], [-threshold + delta], 0.75, beta=beta) == 0.0
    batch = idealized_ranking_accuracy(
        [0.0, 0.0, -5.0], [-threshold - delta, -threshold + delta, -5.0], [0.75, 0.75, 0.75], beta=beta
    )
    assert batch == pytest.approx(2.0 / 3.0)


@pytest.mark.parametrize("beta", BETA_GRID)
@pytest.mark.parametrize("alpha", [1.0, 1.0 - 1e-6, 1.0 - 1e-3])
def test_unanimous_votes_are_clipped_symmetrically_to_ln999_over_beta(beta, alpha):
    overridable = math.log(999.0) / beta  # alignlab's symmetric clip, not the paper's ln(1000)
    delta = 1e-9 * max(1.0, overridable)
    assert idealized_ranking_accuracy([0.0], [overridable - delta], alpha, beta=beta) == 1.0
    assert idealized_ranking_accuracy([0.0], [overridable + delta], alpha, beta=beta) == 0.0
    # between ln(999)/beta and ln(1000)/beta the paper's clip would call the pair correct; alignlab does not
    midway = (math.log(999.0) + math.log(1000.0)) / 2.0 / beta
    assert idealized_ranking_accuracy([0.0], [midway], alpha, beta=beta) == 0.0


def test_eps_changes_the_clip():
    beta = 0.5
    overridable = math.log((1 - 0.01) / 0.01) / beta
    assert idealized_ranking_accuracy([0.0], [overridable - 1e-6], 1.0, beta=beta, eps=0.01) == 1.0
    assert idealized_ranking_accuracy([0.0], [overridable + 1e-6], 1.0, beta=beta, eps=0.01) == 0.0


def test_alpha_one_half_is_excluded():
    ref_chosen = [0.0, 0.0, 0.0, 0.0]
    ref_rejected = [-1.0, 5.0, 5.0, -1.0]
    alpha = [0.5, 0.5, 0.75, 0.75]  # tied pairs would be one right, one wrong
    assert idealized_ranking_accuracy(ref_chosen, ref_rejected, alpha, beta=1.0) == 0.5
    correct, kept = idealized_ranking_correct(ref_chosen, ref_rejected, alpha, beta=1.0)
    assert kept.tolist() == [False, False, True, True]
    assert correct.tolist() == [False, False, False, True]
    with pytest.raises(AlignlabError, match="no pair is left"):
        idealized_ranking_accuracy([0.0], [-1.0], 2 / 4, beta=1.0)


def test_all_pairs_tied_raises_clearly():
    with pytest.raises(AlignlabError, match=r"all 3 pairs are tied .*no pair is left"):
        idealized_ranking_accuracy([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.5], beta=0.1)


def test_idealized_length_normalised_uses_mean_reference_logps():
    # raw Delta_ref = -30 + 20 = -10; per token: -30/30 - (-20/10) = +1
    beta = 1.0
    alpha = 1.0 / (1.0 + math.exp(-0.5))  # logit = 0.5
    assert idealized_ranking_accuracy([-30.0], [-20.0], alpha, beta=beta) == 0.0
    assert (
        idealized_ranking_accuracy(
            [-30.0], [-20.0], alpha, beta=beta, chosen_lengths=[30], rejected_lengths=[10]
        )
        == 1.0
    )
    # per token Delta = -1.2 + 1 = -0.2; logit/beta = 0.5 overrides it at beta 1 but not at beta 5 (0.1)
    kwargs = {"chosen_lengths": [10], "rejected_lengths": [10]}
    assert idealized_ranking_accuracy([-12.0], [-10.0], alpha, beta=1.0, **kwargs) == 1.0
    assert idealized_ranking_accuracy([-12.0], [-10.0], alpha, beta=5.0, **kwargs) == 0.0


def _numpy_idealized(ref_chosen, ref_rejected, alpha, beta, eps=1e-3, lengths=None):
    ref_chosen, ref_rejected, alpha = (
        np.asarray(x, dtype=np.float64) for x in (ref_chosen, ref_rejected, alpha)
    )
    if lengths is not None:
        ref_chosen, ref_rejected = ref_chosen / np.asarray(lengths[0]), ref_rejected / np.asarray(lengths[1])
    a = np.clip(alpha, eps, 1 - eps)
    keep = alpha != 0.5
    ok = (ref_chosen - ref_rejected + np.log(a / (1 - a)) / beta) > 0
    return ok[keep].mean()


_votes = st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 0.8, 1.0])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-300, -1), st.floats(-300, -1), _votes, st.integers(1, 300), st.integers(1, 300)),
        min_size=1,
        max_size=30,
    ).filter(lambda rows: any(row[2] != 0.5 for row in rows)),
    st.sampled_from(BETA_GRID),
)
def test_idealized_matches_numpy(rows, beta):
    ref_chosen, ref_rejected, alpha, n_chosen, n_rejected = (list(column) for column in zip(*rows))
    got = idealized_ranking_accuracy(ref_chosen, ref_rejected, torch.tensor(alpha), beta=beta)
    assert got == pytest.approx(_numpy_idealized(ref_chosen, ref_rejected, alpha, beta), abs=1e-12)
    got = idealized_ranking_accuracy(
        ref_chosen, ref_rejected, alpha, beta=beta, chosen_lengths=n_chosen, rejected_lengths=n_rejected
    )
    expected = _numpy_idealized(ref_chosen, ref_rejected, alpha, beta, lengths=(n_chosen, n_rejected))
    assert got == pytest.approx(expected, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-50, 50), st.floats(0.5001, 1.0)), min_size=1, max_size=40),
    st.lists(st.floats(0.001, 20.0), min_size=2, max_size=6, unique=True),
)
def test_idealized_accuracy_is_non_increasing_in_beta(rows, betas):
    ref_logratio, alpha = (list(column) for column in zip(*rows))
    zeros = [0.0] * len(rows)
    accuracies = [idealized_ranking_accuracy(ref_logratio, zeros, alpha, beta=beta) for beta in sorted(betas)]
    assert all(a >= b for a, b in itertools.pairwise(accuracies))


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([0.0], [0.0], 1.2), {"beta": 1.0}, r"alpha\[0\] = 1.2"),
        (([0.0], [0.0], -0.1), {"beta": 1.0}, r"\[0, 1\]"),
        (([0.0, 1.0], [0.0, 1.0], [0.7, 0.7, 0.7]), {"beta": 1.0}, "shape"),
        (([0.0, 1.0], [0.0], 0.7), {"beta": 1.0}, "shape"),
        (([], [], []), {"beta": 1.0}, "empty"),
        (([0.0], [0.0], 0.7), {"beta": 0.0}, "beta"),
        (([0.0], [0.0], 0.7), {"beta": 1.0, "eps": 0.5}, "eps"),
        (([0.0], [0.0], 0.7), {"beta": 1.0, "chosen_lengths": [2]}, "rejected_lengths"),
    ],
)
def test_idealized_rejects_bad_input(args, kwargs, message):
    with pytest.raises(AlignlabError, match=message):
        idealized_ranking_accuracy(*args, **kwargs)


# --- alignment gap --------------------------------------------------------------------------------------------


def test_alignment_gap_matches_independent_computation():
    rng = np.random.default_rng(3)
    n = 200
    ref_chosen, ref_rejected = rng.uniform(-200, -10, n), rng.uniform(-200, -10, n)
    policy_chosen, policy_rejected = ref_chosen + rng.normal(3, 5, n), ref_rejected + rng.normal(-3, 5, n)
    alpha = rng.choice([0.5, 0.75, 1.0, 2 / 3], n)
    n_chosen, n_rejected = rng.integers(5, 120, n), rng.integers(5, 120, n)
    gap = alignment_gap(
        torch.tensor(policy_chosen), torch.tensor(policy_rejected), torch.tensor(ref_chosen),
        torch.tensor(ref_rejected), torch.tensor(alpha), chosen_lengths=n_chosen, rejected_lengths=n_rejected,
    )  # fmt: skip
    keep = alpha != 0.5
    assert gap.n_pairs == keep.sum() and gap.n_tied_excluded == (~keep).sum()
    for summary, lengths in ((gap.raw, (np.ones(n), np.ones(n))), (gap.normalized, (n_chosen, n_rejected))):
        observed = ((policy_chosen / lengths[0]) > (policy_rejected / lengths[1]))[keep].mean()
        idealized = [_numpy_idealized(ref_chosen, ref_rejected, alpha, b, lengths=lengths) for b in BETA_GRID]
        assert summary.observed == pytest.approx(observed, abs=1e-12)
        assert list(summary.idealized_by_beta.values()) == pytest.approx(idealized, abs=1e-12)
        assert summary.idealized_min == pytest.approx(min(idealized))
        assert summary.idealized_median == pytest.approx(statistics.median(idealized))
        assert summary.idealized_max == pytest.approx(max(idealized))
        # monotone in beta (alpha > 0.5 after ties are removed), so the median is the beta = 1 value
        assert summary.idealized_median == summary.idealized_by_beta[1.0]
        assert summary.gap_median == pytest.approx(statistics.median(idealized) - observed)
        assert summary.gap_min == pytest.approx(min(idealized) - observed)
        assert summary.gap_max == pytest.approx(max(idealized) - observed)
    as_dict = gap.to_dict()
    assert as_dict["raw"]["idealized_by_beta"]["0.01"] == gap.raw.idealized_by_beta[0.01]
    assert as_dict["betas"] == list(BETA_GRID)


def test_alignment_gap_without_lengths_has_no_normalised_variant_and_rejects_half_lengths():
    gap = alignment_gap([-1.0], [-2.0], [-1.0], [-2.0], 0.75)
    assert gap.normalized is None and gap.raw.observed == 1.0
    with pytest.raises(AlignlabError, match="rejected_lengths is missing"):
        alignment_gap([-1.0], [-2.0], [-1.0], [-2.0], 0.75, chosen_lengths=[3])
    with pytest.raises(AlignlabError, match="shape"):
        alignment_gap([-1.0, 0.0], [-2.0], [-1.0], [-2.0], 0.75)
    with pytest.raises(AlignlabError, match="no pair is left"):
        alignment_gap([-1.0], [-2.0], [-1.0], [-2.0], 0.5)
    with pytest.raises(AlignlabError, match="repeated"):
        alignment_gap([-1.0], [-2.0], [-1.0], [-2.0], 0.75, betas=(0.1, 0.1))
    custom = alignment_gap([-1.0], [-2.0], [0.0], [-2.0], 0.75, betas=(0.1, 10.0))
    assert custom.betas == (0.1, 10.0) and custom.raw.idealized_by_beta == {0.1: 1.0, 10.0: 1.0}
