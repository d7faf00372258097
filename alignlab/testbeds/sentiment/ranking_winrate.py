"""Ranking accuracy and win rate against the distance from the reference during DPO training (Chen et al. 2024,
"Preference Learning Algorithms Do Not Learn Preference Rankings", arXiv 2405.19534, Sec. 5 and Fig. 4), on the
controlled-sentiment miniature's SFT reference, classifier judge and training pairs (pipeline.load_stages).

The paper trains DPO and, at each checkpoint, measures the ranking accuracy on training pairs, the win rate of
the checkpoint's generations against the reference's under a judge (AlpacaEval's GPT-4 annotator), and the
weight distance ||theta - theta_ref||. It finds that the two rise together while theta is near theta_ref and then
become anti-correlated: ranking accuracy keeps rising while win rate falls.

Here, for each arm (a training procedure: offline DPO on the sampled pairs, `ARMS`, and online DPO, `online_arm`,
when the caller hands in alignlab.online's runner), one run from pi_ref saves `checkpoints` evenly spaced
checkpoints; the reference (step 0) and every checkpoint give one row:
  distance           ||theta - theta_ref||_2 over all parameters (and its square), diagnostics.distance
  ranking accuracy   R = mean 1[l(y_w) > l(y_l)] (strict) on every training pair, summed response log-probs
                     scored the way the trainer tokenizes them (and the length-normalised R~), diagnostics.ranking
  win rate           `eval_samples` samples per test prefix from the checkpoint against the reference's samples of
                     the same prefix and sample index (the same sampling noise, so step 0 ties everywhere: 0.5),
                     judged by the classifier's P(POSITIVE) (1 higher, 0.5 equal, 0 lower), with a percentile
                     bootstrap interval over samples, diagnostics.winrate
  also               mean reward, exact KL(pi_theta || pi_ref) over generated tokens, the flip groups (Sec. 4.1)
The finding (`near_far`): the rows split at the median distance into near (<=) and far (>); the Spearman
correlation of ranking accuracy and win rate in each half (with a permutation p-value), and of each with the
distance; and the change of win rate from its peak to the last checkpoint with a paired bootstrap interval. The
paper's pattern is a positive correlation near the reference and a negative one far from it.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from alignlab.assets import load_tokenizer
from alignlab.cache import content_key, write_atomically, write_json_atomically
from alignlab.data import load_preference_data
from alignlab.diagnostics.distance import weight_distance
from alignlab.diagnostics.flips import flip_groups
from alignlab.diagnostics.ranking import ranking_accuracy
from alignlab.diagnostics.scoring import PairScores, compute_pair_scores
from alignlab.diagnostics.winrate import win_rate
from alignlab.errors import AlignlabError, ConfigError
from alignlab.testbeds.sentiment.pipeline import (
    SentimentConfig,
    console_log,
    is_done,
    json_safe,
    load_lm,
    load_stages,
    run_config,
    sample_and_score,
    sample_metrics,
    train_run,
)
from alignlab.train import load_config

PAPER = "arXiv 2405.19534, Sec. 5, Fig. 4"
MEASURES_VERSION = 1  # bump when a row measures something else, so cached arms are measured again


def trainer_checkpoints(run_dir: Path, steps: int) -> list[tuple[int, Path]]:
    """(step, model directory) of a trainer run's checkpoint-<step>/ directories and its final/ (at `steps`,
    unless a checkpoint already is), by step."""
    found = sorted((int(d.name.split("-")[1]), d) for d in run_dir.glob("checkpoint-*") if d.is_dir())
    if (run_dir / "final").is_dir() and (not found or found[-1][0] < steps):
        found.append((steps, run_dir / "final"))
    return found


@dataclass(frozen=True)
class Arm:
    """One training procedure of the figure: recipe keys added to the DPO run's (`keys`) and removed from them
    (`drop`), the function that trains a run directory from the recipe keys (`train`), and the one that lists the
    (step, model directory) points it left there (`checkpoints`, given the run directory and the configured
    steps)."""

    name: str
    label: str
    keys: Mapping[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    train: Callable[[dict[str, Any], Path], Path] = train_run
    checkpoints: Callable[[Path, int], list[tuple[int, Path]]] = trainer_checkpoints


OFFLINE_DPO = Arm("dpo", "offline DPO")
ARMS = (OFFLINE_DPO,)
ONLINE_DPO = ("online-dpo", "online DPO")  # (name, label) of the arm online_arm builds


def online_checkpoints(run_dir: Path, steps: int) -> list[tuple[int, Path]]:
    """(cumulative step, model directory) of an online run's rounds: each round's trainer run
    (rounds/round-<r>/train/, alignlab.online's layout) contributes its checkpoints and final/, offset by the
    steps of the rounds before it; `steps` is the total over all rounds."""
    rounds = sorted(d for d in (run_dir / "rounds").glob("round-*/train") if d.is_dir())
    if not rounds:
        return []
    per_round = steps // len(rounds)
    return [(r * per_round + step, directory) for r, train_dir in enumerate(rounds)
            for step, directory in trainer_checkpoints(train_dir, per_round)]


def online_arm(runner: Callable[..., Any], judge: Any, cfg: RankingWinrateConfig, assets: Any) -> Arm:
    """The online DPO arm: `cfg.online_rounds` rounds of sampling `stages.samples_per_prompt` completions of
    prompts of the training pairs from the current policy (nucleus `pair_top_p`, as the offline pairs were
    sampled from pi_ref), pairing the classifier's best and worst and training DPO on them for
    steps / online_rounds steps against the fixed reference pi_ref. The offline arm's budget: the same steps and
    pairs per step, and the same number of sampled prompts (a round takes n_prompts / online_rounds of them,
    cycling through all). The arms differ in whose samples the pairs are made of, and in the schedule: each
    online round is its own trainer run, so the learning rate decays within a round and restarts with the next.

    runner: alignlab.online.run_online (testbeds sit beside online in the layering, so the caller hands it in);
    judge: the stages' classifier judge, passed to the runner (its spec is recorded in the run's config).
    """
    per_round = cfg.steps // cfg.online_rounds
    stages = cfg.stages
    keys = {"online": {"rounds": cfg.online_rounds,
                       "judge": {"kind": "reward_model", "model": assets.reward_model,
                                 "label_index": getattr(judge, "label_index", None)},
                       "samples_per_prompt": stages.samples_per_prompt,
                       "prompts_per_round": math.ceil(stages.n_prompts / cfg.online_rounds),
                       "steps_per_round": per_round,
                       "pair_rule": "best_vs_worst", "reference": "fixed", "max_new_tokens": stages.max_new_tokens,
                       "temperature": 1.0, "top_p": stages.pair_top_p, "top_k": 0}}

    def train_online(base: dict[str, Any], run_dir: Path) -> Path:
        return train_run(base, run_dir, trainer=lambda config: runner(config, judge=judge))

    # max_steps counts one trainer run; the rounds count theirs with steps_per_round
    return Arm(ONLINE_DPO[0], ONLINE_DPO[1], keys, ("max_steps",), train_online, online_checkpoints)


@dataclass(frozen=True)
class RankingWinrateConfig:
    """The experiment's settings; `stages` holds the sentiment pipeline's (out directory, seed, models, data,
    pair sampling, test prefixes), shared with `alignlab testbed sentiment` so one directory serves both."""

    stages: SentimentConfig = field(default_factory=SentimentConfig)
    beta: float = 0.1
    steps: int = 160  # 5 epochs of the 508 default pairs at 16 a step, as the paper's 5 GPT-2 epochs
    lr: float = 5e-4
    batch_size: int = 16
    checkpoints: int = 16  # one every 10 steps: 16 points past the reference, split 9 near / 8 far
    online_rounds: int = 8  # the online arm's rounds (steps / rounds steps each); 0 leaves the arm out
    eval_samples: int = 2  # x 200 test prefixes = 400 comparisons per win rate (the paper: 500 responses)
    n_bootstrap: int = 1000
    confidence: float = 0.95

    def validate(self) -> RankingWinrateConfig:
        """Raise ConfigError naming the option of the first invalid setting; return self."""
        self.stages.validate()
        for name, option in (("steps", "--steps"), ("batch_size", "--batch-size"),
                             ("eval_samples", "--eval-samples"), ("n_bootstrap", "--bootstrap")):
            if getattr(self, name) < 1:
                raise ConfigError(f"{option} must be >= 1; got {getattr(self, name)}")
        if not 1 <= self.checkpoints < self.steps:
            raise ConfigError(f"--checkpoints must be in [1, --steps); got {self.checkpoints}")
        if self.online_rounds < 0 or (self.online_rounds and self.steps % self.online_rounds):
            raise ConfigError(f"--online-rounds must be 0 (no online arm) or divide --steps ({self.steps}); got "
                              f"{self.online_rounds}")
        for name in ("beta", "lr"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"--{name} must be a number > 0; got {value}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"--confidence must be in (0, 1); got {self.confidence}")
        return self

    def run_stages(self) -> SentimentConfig:
        """The SentimentConfig of this experiment's runs: the stages with its steps, batch and learning rate."""
        return replace(self.stages, steps=self.steps, batch_size=self.batch_size, lr=self.lr)


