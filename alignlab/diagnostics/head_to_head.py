"""A model against a baseline: sample from both with the same seeds, judge each pair, win rate per temperature.

The TDPO paper (Zeng et al. 2024, arXiv 2404.11999, Sec. 5, Figure 4) reports win rates at sampling temperatures
0.25, 0.75 and 1.0; `temperatures` is that sweep. Completions come from `generation.generate` (per-sequence seeded
Gumbel sampling), so pair (prompt i, sample s) of the model and of the baseline uses the same row seed. Each
model is loaded once, sampled at every temperature, and released before the next loads. Pairs are judged by
`win_rate` (a pairwise judge sees a seeded random order); the interval resamples prompts, keeping a prompt's n
samples together.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from alignlab.assets import load_model, load_tokenizer, resolve_device
from alignlab.diagnostics.generation import check_sampling_options, generate
from alignlab.diagnostics.winrate import WinRate, win_rate
from alignlab.errors import ConfigError
from alignlab.judges import Judge


@dataclass(frozen=True)
class TemperatureResult:
    """The win rate at one temperature and its pairs: dicts of prompt_index, sample_index, prompt, completion
    (the model's), baseline_completion and score (1 the model's is better, 0 the baseline's, 0.5 a tie)."""

    temperature: float
    win_rate: WinRate
    pairs: list[dict[str, Any]] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the WinRate fields (less the per-pair scores, which the pairs carry) and pairs."""
        summary = {k: v for k, v in self.win_rate.to_dict().items() if k != "scores"}
        return {"temperature": self.temperature, **summary, "pairs": self.pairs}


def head_to_head(
    model: str,
    baseline: str,
    prompts: Sequence[str],
    judge: Judge,
    *,
    temperatures: Sequence[float] = (1.0,),
    n: int = 1,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 48,
    seed: int = 0,
    batch_size: int = 16,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    device: str | None = None,
    dtype: str | None = None,
) -> list[TemperatureResult]:
    """Win rate of `model` against `baseline` (built-in names, directories or hub ids) under `judge`, one result
    per temperature, in the order given.

    n samples per prompt and model; sampling options as in `generation.generate` (checked for every temperature
    before a model loads); n_bootstrap, confidence and seed as in `win_rate`.
    """
    temperatures = [float(t) for t in temperatures]
    if not temperatures:
        raise ConfigError("temperatures is empty; give at least one sampling temperature")
    for temperature in temperatures:
        check_sampling_options(n, temperature, top_p, top_k, max_new_tokens, seed, batch_size)
    torch_device = resolve_device(device)
    completions: dict[str, list[list[dict[str, Any]]]] = {}
    for name in dict.fromkeys((model, baseline)):  # the same model twice is sampled once
        tokenizer = load_tokenizer(name)
        policy = load_model(name, dtype=dtype).to(torch_device)
        completions[name] = [
            generate(policy, tokenizer, prompts, n=n, temperature=t, top_p=top_p, top_k=top_k,
                     max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size, score=False)
            for t in temperatures
        ]
        del policy
        gc.collect()  # release one model's weights before the next loads
    results = []
    for index, temperature in enumerate(temperatures):
        ours, theirs = completions[model][index], completions[baseline][index]
        result = win_rate(
            [r["completion"] for r in ours], [r["completion"] for r in theirs], judge,
            prompts=[r["prompt"] for r in ours], n_bootstrap=n_bootstrap, seed=seed, confidence=confidence,
            groups=[r["prompt_index"] for r in ours],
        )
        pairs = [
            {"prompt_index": a["prompt_index"], "sample_index": a["sample_index"], "prompt": a["prompt"],
             "completion": a["completion"], "baseline_completion": b["completion"], "score": score}
            for a, b, score in zip(ours, theirs, result.scores)
        ]
        results.append(TemperatureResult(temperature, result, pairs))
    return results


__all__ = ["TemperatureResult", "head_to_head"]
