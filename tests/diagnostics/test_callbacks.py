"""FlipTracker against a fake trainer that honours the callback contract with real tiny models."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.diagnostics.callbacks import FLIP_BASELINE, FLIP_KEYS, FlipTracker
from alignlab.diagnostics.scoring import compute_pair_scores
from alignlab.errors import ConfigError
from alignlab.train import load_config
from tests.diagnostics._scoring_helpers import perturbed, sample_examples, tiny_model


class FakeTrainer:
    """train_examples + score_pairs(examples) -> float64 [N] tensors, as the trainer's contract says."""

    def __init__(self, policy, ref, examples):
        self.policy, self.ref, self.train_examples = policy, ref, examples
        self.calls = []

    def score_pairs(self, examples):
        self.calls.append([e["index"] for e in examples])
        policy = compute_pair_scores(self.policy, examples)
        ref = compute_pair_scores(self.ref, examples)
        self.last = {
            "policy_chosen_logps": policy.chosen_logps,
            "policy_rejected_logps": policy.rejected_logps,
            "ref_chosen_logps": ref.chosen_logps,
            "ref_rejected_logps": ref.rejected_logps,
            "chosen_lengths": policy.chosen_lengths.double(),
            "rejected_lengths": policy.rejected_lengths.double(),
        }
        return self.last


class CountingTrainer(FakeTrainer):
    """Same contract without models: scores derived from the record index (for subset bookkeeping tests)."""

    def score_pairs(self, examples):
        self.calls.append([e["index"] for e in examples])
        index = torch.tensor([float(e["index"]) for e in examples], dtype=torch.float64)
        ones = torch.ones_like(index)
        return {
            "policy_chosen_logps": index,
            "policy_rejected_logps": -index,
            "ref_chosen_logps": -index,
            "ref_rejected_logps": index,
            "chosen_lengths": ones,
            "rejected_lengths": ones,
        }


@pytest.fixture(scope="module")
def models():
    ref = tiny_model()
    return ref, perturbed(ref, scale=0.05, seed=3)


@pytest.fixture(scope="module")
def examples():
    return sample_examples(40)


def test_subset_is_fixed_and_seeded(examples):
    trainer = CountingTrainer(None, None, examples)
    a, b, c = (
        FlipTracker(n_pairs=10, seed=0),
        FlipTracker(n_pairs=10, seed=0),
        FlipTracker(n_pairs=10, seed=1),
    )
    for tracker in (a, b, c):
        tracker.on_train_begin(trainer)
    assert a.positions == b.positions and a.positions != c.positions
    assert len(set(a.positions)) == 10 and a.positions == sorted(a.positions)
    big = FlipTracker(n_pairs=1000)
    big.on_train_begin(trainer)
    assert big.positions == list(range(len(examples)))
    a.on_evaluate(trainer, 0)
    a.on_evaluate(trainer, 5)
    assert trainer.calls[0] == trainer.calls[1] == [examples[i]["index"] for i in a.positions]


def test_policy_equal_to_reference_has_no_crossing(models, examples):
    ref, _ = models
    trainer = FakeTrainer(ref, ref, examples)
    tracker = FlipTracker(n_pairs=16)
    tracker.on_train_begin(trainer)
    metrics = tracker.on_evaluate(trainer, 0)
    assert metrics["flips/ref_correct_model_incorrect"] == 0.0
    assert metrics["flips/ref_incorrect_model_correct"] == 0.0
    assert metrics["flips/ranking_accuracy"] == metrics["flips/ref_ranking_accuracy"]
    assert metrics.get("flips/flipped_fraction", 0.0) == 0.0