SMOKE = {"steps": 6, "batch_size": 4, "checkpoints": 5, "online_rounds": 2, "eval_samples": 2, "n_bootstrap": 200}


# ------------------------------------------------------------------------------------------------- statistics
def _ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing their mean rank."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation of two equal-length sequences; None with fewer than 3 points or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values but y has {len(y)}")
    if len(x) < 3:
        return None
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return None if denominator == 0 else float((a * b).sum() / denominator)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (Pearson of mean ranks); None with fewer than 3 points or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} values but y has {len(y)}")
    return pearson(_ranks(x), _ranks(y)) if len(x) >= 3 else None


def spearman_p_value(x: Sequence[float], y: Sequence[float], *, n_permutations: int = 10000,
                     seed: int = 0) -> float | None:
    """Two-sided p-value of Spearman's rho under independence: the share of `n_permutations` random pairings
    (numpy default_rng(seed)) whose |rho| reaches the observed |rho|, counting the observed pairing
    ((1 + hits) / (1 + n_permutations)); None where rho is undefined."""
    rho = spearman(x, y)
    if rho is None:
        return None
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    shuffled = np.random.default_rng(seed).permuted(np.tile(ry, (n_permutations, 1)), axis=1)
    rhos = shuffled @ rx / math.sqrt(float(rx @ rx) * float(ry @ ry))
    hits = int((np.abs(rhos) >= abs(rho) - 1e-12).sum())
    return (1 + hits) / (1 + n_permutations)


