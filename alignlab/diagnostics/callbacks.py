"""Training callbacks for the ranking diagnostics: FlipTracker logs the four flip groups during training.

Trainer contract (the callback protocol of alignlab.train): `on_train_begin(trainer)` and
`on_evaluate(trainer, step) -> dict[str, float]` (metrics logged to metrics.jsonl), where
`trainer.train_examples` is the list of tokenized training pairs and `trainer.score_pairs(examples)` returns float64
[N] tensors policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths,
rejected_lengths for the current policy and the reference. For a reference-free method (simpo, orpo) the ref_*
columns are NaN (no reference ranking), so FlipTracker counts flips against the initial policy instead.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from alignlab.cache import write_json_atomically
from alignlab.diagnostics.flips import flip_groups
from alignlab.diagnostics.ranking import ranking_accuracy
from alignlab.errors import ConfigError
from alignlab.train.callbacks import TrainerCallback

# Metric names: reference correct/incorrect x model correct/incorrect (Chen et al. 2024, Sec. 4.1, Figure 2).
FLIP_KEYS = {
    "correct_to_correct": "ref_correct_model_correct",
    "correct_to_incorrect": "ref_correct_model_incorrect",
    "incorrect_to_correct": "ref_incorrect_model_correct",
    "incorrect_to_incorrect": "ref_incorrect_model_incorrect",
}
# reference-free runs: the step-0 policy's scores of the tracked subset, in the run directory
FLIP_BASELINE = "flip_baseline.json"
_SCORE_KEYS = ("policy_chosen_logps", "policy_rejected_logps", "ref_chosen_logps", "ref_rejected_logps")


def _no_reference(scores: dict[str, torch.Tensor]) -> bool:
    """All ref_* log-probs NaN: the trainer's reference-free signal (partly NaN: an error in flip_groups)."""
    return all(bool(torch.isnan(scores[key]).all()) for key in ("ref_chosen_logps", "ref_rejected_logps"))