def test_metrics_match_independent_counts(models, examples):
    ref, policy = models
    trainer = FakeTrainer(policy, ref, examples)
    tracker = FlipTracker(n_pairs=24, seed=2, beta=0.1)
    tracker.on_train_begin(trainer)
    metrics = tracker.on_evaluate(trainer, 7)
    scores = trainer.last
    ref_ok = (scores["ref_chosen_logps"] > scores["ref_rejected_logps"]).tolist()
    pol_ok = (scores["policy_chosen_logps"] > scores["policy_rejected_logps"]).tolist()
    want = {
        "ref_correct_model_correct": sum(r and p for r, p in zip(ref_ok, pol_ok)),
        "ref_correct_model_incorrect": sum(r and not p for r, p in zip(ref_ok, pol_ok)),
        "ref_incorrect_model_correct": sum(not r and p for r, p in zip(ref_ok, pol_ok)),
        "ref_incorrect_model_incorrect": sum(not r and not p for r, p in zip(ref_ok, pol_ok)),
    }
    assert set(want) == set(FLIP_KEYS.values())
    for key, count in want.items():
        assert metrics[f"flips/{key}_count"] == count
        assert metrics[f"flips/{key}"] == pytest.approx(count / 24)
    assert sum(metrics[f"flips/{key}"] for key in want) == pytest.approx(1.0)
    wrong = want["ref_incorrect_model_correct"] + want["ref_incorrect_model_incorrect"]
    if wrong:
        assert metrics["flips/flipped_fraction"] == pytest.approx(want["ref_incorrect_model_correct"] / wrong)
    assert metrics["flips/n_pairs"] == 24.0
    assert all(isinstance(v, float) for v in metrics.values())
    # per-group mean DPO loss, independently: softplus(-beta h) over the group's pairs
    h = (scores["policy_chosen_logps"] - scores["ref_chosen_logps"]) - (
        scores["policy_rejected_logps"] - scores["ref_rejected_logps"]
    )
    loss = torch.log1p(torch.exp(-0.1 * h))
    mask = torch.tensor(ref_ok) & torch.tensor(pol_ok)
    if mask.any():
        assert metrics["flips/ref_correct_model_correct_mean_loss"] == pytest.approx(loss[mask].mean().item())
    assert tracker.history[-1]["step"] == 7.0


def test_contract_errors(models, examples):
    with pytest.raises(ConfigError, match="n_pairs"):
        FlipTracker(n_pairs=0)
    with pytest.raises(ConfigError, match="beta"):
        FlipTracker(beta=-1.0)
    ref, _ = models
    with pytest.raises(ConfigError, match="no training pairs"):
        FlipTracker().on_train_begin(FakeTrainer(ref, ref, []))
    with pytest.raises(RuntimeError, match="before on_train_begin"):
        FlipTracker().on_evaluate(FakeTrainer(ref, ref, examples), 0)


class ReferenceFreeTrainer(FakeTrainer):
    """A reference-free method's trainer (simpo, orpo): NaN ref_* columns from score_pairs, like Trainer."""

    def __init__(self, policy, examples, *, announce: bool = True):
        super().__init__(policy, None, examples)
        if announce:  # the real Trainer exposes its config; simpo/orpo need no reference
            self.cfg = load_config(overrides=["method=simpo"])

    def score_pairs(self, examples):
        self.calls.append([e["index"] for e in examples])
        policy = compute_pair_scores(self.policy, examples)
        nan = torch.full_like(policy.chosen_logps, float("nan"))
        self.last = {
            "policy_chosen_logps": policy.chosen_logps,
            "policy_rejected_logps": policy.rejected_logps,
            "ref_chosen_logps": nan,
            "ref_rejected_logps": nan.clone(),
            "chosen_lengths": policy.chosen_lengths.double(),
            "rejected_lengths": policy.rejected_lengths.double(),
        }
        return self.last


