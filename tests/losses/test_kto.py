"""KTO / unpaired APO-zero against a float64 transcription of TRL 1.16's KTOTrainer._compute_loss, known values,
weights, the reference point and invalid inputs (arXiv 2402.01306, 2408.06266)."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.losses.kto import (
    KTO_LOSS_TYPES,
    kto_batch_metrics,
    kto_loss,
    kto_reference_point,
    kto_weight_range,
)


def _trl(policy, ref, labels, kl_policy, kl_ref, *, beta, wd, wu, loss_type):
    """TRL 1.16's loss, line by line: split by label, per-side losses, concatenate, nanmean (one process)."""
    chosen_idx = torch.nonzero(labels).view(-1)
    rejected_idx = torch.nonzero(~labels).view(-1)
    chosen_logps, rejected_logps = policy.index_select(0, chosen_idx), policy.index_select(0, rejected_idx)
    ref_chosen, ref_rejected = ref.index_select(0, chosen_idx), ref.index_select(0, rejected_idx)
    if loss_type == "kto":
        kl = (kl_policy - kl_ref).mean().detach()
        kl = kl.reshape(1).mean().clamp(min=0)  # gather_for_metrics over one process
    else:
        kl = torch.zeros(1, dtype=policy.dtype)
    empty = torch.zeros(0, dtype=policy.dtype)
    chosen_losses = rejected_losses = empty
    chosen_rewards = rejected_rewards = empty
    if chosen_logps.shape[0] != 0:
        r = chosen_logps - ref_chosen
        if loss_type == "kto":
            chosen_losses = 1 - F.sigmoid(beta * (r - kl))
        else:
            chosen_losses = 1 - F.sigmoid(beta * r)
        chosen_rewards = beta * r.detach()
    if rejected_logps.shape[0] != 0:
        r = rejected_logps - ref_rejected
        if loss_type == "kto":
            rejected_losses = 1 - F.sigmoid(beta * (kl - r))
        else:
            rejected_losses = F.sigmoid(beta * r)
        rejected_rewards = beta * r.detach()
    losses = torch.cat((wd * chosen_losses, wu * rejected_losses), 0)
    return losses.nanmean(), kl, chosen_rewards, rejected_rewards