def paired_difference(a: Sequence[float], b: Sequence[float], *, n_bootstrap: int, seed: int,
                      confidence: float = 0.95) -> dict[str, Any]:
    """mean(a) - mean(b) for per-example scores [n] paired by index (two checkpoints' win-rate scores against the
    same reference samples), with a percentile-bootstrap interval over examples (numpy default_rng(seed))."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or not len(x):
        raise ValueError(f"paired scores must be two non-empty vectors of one length; got {x.shape} and {y.shape}")
    diff = x - y
    rng = np.random.default_rng(seed)
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n_bootstrap)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"difference": float(diff.mean()), "ci": [float(low), float(high)], "confidence": confidence,
            "n": len(diff), "n_bootstrap": n_bootstrap}


def _half(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    distance = [r["distance"] for r in rows]
    ranking = [r["ranking_accuracy"] for r in rows]
    wins = [r["win_rate"] for r in rows]
    return {"n": len(rows), "distance_range": [min(distance), max(distance)] if rows else None,
            "spearman_ranking_winrate": spearman(ranking, wins),
            "spearman_ranking_winrate_p": spearman_p_value(ranking, wins),
            "pearson_ranking_winrate": pearson(ranking, wins),
            "spearman_ranking_distance": spearman(distance, ranking),
            "spearman_winrate_distance": spearman(distance, wins)}


def _signed(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.2f}"


def _p(value: float | None) -> str:
    return "" if value is None else f", permutation p = {value:.2g}"


def near_far(rows: Sequence[Mapping[str, Any]], decline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The finding of one arm from its rows (each with step, distance, ranking_accuracy, win_rate; module
    docstring).

    Near: distance <= the median distance; far: the rest. `together_near` is a positive ranking/win-rate Spearman
    correlation near the reference, `diverge_far` a negative one far from it; `reproduces` is both (the paper's
    pattern, by sign; each half also carries the correlation's permutation p-value, which says whether a few
    noisy points could give that sign by chance). `peak` is the row of highest win rate (the first of equals) and `after_peak` the change of both
    measures from it to the last row; `decline`, when given, is `paired_difference` of the last row's win-rate
    scores minus the peak's, whose interval says whether the fall exceeds the sampling noise. `statement` says
    the same in one sentence with the numbers.
    """
    if len(rows) < 2:
        raise ValueError(f"near_far needs at least 2 rows; got {len(rows)}")
    rows = sorted(rows, key=lambda r: r["distance"])
    split = statistics.median(r["distance"] for r in rows)
    near = [r for r in rows if r["distance"] <= split]
    far = [r for r in rows if r["distance"] > split]
    halves = {"near": _half(near), "far": _half(far), "overall": _half(rows)}
    rho_near = halves["near"]["spearman_ranking_winrate"]
    rho_far = halves["far"]["spearman_ranking_winrate"]
    together = rho_near is not None and rho_near > 0
    diverge = rho_far is not None and rho_far < 0
    by_step = sorted(rows, key=lambda r: r["step"])
    peak = max(by_step, key=lambda r: r["win_rate"])
    last = by_step[-1]
    outcome = ("they move together near the reference and diverge far from it, as the paper finds"
               if together and diverge else
               "they move together near the reference but do not diverge far from it, unlike the paper"
               if together else
               "they diverge far from the reference but do not move together near it, unlike the paper"
               if diverge else "neither the paper's co-movement near the reference nor its divergence far from "
                               "it appears")
    statement = (f"Spearman correlation of ranking accuracy and win rate: {_signed(rho_near)} near the reference "
                 f"(distance <= {split:.3g}, {len(near)} points{_p(halves['near']['spearman_ranking_winrate_p'])}), "
                 f"{_signed(rho_far)} far from it ({len(far)} points"
                 f"{_p(halves['far']['spearman_ranking_winrate_p'])}); by sign, {outcome}. Win rate peaks at {peak['win_rate']:.3f} (step {peak['step']}, "
                 f"distance {peak['distance']:.3g}); from there to the last checkpoint ranking accuracy changes by "
                 f"{last['ranking_accuracy'] - peak['ranking_accuracy']:+.3f} and win rate by "
                 f"{last['win_rate'] - peak['win_rate']:+.3f}"
                 + ("" if decline is None else f" (paired {100 * decline['confidence']:g}% bootstrap interval "
                                               f"[{decline['ci'][0]:+.3f}, {decline['ci'][1]:+.3f}])") + ".")
    return {"split_distance": split, **halves, "together_near": together, "diverge_far": diverge,
            "reproduces": together and diverge,
            "peak": {"step": peak["step"], "distance": peak["distance"], "win_rate": peak["win_rate"],
                     "ranking_accuracy": peak["ranking_accuracy"]},
            "after_peak": {"ranking_accuracy_change": last["ranking_accuracy"] - peak["ranking_accuracy"],
                           "win_rate_change": last["win_rate"] - peak["win_rate"],
                           "win_rate_change_paired": None if decline is None else dict(decline)},
            "statement": statement}


