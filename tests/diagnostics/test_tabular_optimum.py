"""Tabular check of Theorem 3.1 / Corollary 3.3: one prompt, K responses, Bradley-Terry preferences.

With latent rewards r and alpha_ij = sigmoid(r_i - r_j), the DPO/RLHF optimum is pi* ∝ pi_ref exp(r / beta)
(Eq. 2). The corollary's idealized ranking accuracy, fed the true alpha, must match pi*'s own ranking of every pair;
and a tabular softmax policy trained with alignlab.losses.dpo_loss on sampled preferences must approach pi*.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from alignlab.diagnostics import idealized_ranking_accuracy, ranking_correct
from alignlab.losses import dpo_loss

K = 6
PAIRS = list(itertools.combinations(range(K), 2))


def _problem(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rewards = rng.normal(0.0, 1.0, K)
    ref_logits = rng.normal(0.0, 2.0, K)
    return rewards, ref_logits - np.logaddexp.reduce(ref_logits)


def _optimum(ref_logp: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    logits = ref_logp + rewards / beta
    return logits - np.logaddexp.reduce(logits)


def _oriented(rewards: np.ndarray) -> list[tuple[int, int, float]]:
    """(chosen, rejected, alpha) per pair, chosen = the BT majority, alpha = P(chosen beats rejected)."""
    out = []
    for i, j in PAIRS:
        chosen, rejected = (i, j) if rewards[i] > rewards[j] else (j, i)
        out.append((chosen, rejected, 1.0 / (1.0 + np.exp(-(rewards[chosen] - rewards[rejected])))))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_idealized_accuracy_matches_the_closed_form_optimum_pair_by_pair(seed):
    rewards, ref_logp = _problem(seed)
    pairs = _oriented(rewards)
    assert all(1e-3 < alpha < 1 - 1e-3 for _, _, alpha in pairs)  # the eps clip does not bite
    verdicts = []
    for beta in (0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        optimum = _optimum(ref_logp, rewards, beta)
        for chosen, rejected, alpha in pairs:
            # Eq. 2 in log space, computed without the library: log pi*_c - log pi*_r = D_ref + logit(alpha) / beta
            margin = optimum[chosen] - optimum[rejected]
            expected_margin = ref_logp[chosen] - ref_logp[rejected] + np.log(alpha / (1 - alpha)) / beta
            assert margin == pytest.approx(expected_margin, abs=1e-9)
            assert abs(margin) > 1e-9  # no float tie in the optimum's ranking
            got = idealized_ranking_accuracy([ref_logp[chosen]], [ref_logp[rejected]], alpha, beta=beta)
            assert got == float(margin > 0), (beta, chosen, rejected)
            verdicts.append(margin > 0)
        batch = idealized_ranking_accuracy(
            [ref_logp[c] for c, _, _ in pairs],
            [ref_logp[r] for _, r, _ in pairs],
            [a for _, _, a in pairs],
            beta=beta,
        )
        assert batch == pytest.approx(np.mean([optimum[c] > optimum[r] for c, r, _ in pairs]), abs=1e-12)
    assert any(verdicts) and not all(verdicts)  # both outcomes occur, so the check can fail either way


def _bt_mle(wins: np.ndarray) -> np.ndarray:
    """Bradley-Terry maximum likelihood (Newton's method, numpy) for wins[i, j] = #(i beat j); u up to a shift."""
    u = np.zeros(K)
    for _ in range(50):
        s = 1.0 / (1.0 + np.exp(-(u[:, None] - u[None, :])))
        grad = (wins * (1 - s)).sum(1) - (wins * (1 - s)).sum(0)
        weights = wins * s * (1 - s)
        weights = weights + weights.T
        hessian = weights - np.diag(weights.sum(1))
        u = u + np.linalg.lstsq(hessian, -grad, rcond=None)[0]
    return u - u.mean()


def _log_ratios(logp: np.ndarray) -> np.ndarray:
    return np.array([logp[i] - logp[j] for i, j in PAIRS])


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_dpo_trained_tabular_policy_approaches_the_optimum(beta):
    rewards, ref_logp = _problem(3)  # the reference misranks 7 (beta 0.5) and 2 (beta 2) of pi*'s 15 pairs
    rng = np.random.default_rng(1)
    n_samples = 200_000
    first = rng.integers(0, K, n_samples)
    second = (first + rng.integers(1, K, n_samples)) % K  # uniform over ordered pairs i != j
    first_wins = rng.random(n_samples) < 1.0 / (1.0 + np.exp(-(rewards[first] - rewards[second])))
    chosen, rejected = np.where(first_wins, first, second), np.where(first_wins, second, first)

    # Full-batch DPO over the samples; identical (chosen, rejected) samples are merged into counts, which leaves
    # the mean loss and its gradient unchanged and keeps each step to K * (K - 1) terms.
    keys, counts = np.unique(np.stack([chosen, rejected], 1), axis=0, return_counts=True)
    chosen_ids, rejected_ids = torch.tensor(keys[:, 0]), torch.tensor(keys[:, 1])
    weights = torch.tensor(counts / n_samples, dtype=torch.float64)
    ref = torch.tensor(ref_logp)
    logits = torch.nn.Parameter(ref.clone())  # pi_theta = pi_ref at init
    steps = 400
    optimizer = torch.optim.Adam([logits], lr=0.2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        logp = torch.log_softmax(logits, 0)
        losses, _, _ = dpo_loss(
            logp[chosen_ids], logp[rejected_ids], ref[chosen_ids], ref[rejected_ids], beta=beta
        )
        loss = (weights * losses).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    learned = torch.log_softmax(logits.detach(), 0).numpy()

    wins = np.zeros((K, K))
    np.add.at(wins, (chosen, rejected), 1)
    empirical = ref_logp + _bt_mle(wins) / beta  # minimiser of this sample's DPO loss, found independently
    optimum = _optimum(ref_logp, rewards, beta)

    # 1. the optimiser reached the sample's DPO minimiser
    np.testing.assert_allclose(_log_ratios(learned), _log_ratios(empirical), atol=1e-4)
    # 2. the sample minimiser is within sampling error of pi*: by the delta method a pair's logit(alpha) estimate
    # from n_ij = n_samples / 15 comparisons has standard error 1 / sqrt(n_ij p (1 - p)), and the log-ratio is
    # that over beta; 4 of the worst pair's standard errors bound the error (pooling over pairs only shrinks it).
    p = 1.0 / (1.0 + np.exp(-np.abs(_log_ratios(rewards))))
    tolerance = 4.0 / np.sqrt(n_samples / len(PAIRS) * p * (1 - p)).min() / beta
    assert np.abs(_log_ratios(learned) - _log_ratios(optimum)).max() < tolerance
    # 3. rankings: the trained policy agrees with pi* on >= 90% of pairs, and training changed some of the
    # reference's rankings (so the agreement is not inherited)
    chosen_side = torch.tensor([i for i, _ in PAIRS])
    rejected_side = torch.tensor([j for _, j in PAIRS])
    learned_ranks = ranking_correct(torch.tensor(learned)[chosen_side], torch.tensor(learned)[rejected_side])
    optimum_ranks = _log_ratios(optimum) > 0
    assert (learned_ranks.numpy() == optimum_ranks).mean() >= 0.9
    assert ((_log_ratios(ref_logp) > 0) != optimum_ranks).any()
