"""Preference pairs from judged samples: K completions of one prompt, each with a judge's reward.

  best_vs_worst: one pair, the highest reward against the lowest (the first of equal rewards), kept when
                 r_best - r_worst > min_margin;
  all_pairs:     every ordered pair (i, j) with r_i - r_j > min_margin.
The comparison is strict, so equal rewards (ties) never pair, whatever min_margin. Two equal completions never
pair either (a judge that scores one text twice differently gives no preference), and neither does an empty or
whitespace-only completion (training data holds no empty response).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PAIR_RULES = ("best_vs_worst", "all_pairs")


def pair_indices(rewards: Sequence[float], completions: Sequence[str], *, rule: str,
                 min_margin: float = 0.0) -> list[tuple[int, int]]:
    """(chosen, rejected) positions among one prompt's samples; rewards and completions are [K]."""
    if rule not in PAIR_RULES:
        raise ValueError(f"rule must be one of {', '.join(PAIR_RULES)}, got {rule!r}")
    if len(rewards) != len(completions):
        raise ValueError(f"{len(rewards)} rewards for {len(completions)} completions")
    usable = [i for i, text in enumerate(completions) if text.strip()]
    if rule == "best_vs_worst":
        if not usable:
            return []
        best = max(usable, key=lambda i: (rewards[i], -i))  # the first of equal rewards
        worst = min(usable, key=lambda i: (rewards[i], i))
        candidates = [(best, worst)]
    else:
        candidates = [(i, j) for i in usable for j in usable if i != j]
    return [(i, j) for i, j in candidates
            if rewards[i] - rewards[j] > min_margin and completions[i] != completions[j]]


def build_pairs(samples: Sequence[dict[str, Any]], *, rule: str, min_margin: float = 0.0) -> list[dict[str, Any]]:
    """Pair records from sample records (alignlab.online.sampling: prompt_index, sample_index, prompt, completion,
    reward), grouped by prompt_index in first-seen order.

    Each record is a training pair in the format of its prompt (standard for a string prompt, conversational for
    messages: each response one assistant message) plus what it came from: prompt_index, chosen_sample,
    rejected_sample, chosen_reward, rejected_reward and margin (= chosen_reward - rejected_reward > min_margin).
    """
    groups: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        groups.setdefault(sample["prompt_index"], []).append(sample)
    pairs = []
    for prompt_index, group in groups.items():
        group = sorted(group, key=lambda s: s["sample_index"])
        texts = [s["completion"] for s in group]
        rewards = [float(s["reward"]) for s in group]
        for i, j in pair_indices(rewards, texts, rule=rule, min_margin=min_margin):
            prompt = group[i]["prompt"]
            chosen, rejected = texts[i], texts[j]
            if isinstance(prompt, list):  # conversational: a response is one assistant message
                chosen = [{"role": "assistant", "content": chosen}]
                rejected = [{"role": "assistant", "content": rejected}]
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "prompt_index": prompt_index,
                          "chosen_sample": group[i]["sample_index"], "rejected_sample": group[j]["sample_index"],
                          "chosen_reward": rewards[i], "rejected_reward": rewards[j],
                          "margin": rewards[i] - rewards[j]})
    return pairs


__all__ = ["PAIR_RULES", "build_pairs", "pair_indices"]