# ---------------------------------------------------------------------------------------------------- rows
@dataclass
class Reference:
    """What every row is measured against: pi_ref, the tokenized training pairs and pi_ref's scores on them, and
    pi_ref's samples on the test prefixes (prompts, completions and the judge's rewards, prefix-major)."""

    model: torch.nn.Module
    examples: list[dict[str, Any]]
    scores: PairScores
    prompts: list[str]
    completions: list[str]
    rewards: list[float]


class KnownRewards:
    """A reward judge that answers from rewards the judge already gave ({(prompt, completion): reward}) and asks
    `judge` only for the rest: the win rate then re-scores neither side's samples."""

    pairwise = False

    def __init__(self, judge: Any, known: Mapping[tuple[str, str], float]) -> None:
        self.judge, self.known = judge, dict(known)

    def score_batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """The reward of each (prompt, completion), [n] floats."""
        missing = [(p, c) for p, c in zip(prompts, completions) if (p, c) not in self.known]
        if missing:
            rewards = self.judge.score_batch([p for p, _ in missing], [c for _, c in missing])
            self.known.update(zip(missing, (float(r) for r in rewards)))
        return [self.known[(p, c)] for p, c in zip(prompts, completions)]

    def __call__(self, prompt: str, completion: str) -> float:
        """The reward of one completion."""
        return self.score_batch([prompt], [completion])[0]