class FlipTracker(TrainerCallback):
    """Track the four flip groups on a fixed seeded subset of the training pairs at every evaluation.

    n_pairs: subset size (all pairs when the training set is smaller); seed: the subset's seed; beta: if given,
    also log each group's mean DPO loss softplus(-beta h). Metrics returned by on_evaluate (fractions of the
    subset, strict comparisons): flips/<group> and flips/<group>_count for the four groups of FLIP_KEYS,
    flips/flipped_fraction (share of the pairs the reference ranks wrongly that the policy ranks correctly; absent
    when the reference ranks every pair correctly), flips/ranking_accuracy, flips/ref_ranking_accuracy,
    flips/n_pairs, and with beta flips/<group>_mean_loss for non-empty groups.

    Reference-free methods (simpo, orpo: trainer.cfg.method.record.needs_ref is false, and score_pairs returns NaN
    ref_* columns) have no reference ranking, so the "reference" of the flip groups is the initial policy: the
    subset is scored at on_train_begin, before any step, and those log-probs stand in for ref_* at every
    evaluation. They are saved in the run directory (FLIP_BASELINE, JSON), so a resumed run counts flips against
    the same step-0 policy. Such runs log flips/ref_is_initial_policy = 1.0 and `reference` says "initial policy"
    (else "reference model"); a run resumed without a saved baseline (it was started without flip tracking)
    counts against the resumed policy and logs flips/ref_is_resumed_policy = 1.0 instead. Reference-based methods
    are unaffected.
    """

    def __init__(self, n_pairs: int = 128, seed: int = 0, *, beta: float | None = None) -> None:
        if not isinstance(n_pairs, int) or isinstance(n_pairs, bool) or n_pairs < 1:
            raise ConfigError(f"FlipTracker n_pairs must be a positive integer; got {n_pairs!r}")
        if beta is not None and not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ConfigError(f"FlipTracker beta must be a number > 0 or None; got {beta!r}")
        self.n_pairs = n_pairs
        self.seed = seed
        self.beta = beta
        self.positions: list[int] | None = None
        self.examples: list[Any] | None = None
        self.history: list[dict[str, float]] = []
        self.initial: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reference = "reference model"

    def on_train_begin(self, trainer: Any) -> None:
        """Fix the subset: n_pairs positions of trainer.train_examples drawn with `seed`, kept in data order."""
        examples = list(trainer.train_examples)
        if not examples:
            raise ConfigError("FlipTracker: the trainer has no training pairs to track")
        generator = torch.Generator().manual_seed(self.seed)
        chosen = torch.randperm(len(examples), generator=generator)[: self.n_pairs]
        self.positions = sorted(int(i) for i in chosen)
        self.examples = [examples[i] for i in self.positions]
        self.history = []
        self.initial = None
        self.reference = "reference model"
        cfg = getattr(trainer, "cfg", None)
        if cfg is not None and not cfg.method.record.needs_ref:
            saved = self._load_baseline(trainer) if getattr(trainer, "resume", False) else None
            if saved is not None:
                self.initial = saved
                self.reference = "initial policy"
                return
            # scored before any step: the baseline is the initial policy, not the first evaluated one
            scores = self._score(trainer)
            if _no_reference(scores):
                self._use_initial_policy(scores)
                if getattr(trainer, "resume", False):
                    self.reference = "resumed policy"
                else:
                    self._save_baseline(trainer)

    def _baseline_path(self, trainer: Any) -> Path | None:
        run_dir = getattr(trainer, "run_dir", None)
        return Path(run_dir) / FLIP_BASELINE if run_dir is not None else None

    def _save_baseline(self, trainer: Any) -> None:
        path = self._baseline_path(trainer)
        accelerator = getattr(trainer, "accelerator", None)
        if path is None or (accelerator is not None and not accelerator.is_main_process):
            return
        chosen, rejected = self.initial
        payload = {"seed": self.seed, "positions": self.positions, "chosen_logps": chosen.tolist(),
                   "rejected_logps": rejected.tolist()}
        write_json_atomically(path, payload)

    def _load_baseline(self, trainer: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        path = self._baseline_path(trainer)
        if path is None or not path.is_file():
            return None
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
            chosen = torch.tensor(payload["chosen_logps"], dtype=torch.float64)
            rejected = torch.tensor(payload["rejected_logps"], dtype=torch.float64)
            same = payload["seed"] == self.seed and payload["positions"] == self.positions
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: not a flip-tracking baseline ({exc}); delete it to count flips against "
                              "the resumed policy") from None
        if not same or chosen.shape != (len(self.positions),) or rejected.shape != chosen.shape:
            raise ConfigError(f"{path}: saved for another pair subset; resume with the same --track-flips N (and "
                              "data), or delete it")
        return chosen, rejected

    def _score(self, trainer: Any) -> dict[str, torch.Tensor]:
        scores = trainer.score_pairs(self.examples)
        missing = [key for key in _SCORE_KEYS if key not in scores]
        if missing:
            raise KeyError(f"trainer.score_pairs returned no '{missing[0]}'")
        return scores

    def _use_initial_policy(self, scores: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.initial is None:
            self.initial = (scores["policy_chosen_logps"].clone(), scores["policy_rejected_logps"].clone())
            self.reference = "initial policy"
        return self.initial

    def on_evaluate(self, trainer: Any, step: int) -> dict[str, float]:
        """Score the subset with the current policy and the reference; return the flip metrics (class docstring)."""
        if self.examples is None:
            raise RuntimeError("FlipTracker.on_evaluate called before on_train_begin")
        scores = self._score(trainer)
        ref_chosen, ref_rejected = scores["ref_chosen_logps"], scores["ref_rejected_logps"]
        against_initial = _no_reference(scores)
        if against_initial:
            # Without trainer.cfg to announce a reference-free method at on_train_begin, the first evaluated
            # policy (step 0 in a fresh run) becomes the baseline.
            ref_chosen, ref_rejected = self._use_initial_policy(scores)
        groups = flip_groups(
            ref_chosen,
            ref_rejected,
            scores["policy_chosen_logps"],
            scores["policy_rejected_logps"],
            beta=self.beta,
        )
        metrics: dict[str, float] = {"flips/n_pairs": float(groups.n_pairs)}
        for group, key in FLIP_KEYS.items():
            metrics[f"flips/{key}"] = groups.fractions[group]
            metrics[f"flips/{key}_count"] = float(groups.counts[group])
            if groups.mean_loss is not None and groups.mean_loss[group] is not None:
                metrics[f"flips/{key}_mean_loss"] = groups.mean_loss[group]
        if groups.flipped_fraction is not None:
            metrics["flips/flipped_fraction"] = groups.flipped_fraction
        metrics["flips/ranking_accuracy"] = ranking_accuracy(
            scores["policy_chosen_logps"], scores["policy_rejected_logps"]
        )
        metrics["flips/ref_ranking_accuracy"] = ranking_accuracy(ref_chosen, ref_rejected)
        if against_initial:
            key = "resumed" if self.reference == "resumed policy" else "initial"
            metrics[f"flips/ref_is_{key}_policy"] = 1.0
        self.history.append({"step": float(step), **metrics})
        return metrics


__all__ = ["FLIP_BASELINE", "FLIP_KEYS", "FlipTracker"]
