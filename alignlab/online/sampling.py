"""Sampling K completions per prompt from a policy and scoring them with a reward judge.

Sampling is alignlab.diagnostics.generation's: batched `generate` with the KV cache, one CPU generator per
sequence seeded from (seed, prompt position, sample index), so a round's samples are a pure function of the
policy's weights, the prompts and the seed. Chat prompts are rendered with the tokenizer's chat template and its
generation prompt, as training renders them, and the judge sees that rendered prompt text. A record keeps the
token ids that were sampled (the prompt's, encoded as generation encodes it, and the completion's), so the pairs
train on exactly those ids rather than on the decoded text encoded again (alignlab.online.pairs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from alignlab.data.chat import render_messages
from alignlab.data.prompts import PromptItem
from alignlab.diagnostics.generation import generate
from alignlab.errors import ConfigError
from alignlab.judges.interface import checked_rewards, judge_name


def derived_seed(*parts: int) -> int:
    """A seed in [0, 2^32) mixed from integers (numpy's SeedSequence): (run seed, stage, round) -> seed."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint32)[0])


def prompt_text(tokenizer: Any, prompt: str | list[dict[str, str]]) -> str:
    """The text a policy continues: a string prompt as it is, messages rendered with the generation prompt."""
    return prompt if isinstance(prompt, str) else render_messages(tokenizer, prompt, add_generation_prompt=True)


def check_reward_judge(judge: Any) -> Any:
    """`judge` if it is a reward judge (alignlab.judges: `pairwise` false and `score_batch`); else ConfigError."""
    if getattr(judge, "pairwise", False) or not callable(getattr(judge, "score_batch", None)):
        kind = "a pairwise judge" if getattr(judge, "pairwise", False) else f"a {type(judge).__name__}"
        raise ConfigError(f"config key 'judge': online rounds need a reward judge (score_batch(prompts, "
                          f"completions) -> rewards), got {kind}")
    return judge


def judge_rewards(judge: Any, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
    """[n] finite float rewards of n (prompt, completion) pairs; a one-line AlignlabError otherwise
    (alignlab.judges.interface.checked_rewards)."""
    rewards = judge.score_batch(list(prompts), list(completions))
    return checked_rewards(rewards, len(completions), judge_name(judge), where=lambda i: f"completion {i}")


@torch.no_grad()
def sample_and_judge(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[PromptItem],
                     prompt_indices: Sequence[int], judge: Any, *, n: int, seed: int, temperature: float,
                     top_p: float, top_k: int, max_new_tokens: int, batch_size: int) -> list[dict[str, Any]]:
    """n judged samples per prompt, prompt-major: one record per (prompt, sample).

    prompt_indices [P]: each prompt's position in the run's prompt list (kept in the records as prompt_index).
    Record: prompt_index, sample_index, prompt (as in the data: a string or messages), prompt_ids (the ids the
    policy continued), completion (text, no EOS), completion_ids (the sampled ids, ending with EOS exactly when
    finished), num_tokens, finished (false: cut off at max_new_tokens), reward, and seed: the (seed, position in
    `prompts`, sample_index) that seeded its sampler.
    """
    texts = [prompt_text(tokenizer, item.prompt) for item in prompts]
    records = generate(model, tokenizer, texts, n=n, temperature=temperature, top_p=top_p, top_k=top_k,
                       max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size, score=False)
    rewards = judge_rewards(judge, [r["prompt"] for r in records], [r["completion"] for r in records])
    samples = []
    for record, reward in zip(records, rewards):
        position = record["prompt_index"]
        samples.append({"prompt_index": prompt_indices[position], "sample_index": record["sample_index"],
                        "prompt": prompts[position].prompt, "prompt_ids": record["prompt_ids"],
                        "completion": record["completion"],
                        "completion_ids": record["completion_ids"], "num_tokens": record["num_tokens"],
                        "finished": record["finished"], "reward": reward,
                        "seed": [seed, position, record["sample_index"]]})
    return samples


__all__ = ["check_reward_judge", "derived_seed", "judge_rewards", "prompt_text", "sample_and_judge"]
