"""Judges: what decides which completion is better, behind one interface (interface.py).

Three kinds, all from one spec through `load_judge` (spec.py):
- a reward model, any Hugging Face sequence-classification checkpoint (reward_model.py: RewardModelJudge);
- any Python function (python_function.py: CallableJudge, PairwiseCallableJudge);
- an LLM judge at an OpenAI-compatible chat-completions endpoint, asked in both orders, retried, cached by
  content (chat_completions.py: HttpJudge).

Reward judges: `judge.score_batch(prompts, completions) -> list[float]`. Pairwise judges:
`judge.compare_batch(prompts, completions_a, completions_b) -> list[float]`, the probability that a is better.
`judge.pairwise` says which. Layer: below diagnostics and train; torch loads only with a reward model.
"""

from alignlab.judges.chat_completions import DEFAULT_TEMPLATE, HttpJudge, parse_verdict
from alignlab.judges.interface import Judge, PairwiseJudge, RewardJudge
from alignlab.judges.python_function import (
    CallableJudge,
    PairwiseCallableJudge,
    judge_from_function,
    resolve_function,
)
from alignlab.judges.reward_model import RewardModelJudge, load_reward_model_judge
from alignlab.judges.spec import FIELDS, SPEC_FORMS, load_judge

__all__ = [
    "DEFAULT_TEMPLATE",
    "FIELDS",
    "SPEC_FORMS",
    "CallableJudge",
    "HttpJudge",
    "Judge",
    "PairwiseCallableJudge",
    "PairwiseJudge",
    "RewardJudge",
    "RewardModelJudge",
    "judge_from_function",
    "load_judge",
    "load_reward_model_judge",
    "parse_verdict",
    "resolve_function",
]