@pytest.mark.parametrize("announce", [True, False])
def test_reference_free_flips_count_against_the_initial_policy(models, examples, announce):
    initial, trained = models
    trainer = ReferenceFreeTrainer(initial, examples, announce=announce)
    tracker = FlipTracker(n_pairs=16, seed=1, beta=0.1)
    tracker.on_train_begin(trainer)
    # announced: the subset is scored before any step; otherwise the first evaluation is the baseline
    assert len(trainer.calls) == (1 if announce else 0)
    start = tracker.on_evaluate(trainer, 0)
    assert tracker.reference == "initial policy" and start["flips/ref_is_initial_policy"] == 1.0
    assert start["flips/ref_correct_model_incorrect"] == start["flips/ref_incorrect_model_correct"] == 0.0
    base = dict(trainer.last)
    trainer.policy = trained  # a training step moved the policy
    later = tracker.on_evaluate(trainer, 5)
    scores = trainer.last
    ref_ok = (base["policy_chosen_logps"] > base["policy_rejected_logps"]).tolist()
    pol_ok = (scores["policy_chosen_logps"] > scores["policy_rejected_logps"]).tolist()
    pairs = list(zip(ref_ok, pol_ok))
    assert later["flips/ref_incorrect_model_correct_count"] == sum(not r and p for r, p in pairs)
    assert later["flips/ref_correct_model_incorrect_count"] == sum(r and not p for r, p in pairs)
    assert later["flips/ref_ranking_accuracy"] == start["flips/ranking_accuracy"]
    assert later["flips/ranking_accuracy"] == pytest.approx(sum(pol_ok) / 16)
    assert all(math.isfinite(v) for v in later.values())


def test_reference_based_metrics_are_unchanged(models, examples):
    ref, policy = models
    trainer = FakeTrainer(policy, ref, examples)
    trainer.cfg = load_config(overrides=["method=dpo"])
    tracker = FlipTracker(n_pairs=8)
    tracker.on_train_begin(trainer)
    assert trainer.calls == []  # no extra scoring pass for a method with a reference
    metrics = tracker.on_evaluate(trainer, 0)
    assert "flips/ref_is_initial_policy" not in metrics and tracker.reference == "reference model"
    assert metrics["flips/ref_ranking_accuracy"] == pytest.approx(
        (trainer.last["ref_chosen_logps"] > trainer.last["ref_rejected_logps"]).double().mean().item()
    )


def test_reference_free_baseline_survives_resume(models, examples, tmp_path):
    """The step-0 scores are saved in the run directory; a resumed run (policy moved) counts against them."""
    initial, trained = models
    first = ReferenceFreeTrainer(initial, examples, announce=True)
    first.run_dir, first.resume = tmp_path, False
    tracker = FlipTracker(n_pairs=16, seed=1)
    tracker.on_train_begin(first)
    start = tracker.on_evaluate(first, 0)
    assert (tmp_path / FLIP_BASELINE).is_file()
    resumed = ReferenceFreeTrainer(trained, examples, announce=True)  # the checkpoint's policy differs
    resumed.run_dir, resumed.resume = tmp_path, True
    again = FlipTracker(n_pairs=16, seed=1)
    again.on_train_begin(resumed)
    assert resumed.calls == []  # the baseline was read, not rescored from the resumed policy
    later = again.on_evaluate(resumed, 5)
    assert later["flips/ref_is_initial_policy"] == 1.0
    assert later["flips/ref_ranking_accuracy"] == start["flips/ranking_accuracy"]
    other = FlipTracker(n_pairs=8, seed=1)  # another subset cannot use this baseline
    with pytest.raises(ConfigError, match="another pair subset"):
        other.on_train_begin(resumed)


def test_reference_free_resume_without_a_baseline_says_so(models, examples, tmp_path):
    _, trained = models
    resumed = ReferenceFreeTrainer(trained, examples, announce=True)
    resumed.run_dir, resumed.resume = tmp_path, True
    tracker = FlipTracker(n_pairs=16, seed=1)
    tracker.on_train_begin(resumed)
    metrics = tracker.on_evaluate(resumed, 3)
    assert tracker.reference == "resumed policy" and metrics["flips/ref_is_resumed_policy"] == 1.0
    assert "flips/ref_is_initial_policy" not in metrics