def checkpoint_row(model: torch.nn.Module, step: int, cfg: RankingWinrateConfig, reference: Reference,
                   prefixes: Sequence[str], tokenizer: Any, judge: Any) -> tuple[dict[str, Any], list[float]]:
    """One row of the figure for `model` at training step `step` (module docstring), and the per-sample win
    scores behind its win rate ([n], paired with every other row's by reference sample)."""
    distance = weight_distance(model, reference.model)
    scores = compute_pair_scores(model, reference.examples, batch_size=64)
    records, rewards = sample_and_score(model, tokenizer, prefixes, judge, reference.model, n=cfg.eval_samples,
                                        max_new_tokens=cfg.stages.max_new_tokens, seed=cfg.stages.seed + 1)
    known = KnownRewards(judge, {**dict(zip(zip(reference.prompts, reference.completions), reference.rewards)),
                                 **{(r["prompt"], r["completion"]): w for r, w in zip(records, rewards)}})
    wins = win_rate([r["completion"] for r in records], reference.completions, known, prompts=reference.prompts,
                    n_bootstrap=cfg.n_bootstrap, seed=cfg.stages.seed, confidence=cfg.confidence)
    groups = flip_groups(reference.scores.chosen_logps, reference.scores.rejected_logps, scores.chosen_logps,
                         scores.rejected_logps)
    samples = sample_metrics(records, rewards)
    return {"step": step, "distance": distance.total, "distance_squared": distance.squared,
            "ranking_accuracy": ranking_accuracy(scores.chosen_logps, scores.rejected_logps),
            "ranking_accuracy_normalized": ranking_accuracy(
                scores.chosen_logps, scores.rejected_logps, chosen_lengths=scores.chosen_lengths,
                rejected_lengths=scores.rejected_lengths),
            "win_rate": wins.win_rate, "win_rate_ci": [wins.ci_low, wins.ci_high], "wins": wins.wins,
            "ties": wins.ties, "losses": wins.losses, "reward": samples["reward"], "kl": samples["kl"],
            "length": samples["length"], "flipped_fraction": groups.flipped_fraction,
            "flip_fractions": groups.fractions}, wins.scores