def _stats(seed, n):
    g = torch.Generator().manual_seed(seed)
    policy, ref, kl_policy, kl_ref = (torch.randn(n, generator=g, dtype=torch.float64) * 8 - 40 for _ in range(4))
    labels = torch.rand(n, generator=g) < 0.5
    return policy, ref, labels, kl_policy, kl_ref


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    beta=st.floats(0.01, 5.0),
    wd=st.floats(0.0, 3.0),
    wu=st.floats(0.0, 3.0),
    loss_type=st.sampled_from(KTO_LOSS_TYPES),
)
def test_matches_trl_values_and_gradients(seed, n, beta, wd, wu, loss_type):
    policy, ref, labels, kl_policy, kl_ref = _stats(seed, n)
    p1 = policy.clone().requires_grad_()
    p2 = policy.clone().requires_grad_()
    k1 = kl_policy.clone().requires_grad_()

    expected, kl_trl, chosen_rewards, rejected_rewards = _trl(
        p1, ref, labels, k1, kl_ref, beta=beta, wd=wd, wu=wu, loss_type=loss_type
    )
    z0 = kto_reference_point(kl_policy, kl_ref) if loss_type == "kto" else None
    losses, rewards = kto_loss(p2, ref, labels, z0, beta=beta, desirable_weight=wd, undesirable_weight=wu,
                               loss_type=loss_type)
    assert losses.shape == rewards.shape == (n,)
    torch.testing.assert_close(losses.mean(), expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(rewards[labels], chosen_rewards, rtol=0, atol=1e-10)
    torch.testing.assert_close(rewards[~labels], rejected_rewards, rtol=0, atol=1e-10)
    if loss_type == "kto":
        torch.testing.assert_close(z0, kl_trl.reshape(()), rtol=0, atol=1e-10)
    (g_trl,) = torch.autograd.grad(expected, p1)
    (g_ours,) = torch.autograd.grad(losses.mean(), p2)
    torch.testing.assert_close(g_ours, g_trl, rtol=0, atol=1e-10)
    assert not rewards.requires_grad


def test_reference_point_is_detached_and_clamped():
    policy = torch.tensor([-10.0, -12.0, -8.0], dtype=torch.float64, requires_grad=True)
    ref = torch.tensor([-11.0, -11.0, -11.0], dtype=torch.float64)
    z0 = kto_reference_point(policy, ref)  # mean(1, -1, 3) = 1
    assert z0.shape == () and float(z0) == 1.0 and not z0.requires_grad
    assert float(kto_reference_point(ref - 2, ref)) == 0.0  # a negative estimate is clamped at 0


def test_reference_point_clamps_after_the_all_reduce():
    # this process's mean is -1 (clamped alone: 0); averaged with another process's +3 it is 1
    policy, ref = torch.tensor([-2.0, -4.0]), torch.tensor([-2.0, -2.0])
    z0 = kto_reference_point(policy, ref, all_reduce_mean=lambda x: (x + 3.0) / 2)
    assert float(z0) == 1.0


@pytest.mark.parametrize("beta", [0.1, 1.0, 3.0])
def test_reward_at_reference_point_gives_one_half(beta):
    ref = torch.tensor([-20.0, -5.0, -33.0, -7.0], dtype=torch.float64)
    z0 = torch.tensor(0.7, dtype=torch.float64)
    labels = torch.tensor([True, False, True, False])
    losses, rewards = kto_loss(ref + 0.7, ref, labels, z0, beta=beta)
    torch.testing.assert_close(losses, torch.full((4,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(rewards, torch.full((4,), beta * 0.7, dtype=torch.float64))


def test_hand_computed_values_and_weights():
    # r = 2 and -2 against z0 = 0, beta 0.5: desirable 1 - sigma(1), undesirable 1 - sigma(1)
    policy, ref = torch.tensor([-8.0, -12.0]), torch.tensor([-10.0, -10.0])
    labels = torch.tensor([True, False])
    expected = 1 - torch.sigmoid(torch.tensor(1.0))
    losses, _ = kto_loss(policy, ref, labels, torch.tensor(0.0), beta=0.5, desirable_weight=2.0,
                         undesirable_weight=0.25)
    torch.testing.assert_close(losses, torch.stack([2.0 * expected, 0.25 * expected]))
    # APO-zero unpaired: desirable 1 - sigma(beta r), undesirable sigma(beta r), no reference point
    losses, _ = kto_loss(policy, ref, labels, None, beta=0.5, loss_type="apo_zero_unpaired")
    torch.testing.assert_close(losses, torch.stack([expected, torch.sigmoid(torch.tensor(-1.0))]))


def test_gradient_direction():
    policy = torch.tensor([-10.0, -10.0], requires_grad=True)
    losses, _ = kto_loss(policy, torch.tensor([-10.0, -10.0]), torch.tensor([True, False]), torch.tensor(0.0))
    (grad,) = torch.autograd.grad(losses.sum(), policy)
    assert grad[0] < 0 < grad[1]  # descent raises the desirable log-prob and lowers the undesirable one


def test_batch_metrics():
    policy = torch.tensor([-1.0, -3.0, -5.0])
    rewards = torch.tensor([0.2, -0.4, 0.6])
    labels = torch.tensor([True, False, True])
    m = kto_batch_metrics(policy, rewards, labels, torch.tensor(0.5))
    assert m == pytest.approx({"kl": 0.5, "rewards/chosen": 0.4, "logps/chosen": -3.0, "rewards/rejected": -0.4,
                               "logps/rejected": -3.0, "rewards/margins": 0.8})
    m = kto_batch_metrics(policy, rewards, torch.tensor([True, True, True]), torch.tensor(0.0))
    assert "rewards/rejected" not in m and "rewards/margins" not in m


def test_weight_range_is_trls():
    assert kto_weight_range(5, 10) is None
    # TRL: 30 desirable, 70 undesirable -> desirable_weight in [2.33, 3.1], undesirable_weight in [0.32, 0.43]
    assert kto_weight_range(30, 100) == ((2.33, 3.1), (0.32, 0.43))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beta": 0.0}, "beta"),
        ({"desirable_weight": -1.0}, "desirable_weight"),
        ({"undesirable_weight": float("nan")}, "undesirable_weight"),
        ({"loss_type": "bco"}, "loss_type"),
        ({"kl": None}, "reference point"),
        ({"kl": torch.zeros(2)}, "reference point"),
        ({"labels": torch.tensor([1, 0, 1])}, "bool"),
        ({"labels": torch.tensor([True, False])}, "shape"),
        ({"ref_logps": torch.zeros(3, 1)}, "shape"),
    ],
)
def test_invalid_inputs_raise(kwargs, match):
    args = {"policy_logps": torch.zeros(3), "ref_logps": torch.zeros(3),
            "labels": torch.tensor([True, False, True]), "kl": torch.tensor(0.0)}
    args.update({k: v for k, v in kwargs.items() if k in args})
    options = {k: v for k, v in kwargs.items() if k not in args}
    with pytest.raises(ValueError, match=match):
        kto_loss(args["policy_logps"], args["ref_logps"], args["labels"], args["kl"], **options)


def test_invalid_reference_point_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        kto_reference_point(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        kto_reference_point(torch.zeros(0), torch.zeros(0))
    with pytest.raises(ValueError, match="at least one"):
        kto_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool), torch.tensor(0.0))
