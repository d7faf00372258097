"""Win rate of completions A against completions B under a plug-in judge, with a bootstrap confidence interval
(the "win rate vs reference" of Chen et al. 2024, arXiv 2405.19534, Sec. 5 and App. E; that paper releases no
judge code, so the judge is a plug-in).

Two kinds of judge, chosen explicitly with `pairwise`:
  pairwise=False (reward judge):  judge(prompt, completion) -> float reward. Example i scores 1 if A's reward is
      higher, 0.5 on equal rewards, 0 otherwise. A judge with a `score_batch(prompts, completions)` method (e.g.
      RewardModelJudge) is called once for all completions instead of once per completion.
  pairwise=True:  judge(prompt, a, b) -> probability in [0, 1] (or bool) that `a` is better. Example i scores that
      probability. By default the A/B order is randomised per example (seeded) to cancel position bias: when
      swapped, the judge sees (prompt, b, a) and the score is 1 - its answer.
win rate = mean score; the interval is the percentile bootstrap over examples.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from alignlab.errors import AlignlabError

_BOOTSTRAP_CHUNK = 4_000_000  # resampled indices held at once


@dataclass(frozen=True)
class WinRate:
    """win_rate in [0, 1] with its percentile-bootstrap interval [ci_low, ci_high] at `confidence`.

    wins / ties / losses count examples scoring > 0.5, == 0.5, < 0.5; scores holds the per-example scores [n].
    """

    win_rate: float
    ci_low: float
    ci_high: float
    confidence: float
    n: int
    wins: int
    ties: int
    losses: int
    scores: list[float]
    pairwise: bool
    randomized_order: bool
    n_bootstrap: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _reward_scores(
    judge: Any, prompts: list[str], completions_a: list[str], completions_b: list[str]
) -> np.ndarray:
    n = len(prompts)
    if hasattr(judge, "score_batch"):
        rewards = list(judge.score_batch(prompts + prompts, completions_a + completions_b))
        if len(rewards) != 2 * n:
            raise AlignlabError(
                f"judge.score_batch returned {len(rewards)} rewards for {2 * n} completions"
            )
    else:
        rewards = [judge(p, c) for p, c in zip(prompts + prompts, completions_a + completions_b)]
    values = np.empty(2 * n)
    for index, reward in enumerate(rewards):
        try:
            values[index] = float(reward)
        except (TypeError, ValueError):
            values[index] = math.nan
        if not math.isfinite(values[index]):
            side, example = ("a", index) if index < n else ("b", index - n)
            raise AlignlabError(
                f"judge returned {reward!r} for completion {side} of example {example}"
            )
    reward_a, reward_b = values[:n], values[n:]
    return np.where(reward_a > reward_b, 1.0, np.where(reward_a == reward_b, 0.5, 0.0))


def _pairwise_scores(
    judge: Callable[..., Any],
    prompts: list[str],
    completions_a: list[str],
    completions_b: list[str],
    swaps: np.ndarray,
) -> np.ndarray:
    scores = np.empty(len(prompts))
    for index, (prompt, a, b) in enumerate(zip(prompts, completions_a, completions_b)):
        answer = judge(prompt, b, a) if swaps[index] else judge(prompt, a, b)
        try:
            value = float(answer)
        except (TypeError, ValueError):
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise AlignlabError(
                f"pairwise judge returned {answer!r} for example {index}; expected a probability in [0, 1] "
                f"or a bool that the first completion is better"
            )
        scores[index] = 1.0 - value if swaps[index] else value
    return scores


def _as_texts(values: Sequence[str], name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise AlignlabError(f"{name} must be a list of strings")
    return list(values)


def win_rate(
    completions_a: Sequence[str],
    completions_b: Sequence[str],
    judge: Callable[..., Any],
    *,
    prompts: Sequence[str] | None = None,
    pairwise: bool = False,
    randomize_order: bool | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> WinRate:
    """Win rate of completions_a over completions_b ([n] each, paired by index) with a bootstrap interval.

    prompts: [n] or None (the judge then receives "" as the prompt). pairwise: selects the judge kind (module
    docstring). randomize_order: pairwise judges only; None means True. n_bootstrap resamples with numpy's
    default_rng(seed); the interval is the (1 - confidence)/2 and (1 + confidence)/2 percentiles.
    """
    completions_a = _as_texts(completions_a, "completions_a")
    completions_b = _as_texts(completions_b, "completions_b")
    n = len(completions_a)
    if n == 0:
        raise AlignlabError("completions_a is empty; nothing to judge")
    if len(completions_b) != n:
        raise AlignlabError(
            f"completions_a has {n} completions but completions_b has {len(completions_b)}"
        )
    prompts = [""] * n if prompts is None else _as_texts(prompts, "prompts")
    if len(prompts) != n:
        raise AlignlabError(
            f"prompts has {len(prompts)} entries but there are {n} completion pairs"
        )
    if not callable(judge):
        raise AlignlabError("judge must be callable")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise AlignlabError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not 0.0 < confidence < 1.0:
        raise AlignlabError(f"confidence must be in (0, 1), got {confidence!r}")
    if randomize_order and not pairwise:
        raise AlignlabError(
            "randomize_order applies to pairwise judges only; a reward judge scores each completion alone"
        )
    randomize = bool(pairwise and (randomize_order is None or randomize_order))
    if pairwise:
        swaps = np.random.default_rng([seed, 1]).random(n) < 0.5 if randomize else np.zeros(n, dtype=bool)
        scores = _pairwise_scores(judge, prompts, completions_a, completions_b, swaps)
    else:
        scores = _reward_scores(judge, prompts, completions_a, completions_b)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CHUNK // n)
    means = np.concatenate(
        [
            scores[rng.integers(0, n, size=(min(rows, n_bootstrap - start), n))].mean(axis=1)
            for start in range(0, n_bootstrap, rows)
        ]
    )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return WinRate(
        win_rate=float(scores.mean()),
        ci_low=float(low),
        ci_high=float(high),
        confidence=float(confidence),
        n=n,
        wins=int((scores > 0.5).sum()),
        ties=int((scores == 0.5).sum()),
        losses=int((scores < 0.5).sum()),
        scores=scores.tolist(),
        pairwise=bool(pairwise),
        randomized_order=randomize,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )


class RewardModelJudge:
    """A reward judge from a Hugging Face sequence-classification model and its tokenizer.

    reward(prompt, completion) = the single logit of a 1-output reward model (label_index None), or
    softmax(logits)[label_index] for a classifier. Texts are format_fn(prompt, completion), plain concatenation
    by default; they are scored in batches of batch_size under no_grad, in eval mode (restored afterwards),
    right-padded (whatever tokenizer.padding_side says, so absolute-position models see the same positions as
    unbatched) with the tokenizer's pad token, which must equal model.config.pad_token_id (the model reads the
    last non-pad token). max_length truncates on the tokenizer's truncation side; None never truncates.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        label_index: int | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        format_fn: Callable[[str, str], str] | None = None,
    ) -> None:
        config = getattr(model, "config", None)
        num_labels = getattr(config, "num_labels", None)
        if num_labels is None:
            raise AlignlabError(
                "the reward model has no config.num_labels; pass a *ForSequenceClassification"
            )
        if num_labels == 1 and label_index is not None:
            raise AlignlabError(
                "label_index applies to classifiers; this reward model has a single output"
            )
        if num_labels > 1 and (label_index is None or not 0 <= label_index < num_labels):
            raise AlignlabError(
                f"the reward model has {num_labels} labels; pass label_index in [0, {num_labels - 1}] "
                f"(the label whose probability is the reward)"
            )
        if tokenizer.pad_token_id is None:
            raise AlignlabError("the judge tokenizer has no pad token; set tokenizer.pad_token")
        model_pad = (
            config.get_text_config().pad_token_id
            if hasattr(config, "get_text_config")
            else config.pad_token_id
        )
        if model_pad != tokenizer.pad_token_id:
            raise AlignlabError(
                f"tokenizer.pad_token_id ({tokenizer.pad_token_id}) differs from the reward model's "
                f"config.pad_token_id ({model_pad}); set them equal so the model finds each text's last token"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise AlignlabError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model, self.tokenizer = model, tokenizer
        self.label_index, self.batch_size, self.max_length = label_index, batch_size, max_length
        self.format_fn = (
            format_fn if format_fn is not None else (lambda prompt, completion: prompt + completion)
        )

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """Rewards for [n] (prompt, completion) pairs, as a list of n floats."""
        if len(prompts) != len(completions):
            raise AlignlabError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [self.format_fn(prompt, completion) for prompt, completion in zip(prompts, completions)]
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        rewards: list[float] = []
        try:
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(
                    texts[start : start + self.batch_size],
                    padding=True,
                    padding_side="right",  # left padding shifts absolute positions (GPT-2) unless ids are passed
                    truncation=self.max_length is not None,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(device)
                logits = self.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits
                logits = logits.float()
                if self.label_index is None:
                    rewards.extend(logits[:, 0].tolist())
                else:
                    rewards.extend(logits.softmax(dim=-1)[:, self.label_index].tolist())
        finally:
            self.model.train(was_training)
        return rewards

    def __call__(self, prompt: str, completion: str) -> float:
        """The reward of one completion."""
        return self.score_batch([prompt], [completion])[0]


__all__ = ["RewardModelJudge", "WinRate", "win_rate"]
