"""The four flip groups of training dynamics (Chen et al. 2024, arXiv 2405.19534, Sec. 4.1, App. D).

Each pair is labelled twice, strictly: ref_correct = 1[l_ref(y_w) > l_ref(y_l)] and
policy_correct = 1[l_policy(y_w) > l_policy(y_l)], giving correct->correct (cc), correct->incorrect (ci),
incorrect->correct (ic) and incorrect->incorrect (ii). The paper finds that fewer than 10% of the initially
incorrect pairs are flipped: ranking accuracy is mostly inherited from the reference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from alignlab.diagnostics._inputs import as_vector, positive_float, same_shape
from alignlab.diagnostics.ranking import ranking_correct
from alignlab.losses import dpo_loss

GROUPS = ("correct_to_correct", "correct_to_incorrect", "incorrect_to_correct", "incorrect_to_incorrect")


@dataclass(frozen=True)
class FlipGroups:
    """Counts and fractions (of all pairs) per group; flipped_fraction = ic / (ic + ii), None when the reference
    ranks every pair correctly. With beta: per-group mean DPO loss and mean reward margin beta*h (None if empty)."""

    n_pairs: int
    counts: dict[str, int]
    fractions: dict[str, float]
    flipped_fraction: float | None
    beta: float | None = None
    mean_loss: dict[str, float | None] | None = None
    mean_reward_margin: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def flip_groups(
    ref_chosen: Any,
    ref_rejected: Any,
    policy_chosen: Any,
    policy_rejected: Any,
    *,
    beta: float | None = None,
) -> FlipGroups:
    """Group pairs by (reference correct?, policy correct?); inputs are [B] summed log-probs.

    beta: if given, also report each group's mean DPO loss softplus(-beta h) and mean reward margin beta h,
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected).
    """
    tensors = {
        "ref_chosen": as_vector(ref_chosen, "ref_chosen"),
        "ref_rejected": as_vector(ref_rejected, "ref_rejected"),
        "policy_chosen": as_vector(policy_chosen, "policy_chosen"),
        "policy_rejected": as_vector(policy_rejected, "policy_rejected"),
    }
    same_shape(*tensors.items())
    ref_ok = ranking_correct(tensors["ref_chosen"], tensors["ref_rejected"])
    policy_ok = ranking_correct(tensors["policy_chosen"], tensors["policy_rejected"])
    masks = dict(
        zip(GROUPS, (ref_ok & policy_ok, ref_ok & ~policy_ok, ~ref_ok & policy_ok, ~ref_ok & ~policy_ok))
    )
    n_pairs = ref_ok.numel()
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    fractions = {name: count / n_pairs for name, count in counts.items()}
    initially_wrong = counts["incorrect_to_correct"] + counts["incorrect_to_incorrect"]
    flipped = counts["incorrect_to_correct"] / initially_wrong if initially_wrong else None
    if beta is None:
        return FlipGroups(n_pairs, counts, fractions, flipped)
    beta = positive_float(beta, "beta")
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        tensors["policy_chosen"],
        tensors["policy_rejected"],
        tensors["ref_chosen"],
        tensors["ref_rejected"],
        beta=beta,
    )
    margins = chosen_rewards - rejected_rewards

    def group_means(values: Any) -> dict[str, float | None]:
        return {name: values[mask].mean().item() if mask.any() else None for name, mask in masks.items()}

    return FlipGroups(n_pairs, counts, fractions, flipped, beta, group_means(losses), group_means(margins))


__all__ = ["GROUPS", "FlipGroups", "flip_groups"]
