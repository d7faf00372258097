"""Preference pairs from judged samples: K completions of one prompt, each with a judge's reward.

  best_vs_worst: one pair: of two completions with different texts, the highest reward against the lowest (the
                 largest reward gap; the first of equal rewards), kept when r_best - r_worst > min_margin;
  all_pairs:     every ordered pair (i, j) of different texts with r_i - r_j > min_margin.
The comparison is strict, so equal rewards (ties) never pair, whatever min_margin. Two equal completions never
pair (a judge that scores one text twice differently gives no preference), so best_vs_worst looks for its pair
among different texts rather than dropping the extremes when their texts agree; neither does an empty or
whitespace-only completion pair (training data holds no empty response).
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
    candidates = [(i, j) for i in usable for j in usable if completions[i] != completions[j]]
    if rule == "best_vs_worst" and candidates:
        # the largest gap; of equal gaps the first (i, j), i.e. the first of equal rewards at the top and bottom
        candidates = [max(candidates, key=lambda p: (rewards[p[0]] - rewards[p[1]], -p[0], -p[1]))]
    return [(i, j) for i, j in candidates if rewards[i] - rewards[j] > min_margin]


def build_pairs(samples: Sequence[dict[str, Any]], *, rule: str, min_margin: float = 0.0) -> list[dict[str, Any]]:
    """Pair records from sample records (alignlab.online.sampling: prompt_index, sample_index, prompt,
    prompt_ids, completion, completion_ids, finished, reward), grouped by prompt_index in first-seen order.

    Each record is a training pair in the format `tokenized` (alignlab.data.formats): prompt_ids, chosen_ids and
    rejected_ids are the sampled ids, trained exactly (a completion's EOS only if it finished, none added to one
    cut off at max_new_tokens). It also holds the texts in the format of its prompt (standard for a string
    prompt, conversational for messages: each response one assistant message), chosen_finished and
    rejected_finished, and what it came from: prompt_index, chosen_sample, rejected_sample, chosen_reward,
    rejected_reward and margin (= chosen_reward - rejected_reward > min_margin).
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
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                          "prompt_ids": group[i]["prompt_ids"], "chosen_ids": group[i]["completion_ids"],
                          "rejected_ids": group[j]["completion_ids"], "chosen_finished": group[i]["finished"],
                          "rejected_finished": group[j]["finished"], "prompt_index": prompt_index,
                          "chosen_sample": group[i]["sample_index"], "rejected_sample": group[j]["sample_index"],
                          "chosen_reward": rewards[i], "rejected_reward": rewards[j],
                          "margin": rewards[i] - rewards[j]})
    return pairs


__all__ = ["PAIR_RULES", "build_pairs", "pair_indices"]