def run_arm(arm: Arm, cfg: RankingWinrateConfig, assets: Any, pairs: Path, reference: Reference,
            judge: Any, log: Callable[[str], None]) -> dict[str, Any]:
    """Train (or reuse) the arm's run and measure the reference and every checkpoint; cached as JSON under
    out/runs/ (the checkpoint weights are removed once measured)."""
    out = Path(cfg.stages.out)
    base = {**run_config(cfg.run_stages(), assets, pairs, "dpo", cfg.beta, None), **arm.keys,
            "eval_fraction": 0.0, "eval_steps": None,
            "save_steps": cfg.steps // cfg.checkpoints, "save_total_limit": None}
    for key in arm.drop:
        base.pop(key, None)
    payload = {"experiment": "ranking-winrate", "version": MEASURES_VERSION, "arm": arm.name, "pairs": assets.keys["pairs"],
               "sft": assets.keys["sft"], "reward": assets.keys["reward"], "base": base,
               "eval_samples": cfg.eval_samples, "n_eval": len(assets.eval_prefixes), "n_bootstrap": cfg.n_bootstrap,
               "confidence": cfg.confidence, "seed": cfg.stages.seed}
    name = f"ranking-winrate-{arm.name}-{content_key(payload)[:12]}"
    result_path = out / "runs" / f"{name}.json"
    if result_path.is_file():  # the measurements are cached; the finding is always read from them afresh
        cached = json.loads(result_path.read_text(encoding="utf-8"))
        return {**cached, "finding": near_far(cached["rows"], cached["decline"]), "cached": True}
    run_dir = out / "runs" / name
    start = time.perf_counter()
    if not is_done(run_dir):  # a run whose measuring was interrupted is measured again, not retrained
        log(f"{arm.label}: training {cfg.steps} steps from the reference, a checkpoint every {base['save_steps']}")
        arm.train(dict(base), run_dir)
    train_s = time.perf_counter() - start
    tokenizer = load_tokenizer(assets.reference)
    points = arm.checkpoints(run_dir, cfg.steps)
    if not points:
        raise AlignlabError(f"{run_dir}: the {arm.label} run left no checkpoint to measure")
    log(f"{arm.label}: measuring the reference and {len(points)} checkpoints")
    measured = [checkpoint_row(reference.model, 0, cfg, reference, assets.eval_prefixes, tokenizer, judge)]
    for step, directory in points:
        measured.append(checkpoint_row(load_lm(str(directory)), step, cfg, reference, assets.eval_prefixes,
                                       tokenizer, judge))
        log(f"{arm.label}: step {step}: win rate {measured[-1][0]['win_rate']:.3f}, ranking accuracy "
            f"{measured[-1][0]['ranking_accuracy']:.3f}")
    rows = [row for row, _ in measured]
    peak = max(range(len(rows)), key=lambda i: rows[i]["win_rate"])
    decline = paired_difference(measured[-1][1], measured[peak][1], n_bootstrap=cfg.n_bootstrap,
                                seed=cfg.stages.seed, confidence=cfg.confidence)
    result = {"arm": arm.name, "label": arm.label, "keys": dict(arm.keys), "rows": rows, "decline": decline,
              "train_s": round(train_s, 1), "total_s": round(time.perf_counter() - start, 1),
              "run_dir": str(run_dir)}
    write_json_atomically(result_path, json_safe(result), indent=1)
    result["finding"] = near_far(rows, decline)
    for _, directory in points:  # the numbers are kept; the weights (and optimizer states) are not needed
        shutil.rmtree(directory, ignore_errors=True)
    return {**result, "cached": False}


# ---------------------------------------------------------------------------------------------------- plot
def plot_ranking_winrate(path: str | Path, arms: Mapping[str, Sequence[Mapping[str, Any]]],
                         splits: Mapping[str, float], *, title: str) -> Path:
    """One panel per arm: ranking accuracy (R and R~, left axis) and win rate vs the reference with its interval
    (right axis) against ||theta - theta_ref||_2, the near/far split as a dotted line; every panel on the same
    axis ranges, so arms compare by eye; written atomically."""
    fig = Figure(figsize=(7.5 * len(arms), 5.0), dpi=120)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(arms), squeeze=False)[0]
    all_rows = [r for rows in arms.values() for r in rows]

    def span(values: list[float]) -> tuple[float, float]:
        pad = 0.04 * max(max(values) - min(values), 0.05)
        return min(values) - pad, max(values) + pad

    ranking_span = span([r[k] for r in all_rows for k in ("ranking_accuracy", "ranking_accuracy_normalized")])
    win_span = span([v for r in all_rows for v in r["win_rate_ci"]])
    distance_span = (-0.03 * max(r["distance"] for r in all_rows), 1.03 * max(r["distance"] for r in all_rows))
    for ax, (label, rows) in zip(axes, arms.items()):
        rows = sorted(rows, key=lambda r: r["distance"])
        d = [r["distance"] for r in rows]
        ax.plot(d, [r["ranking_accuracy"] for r in rows], "o-", color="#1f77b4", markersize=4,
                label="ranking accuracy R (training pairs)")
        ax.plot(d, [r["ranking_accuracy_normalized"] for r in rows], "s--", color="#1f77b4", alpha=0.45,
                markersize=3, label="length-normalised R~")
        ax.set_xlabel("‖θ − θ_ref‖₂", fontsize=10)
        ax.set_ylabel("ranking accuracy", color="#1f77b4", fontsize=10)
        twin = ax.twinx()
        w = np.array([r["win_rate"] for r in rows])
        low = w - np.array([r["win_rate_ci"][0] for r in rows])
        high = np.array([r["win_rate_ci"][1] for r in rows]) - w
        twin.errorbar(d, w, yerr=[low, high], fmt="D-", color="#d62728", markersize=4, capsize=2,
                      label="win rate vs π_ref (95% bootstrap)")
        twin.set_ylabel("win rate against the reference", color="#d62728", fontsize=10)
        ax.set_ylim(*ranking_span)
        twin.set_ylim(*win_span)
        ax.set_xlim(*distance_span)
        if label in splits:
            ax.axvline(splits[label], color="grey", linestyle=":", linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        handles = ax.get_legend_handles_labels()
        twin_handles = twin.get_legend_handles_labels()
        ax.legend(handles[0] + twin_handles[0], handles[1] + twin_handles[1], fontsize=8, loc="upper left",
                  framealpha=0.9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return write_atomically(Path(path), lambda tmp: fig.savefig(tmp, format="png"))


# ----------------------------------------------------------------------------------------------------- run
def _training_examples(cfg: RankingWinrateConfig, assets: Any, pairs: Path, tokenizer: Any) -> list[dict[str, Any]]:
    """The training pairs tokenized as the trainer reads them (the run's data keys through load_config)."""
    base = run_config(cfg.run_stages(), assets, pairs, "dpo", cfg.beta, None)
    data = load_config(base={**base, "eval_fraction": 0.0}).data
    examples, _ = load_preference_data(str(pairs), tokenizer, data.spec(data.train_split))
    return examples


def run_ranking_winrate(cfg: RankingWinrateConfig, *, console: Any = None, plot: bool = True,
                        arms: Sequence[Arm] = ARMS, online_runner: Callable[..., Any] | None = None
                        ) -> dict[str, Any]:
    """Build or reuse the sentiment stages under cfg.stages.out, run and measure every arm not yet cached, write
    ranking_winrate.json (and ranking_winrate.png) there; return the JSON's content plus `files`.

    arms: the offline arms; with `online_runner` (alignlab.online.run_online) and cfg.online_rounds > 0, the
    online arm (`online_arm`) is measured after them.
    """
    cfg.validate()
    if not arms or len({a.name for a in arms}) != len(arms) or ONLINE_DPO[0] in {a.name for a in arms}:
        raise ConfigError("ranking-winrate needs at least one arm, each with its own name")
    started = time.perf_counter()
    log = console_log(console, started)
    out = Path(cfg.stages.out)
    assets, pairs, judge, ref_model = load_stages(cfg.run_stages(), log)
    tokenizer = load_tokenizer(assets.reference)
    examples = _training_examples(cfg, assets, pairs, tokenizer)
    log(f"scoring {len(examples)} training pairs and sampling the reference on {len(assets.eval_prefixes)} "
        "test prefixes")
    records, rewards = sample_and_score(ref_model, tokenizer, assets.eval_prefixes, judge, ref_model,
                                        n=cfg.eval_samples, max_new_tokens=cfg.stages.max_new_tokens,
                                        seed=cfg.stages.seed + 1)
    reference = Reference(ref_model, examples, compute_pair_scores(ref_model, examples, batch_size=64),
                          [r["prompt"] for r in records], [r["completion"] for r in records], rewards)
    if online_runner is not None and cfg.online_rounds:
        arms = [*arms, online_arm(online_runner, judge, cfg, assets)]
    results = [run_arm(arm, cfg, assets, pairs, reference, judge, log) for arm in arms]
    files = []
    if plot:
        files.append(str(plot_ranking_winrate(
            out / "ranking_winrate.png", {r["label"]: r["rows"] for r in results},
            {r["label"]: r["finding"]["split_distance"] for r in results},
            title=f"Ranking accuracy and win rate vs distance from the reference ({PAPER})\nDPO β={cfg.beta:g}, "
                  f"{cfg.steps} steps × {cfg.batch_size} pairs, lr {cfg.lr:g}; {len(examples)} training pairs, "
                  f"{len(reference.completions)} samples per win rate")))
    result = {"experiment": "ranking-winrate", "paper": PAPER, "config": asdict(cfg),
              "assets": {"policy": assets.policy, "reference": assets.reference,
                         "reward_model": assets.reward_model, "keys": dict(assets.keys)},
              "pairs": str(pairs), "n_training_pairs": len(examples),
              "n_comparisons": len(reference.completions),
              "arms": [{k: v for k, v in r.items() if k != "cached"} for r in results],
              "arms_cached": sum(bool(r.get("cached")) for r in results),
              "elapsed_s": round(time.perf_counter() - started, 1)}
    json_path = write_json_atomically(out / "ranking_winrate.json", json_safe({**result, "files": files}), indent=1)
    return {**result, "files": [str(json_path), *files]}


def format_summary(result: Mapping[str, Any]) -> str:
    """The terminal summary: one table per arm (step, distance, R, R~, win rate and interval, reward, KL) and
    its finding."""
    lines = []
    for arm in result["arms"]:
        lines.append(f"{arm['label']} (β={result['config']['beta']:g}; ranking accuracy on "
                     f"{result['n_training_pairs']} training pairs, win rate over {result['n_comparisons']} "
                     "samples vs the reference's)")
        header = f"{'step':>5} {'dist':>7} {'R':>6} {'R~':>6} {'win rate':>8} {'95% interval':>15} {'reward':>7} " \
                 f"{'KL':>6}"
        lines += [header, "-" * len(header)]
        for r in arm["rows"]:
            lines.append(f"{r['step']:>5} {r['distance']:7.3f} {r['ranking_accuracy']:6.3f} "
                         f"{r['ranking_accuracy_normalized']:6.3f} {r['win_rate']:8.3f} "
                         f"[{r['win_rate_ci'][0]:.3f}, {r['win_rate_ci'][1]:.3f}] {r['reward']:7.3f} {r['kl']:6.2f}")
        lines.append(arm["finding"]["statement"])
        lines.append("")
    return "\n".join(lines).rstrip()


__all__ = ["ARMS", "OFFLINE_DPO", "PAPER", "SMOKE", "Arm", "KnownRewards", "RankingWinrateConfig", "Reference", "checkpoint_row",
           "format_summary", "near_far", "online_arm", "online_checkpoints", "paired_difference", "pearson",
           "plot_ranking_winrate", "run_arm", "run_ranking_winrate", "spearman", "spearman_p_value",
           "trainer_checkpoints"]
