"""dpo_loss's fifteen TRL 1.16 loss types against float64 transcriptions of TRL's DPOTrainer._compute_loss.

Each transcription below is written from TRL's code (trl/trainer/dpo_trainer.py, v1.16.0) with different
primitives (log σ as -log1p(exp(-z)), sorting by argsort, sft as a masked token mean), values and gradients
w.r.t. the four log-prob inputs compared at 1e-10. An optional parity test calls TRL's own loss code.
"""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from alignlab.losses import DPO_LOSS_TYPES, BCORewardMean, dpo_loss

TOL = {"rtol": 1e-10, "atol": 1e-10}
BETAS = (0.1, 0.5, 2.0)
SMOOTHING = {"sigmoid": 0.0, "exo_pair": 1e-3, "robust": 0.2, "aot": 0.1, "aot_unpaired": 0.3}


def _logsig(z):
    return -torch.log1p(torch.exp(-z))


def _sig(z):
    return 1.0 / (1.0 + torch.exp(-z))


def _inputs(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    logps = [(torch.randn(n, generator=g, dtype=torch.float64) * 2 - 5).requires_grad_() for _ in range(4)]
    chosen_lengths = torch.randint(1, 30, (n,), generator=g)
    rejected_lengths = torch.randint(1, 30, (n,), generator=g)
    rejected_lengths[0] = 0  # TRL clamps the count to 1 for ipo / sigmoid_norm
    return logps, chosen_lengths, rejected_lengths


def _token_mean_nll(chosen_logps, lengths, width=32):
    """TRL's sft: -per_token_logps[chosen_mask].mean(), with each S_c spread evenly over its n_c tokens."""
    mask = torch.arange(width)[None, :] < lengths[:, None]
    per_token = torch.where(mask, chosen_logps[:, None] / lengths.clamp(min=1)[:, None], torch.zeros(()))
    return -per_token[mask].mean()


def trl_formula(name, pc, pr, rc, rr, *, beta, eps=0.0, tau=0.05, nc=None, nr=None, delta=0.0):
    """TRL 1.16's per_sequence_loss for one loss type (reverse KL, no WPO weighting, ld_alpha None)."""
    cl, rl = pc - rc, pr - rr  # chosen_logratios, rejected_logratios (= the scores under reverse KL)
    d = cl - rl  # delta_score
    if name == "sigmoid":
        return -_logsig(beta * d)
    if name == "hinge":
        return torch.clamp(1 - beta * d, min=0.0)
    if name == "ipo":
        one = torch.ones((), dtype=torch.float64)
        d = d if nc is None else cl / torch.maximum(nc, one) - rl / torch.maximum(nr, one)
        return (d - 1 / (2 * beta)) ** 2
    if name == "exo_pair":
        return (_sig(beta * d) * (_logsig(beta * d) - math.log(1 - eps))
                + _sig(-beta * d) * (_logsig(-beta * d) - math.log(eps)))
    if name == "nca_pair":
        return -_logsig(beta * cl) - 0.5 * _logsig(-beta * cl) - 0.5 * _logsig(-beta * rl)
    if name == "robust":
        return ((1 - eps) * -_logsig(beta * d) - eps * -_logsig(-beta * d)) / (1 - 2 * eps)
    if name == "bco_pair":
        return -_logsig(beta * cl - delta) - _logsig(-(beta * rl - delta))
    if name == "sppo_hard":
        return (cl - 0.5 / beta) ** 2 + (rl + 0.5 / beta) ** 2
    if name in ("aot", "aot_unpaired"):
        a, b = (pc - pr, rc - rr) if name == "aot" else (cl, rl)
        z = beta * (a[a.argsort()] - b[b.argsort()])
        return -_logsig(z) * (1 - eps) - _logsig(-z) * eps
    if name == "apo_zero":
        return (1 - _sig(beta * cl)) + _sig(beta * rl)
    if name == "apo_down":
        return _sig(beta * cl) + (1 - _sig(beta * d))
    if name == "discopop":
        m = _sig(beta * d / tau)
        return -_logsig(beta * d) * (1 - m) + torch.exp(-beta * d) * m
    if name == "sigmoid_norm":
        one = torch.ones((), dtype=torch.float64)
        return -_logsig(beta * (cl / torch.maximum(nc, one) - rl / torch.maximum(nr, one)))
    if name == "sft":
        return _token_mean_nll(pc, nc).expand(pc.shape[0])
    raise AssertionError(name)


def _extra(name, chosen_lengths, rejected_lengths):
    """The keyword arguments a loss type reads, for dpo_loss and for the transcription."""
    ours = {"label_smoothing": SMOOTHING.get(name, 0.0)}
    ref = {"eps": SMOOTHING.get(name, 0.0)}
    if name in ("sigmoid_norm", "ipo"):
        ours |= {"chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths}
        ref |= {"nc": chosen_lengths, "nr": rejected_lengths}
    if name == "sft":
        ours |= {"chosen_lengths": chosen_lengths}
        ref |= {"nc": chosen_lengths}
    return ours, ref


def _grads(losses, leaves, seed=0):
    weights = torch.rand(losses.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.autograd.grad((weights * losses).sum(), leaves, materialize_grads=True)


def _assert_same(ours, ref, leaves):
    torch.testing.assert_close(ours, ref, **TOL)
    for g_ours, g_ref in zip(_grads(ours, leaves), _grads(ref, leaves), strict=True):
        torch.testing.assert_close(g_ours, g_ref, **TOL)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("name", DPO_LOSS_TYPES)
def test_matches_trl_transcription(name, beta, seed):
    leaves, chosen_lengths, rejected_lengths = _inputs(seed)
    ours_kw, ref_kw = _extra(name, chosen_lengths, rejected_lengths)
    losses, chosen_rewards, rejected_rewards = dpo_loss(*leaves, beta=beta, loss_type=name, **ours_kw)
    _assert_same(losses, trl_formula(name, *leaves, beta=beta, **ref_kw), leaves)
    pc, pr, rc, rr = (t.detach() for t in leaves)  # TRL reports beta * log-ratio for every loss type
    torch.testing.assert_close(chosen_rewards, beta * (pc - rc), **TOL)
    torch.testing.assert_close(rejected_rewards, beta * (pr - rr), **TOL)
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


@pytest.mark.parametrize("eps", [0.05, 0.25, 0.45])
@pytest.mark.parametrize("name", ["exo_pair", "robust", "aot", "aot_unpaired"])
def test_label_smoothing_where_trl_reads_it(name, eps):
    leaves, _, _ = _inputs(3)
    ours = dpo_loss(*leaves, beta=0.3, loss_type=name, label_smoothing=eps)[0]
    _assert_same(ours, trl_formula(name, *leaves, beta=0.3, eps=eps), leaves)


def test_sigmoid_label_smoothing_is_cdpo():
    """TRL 1.16's sigmoid ignores label_smoothing; alignlab keeps cDPO for eps > 0 (TRL's value at eps = 0)."""
    leaves, _, _ = _inputs(4)
    pc, pr, rc, rr = leaves
    z = 0.2 * ((pc - rc) - (pr - rr))
    ours = dpo_loss(*leaves, beta=0.2, label_smoothing=0.1)[0]
    _assert_same(ours, 0.9 * torch.log1p(torch.exp(-z)) + 0.1 * torch.log1p(torch.exp(z)), leaves)


def test_ipo_without_lengths_uses_the_inputs_as_they_are():
    leaves, _, _ = _inputs(5)
    ours = dpo_loss(*leaves, beta=0.5, loss_type="ipo")[0]
    _assert_same(ours, trl_formula("ipo", *leaves, beta=0.5), leaves)


@pytest.mark.parametrize("tau", [0.01, 0.05, 1.0])
def test_discopop_tau(tau):
    leaves, _, _ = _inputs(6)
    ours = dpo_loss(*leaves, beta=0.1, loss_type="discopop", discopop_tau=tau)[0]
    _assert_same(ours, trl_formula("discopop", *leaves, beta=0.1, tau=tau), leaves)


@pytest.mark.parametrize("delta", [0.7, torch.tensor(-0.4, dtype=torch.float64, requires_grad=True)])
def test_bco_pair_reward_shift_has_no_gradient(delta):
    leaves, _, _ = _inputs(7)
    ours = dpo_loss(*leaves, beta=0.5, loss_type="bco_pair", bco_delta=delta)[0]
    shift = delta.item() if isinstance(delta, torch.Tensor) else delta
    _assert_same(ours, trl_formula("bco_pair", *leaves, beta=0.5, delta=shift), leaves)
    if isinstance(delta, torch.Tensor):
        assert torch.autograd.grad(ours.sum(), delta, allow_unused=True)[0] is None


def test_bco_running_mean_matches_trl_running_moments():
    """TRL <= 0.2x: RunningMoments(mean 0, count 1e-24).update(batch mean of the 2B rewards) once per step."""
    state, mean, count = BCORewardMean(), 0.0, 1e-24
    g = torch.Generator().manual_seed(8)
    for _ in range(5):
        chosen, rejected = (torch.randn(4, generator=g, dtype=torch.float64) for _ in range(2))
        x = float(torch.cat((chosen, rejected)).mean())
        mean, count = mean + (x - mean) * 1 / (count + 1), count + 1
        assert state.update(chosen, rejected) == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert state.count == 5


@pytest.mark.parametrize("weights", [None, [0.8, 0.2, 1.0], [1.5, -0.5, 0.25]])
def test_weighted_list_is_the_weighted_sum(weights):
    leaves, chosen_lengths, _ = _inputs(9)
    types = ["sigmoid", "bco_pair", "sft"]  # MPO's combination in the TRL docs
    ours = dpo_loss(*leaves, beta=0.1, loss_type=types, loss_weights=weights,
                    chosen_lengths=chosen_lengths)[0]
    ref = sum((1.0 if weights is None else w) * trl_formula(name, *leaves, beta=0.1, nc=chosen_lengths)
              for name, w in zip(types, weights or [1.0] * 3, strict=True))
    _assert_same(ours, ref, leaves)


def test_list_of_one_and_tuple_equal_the_name():
    leaves, _, _ = _inputs(10)
    single = dpo_loss(*leaves, loss_type="hinge")[0]
    assert torch.equal(dpo_loss(*leaves, loss_type=("hinge",))[0], single)
    assert torch.equal(dpo_loss(*leaves, loss_type=["hinge"], loss_weights=[1.0])[0], single)
    torch.testing.assert_close(dpo_loss(*leaves, loss_type=["hinge", "hinge"])[0], 2 * single, **TOL)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_rpo_is_dpo_plus_alpha_token_mean_nll(alpha):
    leaves, chosen_lengths, _ = _inputs(11)
    ours = dpo_loss(*leaves, beta=0.1, rpo_alpha=alpha, chosen_lengths=chosen_lengths)[0]
    ref = trl_formula("sigmoid", *leaves, beta=0.1) + alpha * _token_mean_nll(leaves[0], chosen_lengths)
    _assert_same(ours, ref, leaves)
    as_list = dpo_loss(*leaves, beta=0.1, loss_type=["sigmoid", "sft"], loss_weights=[1.0, alpha],
                       chosen_lengths=chosen_lengths)[0]  # TRL 1.16's spelling of RPO
    torch.testing.assert_close(ours, as_list, **TOL)


def test_sft_reads_chosen_nll_when_given():
    leaves, chosen_lengths, _ = _inputs(12)
    nll = torch.rand(8, dtype=torch.float64, requires_grad=True) * 40
    ours = dpo_loss(*leaves, loss_type="sft", chosen_lengths=chosen_lengths, chosen_nll=nll)[0]
    _assert_same(ours, (nll.sum() / chosen_lengths.sum()).expand(8), [nll])


def test_known_values_at_zero_margins():
    z, beta, eps = torch.zeros(3, dtype=torch.float64), 0.25, 0.1
    n = torch.full((3,), 4)
    log2 = math.log(2.0)
    expected = {
        "sigmoid": log2, "hinge": 1.0, "ipo": (1 / (2 * beta)) ** 2, "nca_pair": 2 * log2, "robust": log2,
        "bco_pair": 2 * log2, "sppo_hard": 2 * (1 / (2 * beta)) ** 2, "aot": log2, "aot_unpaired": log2,
        "apo_zero": 1.0, "apo_down": 1.0, "discopop": 0.5 * log2 + 0.5, "sigmoid_norm": log2,
        "exo_pair": -log2 - 0.5 * math.log(eps * (1 - eps)), "sft": 0.0,
    }
    assert set(expected) == set(DPO_LOSS_TYPES)
    for name, value in expected.items():
        kw = {"label_smoothing": eps} if name in ("robust", "exo_pair") else {}
        losses = dpo_loss(z, z, z, z, beta=beta, loss_type=name, chosen_lengths=n, rejected_lengths=n,
                          **kw)[0]
        torch.testing.assert_close(losses, torch.full((3,), value, dtype=torch.float64), **TOL, msg=name)


def test_sft_hand_computed():
    # chosen sums -6 over 3 tokens and -4 over 1 token: token mean NLL = 10 / 4, the same for both pairs
    pc = torch.tensor([-6.0, -4.0], dtype=torch.float64)
    losses = dpo_loss(pc, pc, pc, pc, loss_type="sft", chosen_lengths=torch.tensor([3, 1]))[0]
    torch.testing.assert_close(losses, torch.full((2,), 2.5, dtype=torch.float64))


def test_sigmoid_gradient_at_init_is_minus_beta_over_two():
    pc = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    z = torch.zeros(1, dtype=torch.float64)
    (g,) = torch.autograd.grad(dpo_loss(pc, z, z, z, beta=0.3, loss_type=["sigmoid"])[0].sum(), pc)
    assert float(g) == pytest.approx(-0.15, rel=1e-12)


def test_aot_depends_on_the_batch_not_on_its_order():
    leaves, _, _ = _inputs(13)
    detached = [t.detach() for t in leaves]
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(0))
    for name in ("aot", "aot_unpaired"):
        batch = dpo_loss(*detached, loss_type=name)[0]
        torch.testing.assert_close(dpo_loss(*(t[perm] for t in detached), loss_type=name)[0], batch, **TOL)
        singles = torch.cat([dpo_loss(*(t[i:i + 1] for t in detached), loss_type=name)[0] for i in range(8)])
        assert not torch.allclose(singles.sort().values, batch.sort().values)  # pairs of one = sigmoid


def test_zero_length_is_clamped_to_one():
    leaves, chosen_lengths, rejected_lengths = _inputs(14)
    ones = rejected_lengths.clone()
    ones[0] = 1
    for name in ("ipo", "sigmoid_norm"):
        a = dpo_loss(*leaves, loss_type=name, chosen_lengths=chosen_lengths,
                     rejected_lengths=rejected_lengths)[0]
        b = dpo_loss(*leaves, loss_type=name, chosen_lengths=chosen_lengths, rejected_lengths=ones)[0]
        assert torch.equal(a, b)


@pytest.mark.parametrize("kwargs,match", [
    ({"loss_type": "dpo"}, "sppo_hard"),  # the message lists the allowed names
    ({"loss_type": ["sigmoid", "kto"]}, "'kto'"),
    ({"loss_type": []}, "at least one"),
    ({"loss_type": ["sigmoid", "hinge"], "loss_weights": [1.0]}, "loss_weights"),
    ({"loss_weights": [float("nan")]}, "finite"),
    ({"loss_type": "exo_pair"}, "label_smoothing > 0"),
    ({"loss_type": "hinge", "label_smoothing": 0.1}, "label_smoothing"),
    ({"loss_type": "robust", "label_smoothing": 0.5}, r"\[0, 0.5\)"),
    ({"loss_type": "sigmoid_norm"}, "rejected_lengths"),
    ({"loss_type": "ipo", "chosen_lengths": torch.ones(1)}, "rejected_lengths"),
    ({"loss_type": "ipo", "rejected_lengths": torch.ones(1)}, "chosen_lengths"),
    ({"loss_type": "sft"}, "chosen_lengths"),
    ({"rpo_alpha": 1.0}, "chosen_lengths"),
    ({"rpo_alpha": float("inf"), "chosen_lengths": torch.ones(1)}, "rpo_alpha"),
    ({"loss_type": "discopop", "discopop_tau": 0.0}, "discopop_tau"),
    ({"loss_type": "apo_zero", "beta": -1.0}, "beta"),
])
def test_invalid_options_raise(kwargs, match):
    x = torch.zeros(1)
    with pytest.raises(ValueError, match=match):
        dpo_loss(x, x, x, x, **kwargs)


# ----------------------------------------------------------------- optional: TRL's own code, when importable


def _trl_trainer_stub(loss_types, loss_weights, beta, eps, tau):
    gather = SimpleNamespace(gather_for_metrics=lambda t: t, gather=lambda t: t, device=torch.device("cpu"))
    return SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=gather, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", use_weighting=False, loss_types=loss_types,
        loss_weights=loss_weights, beta=beta, label_smoothing=eps, args=SimpleNamespace(discopop_tau=tau),
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)


@pytest.mark.parametrize("loss_types,weights", [([name], [1.0]) for name in DPO_LOSS_TYPES]
                         + [(["sigmoid", "bco_pair", "sft"], [0.8, 0.2, 1.0]), (["ipo", "aot"], None)])
def test_parity_with_trl_dpo_trainer(loss_types, weights):
    """Calls DPOTrainer._compute_loss of an installed TRL 1.16 on a stub model that returns log-probs."""
    trl = pytest.importorskip("trl")
    if trl.__version__ != "1.16.0":
        pytest.skip(f"TRL 1.16.0 needed, found {trl.__version__}")
    from trl.trainer.dpo_trainer import DPOTrainer

    batch, width, beta, tau = 6, 12, 0.3, 0.05
    smoothed = {"robust", "aot", "aot_unpaired"}
    eps = 1e-3 if "exo_pair" in loss_types else (0.1 if set(loss_types) & smoothed else 0.0)
    g = torch.Generator().manual_seed(15)
    lengths = torch.randint(1, width, (2 * batch,), generator=g)
    completion_mask = (torch.arange(width)[None, :] >= 1) & (torch.arange(width)[None, :] <= lengths[:, None])
    shift_mask = completion_mask[:, 1:]
    leaf = (torch.rand(2 * batch, width - 1, generator=g, dtype=torch.float64) * -3).requires_grad_()
    per_token = leaf * shift_mask  # the fused head's log-prob is 0, without gradient, where labels are -100
    ref_logps = per_token.detach().sum(1) + torch.randn(2 * batch, generator=g, dtype=torch.float64)
    inputs = {"input_ids": torch.zeros(2 * batch, width, dtype=torch.long),
              "attention_mask": torch.ones(2 * batch, width), "completion_mask": completion_mask.long(),
              "ref_chosen_logps": ref_logps[:batch], "ref_rejected_logps": ref_logps[batch:]}
    zeros = torch.zeros(2 * batch, width - 1)

    def model(**_kwargs):
        return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())

    stub = _trl_trainer_stub(loss_types, weights or [1.0] * len(loss_types), beta, eps, tau)
    trl_loss = DPOTrainer._compute_loss(stub, model, inputs, False)
    logps = per_token.sum(1)
    ours = dpo_loss(logps[:batch], logps[batch:], ref_logps[:batch], ref_logps[batch:], beta=beta,
                    loss_type=loss_types, loss_weights=weights, label_smoothing=eps, discopop_tau=tau,
                    chosen_lengths=lengths[:batch], rejected_lengths=lengths[batch:])[0].mean()
    # TRL builds exo_pair's eps as a float32 tensor, so its log eps is float32-rounded
    tol = {"rtol": 1e-6, "atol": 1e-6} if "exo_pair" in loss_types else TOL
    torch.testing.assert_close(ours, trl_loss.to(ours.dtype), **tol)
    (g_ours,) = torch.autograd.grad(ours, leaf, retain_graph=True)
    (g_trl,) = torch.autograd.grad(trl_loss, leaf)
    torch.testing.assert_close(g_ours, g_trl, **tol)
