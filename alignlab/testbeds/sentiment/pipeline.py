"""The controlled-sentiment pipeline of the TDPO paper (Zeng et al. 2024, arXiv 2404.11999, Sec. 5, Fig. 3;
docs/architecture.md, testbeds/): SFT reference -> k samples per review prefix -> classifier-labelled pairs ->
DPO / TDPO1 / TDPO2 (+ f-DPO forward KL, SimPO) over a beta (and alpha) sweep -> reward and KL of each policy's
samples on test prefixes.

Stages, each cached under `out/` by a key hashing everything it depends on (so a rerun reuses them and an
interrupted sweep resumes at the first unfinished run):
  data        `--dataset synthetic`: train.jsonl / test.jsonl written by `corpus.write_dataset`; any other value
              (a local directory or file, or a `datasets` name such as `imdb`) is read as is (fields text, label).
              Train records (shuffled with seed 0 when a limit applies): the first `sft_examples` train SFT and
              the classifier, the next `n_prompts` give the pair prefixes (held out from SFT); test records give
              the `n_eval_prompts` evaluation prefixes. A prefix is a review's first `prefix_words` words.
  policy      `--policy tiny`: a GPT-2 (2 layers, width 128) from config with a BPE tokenizer trained on the SFT
              reviews (models.py); any other value (built-in name, local directory, hub id such as gpt2-large)
              is loaded as is by the trainer.
  sft         alignlab.train, method sft on the SFT reviews (text format, EOS appended) -> the reference pi_ref.
              `sft_steps 0` takes the policy itself as the reference.
  classifier  `--reward-model` (a local directory or hub id such as siebert/sentiment-roberta-large-english), or
              the tiny classifier trained on the SFT reviews' labels; either way loaded by
              `models.load_reward_judge` (reward = P(POSITIVE | prefix + completion)).
  pairs       k samples per pair prefix from pi_ref (top_p `pair_top_p`, top_k 0, temperature 1), scored by the
              classifier; one pair per prefix, chosen = the highest reward, rejected = the lowest (rule
              "max_vs_min"; prefixes whose samples tie or include an empty completion are skipped). The same
              procedure on the test prefixes gives held-out pairs (`build_pairs(..., split="test")`).
  runs        one alignlab.train run per (method, beta, alpha) from pi_ref with the shared learning rate, steps
              and batch; held-out pairs (eval_fraction 0.1) are evaluated every `eval_steps` for the sequence KL
              on chosen / rejected (forward and reverse, Fig. 3b-d). Then `eval_samples` samples per test
              prefix (temperature 1, top_k 0, top_p 1: samples from pi_theta itself) give reward = mean
              classifier P(POSITIVE), KL = mean exact sum_t KL(pi_theta || pi_ref) over generated tokens (and the
              single-sample estimate), predictive entropy, distinct-1/2. The same evaluation runs on
              `checkpoints` evenly spaced intermediate checkpoints; every evaluated policy is a frontier point
              (the paper sweeps beta/alpha and training checkpoints). SimPO's gamma is beta / 4 (SimPO's
              gamma/beta = 0.25) and f-DPO uses the forward KL.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignlab.assets import load_model, load_tokenizer, resolve_device
from alignlab.cache import build_dir_atomically, content_key, write_json_atomically, write_jsonl_atomically
from alignlab.diagnostics.diversity import distinct_n, mean_token_entropy
from alignlab.diagnostics.generation import generate
from alignlab.errors import AlignlabError, ConfigError
from alignlab.losses.registry import get_method
from alignlab.testbeds.sentiment.corpus import load_reviews, review_prefix, write_dataset
from alignlab.testbeds.sentiment.frontier import compare_frontiers, pareto_front, plot_frontier, plot_seqkl
from alignlab.testbeds.sentiment.models import (
    build_policy,
    build_review_tokenizer,
    load_reward_judge,
    train_classifier,
)
from alignlab.train import load_config, train
from alignlab.train.metrics import read_metrics

METHODS = ("dpo", "tdpo1", "tdpo2", "fdpo", "simpo")
SEQKL_FIGURE_METHODS = ("dpo", "tdpo1", "tdpo2")  # the panels of the TDPO paper's Figure 3b-d


def _has_key(method: str, key: str) -> bool:
    """Whether `method`'s registry hyper-parameters include recipe key `key` (what a sweep may set for it)."""
    return key in get_method(method).param_keys()
SYNTHETIC = "synthetic"
TINY_POLICY = "tiny"
PAIR_RULE = "max_vs_min"
METHOD_LABELS = {"sft": "SFT", "dpo": "DPO", "tdpo1": "TDPO1", "tdpo2": "TDPO2", "fdpo": "f-DPO (FKL)",
                 "simpo": "SimPO"}


@dataclass(frozen=True)
class SentimentConfig:
    """Every setting of a sweep; the defaults are the offline sweep (< 15 min on 2 CPU cores)."""

    out: str = "sentiment"
    seed: int = 0
    policy: str = TINY_POLICY
    reward_model: str | None = None
    dataset: str = SYNTHETIC
    methods: tuple[str, ...] = METHODS
    betas: tuple[float, ...] = (0.1, 0.3, 1.0)
    alphas: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
    simpo_betas: tuple[float, ...] = (1.0, 2.0, 4.0)
    steps: int = 48
    lr: float = 5e-4
    batch_size: int = 16
    eval_steps: int = 8
    sft_examples: int = 3000
    sft_steps: int = 200
    sft_lr: float = 3e-3
    sft_max_length: int = 256
    classifier_steps: int = 250
    n_prompts: int = 512
    samples_per_prompt: int = 4
    pair_top_p: float = 0.95
    prefix_words: int = 4
    max_new_tokens: int = 32
    n_eval_prompts: int = 200
    eval_samples: int = 2
    checkpoints: int = 1
    vocab_size: int = 1024

    def validate(self) -> SentimentConfig:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"--methods: '{','.join(unknown) or '(empty)'}' is not a method; choose from "
                              f"{', '.join(METHODS)}")
        for name in ("steps", "batch_size", "eval_steps", "sft_examples", "classifier_steps", "n_prompts",
                     "prefix_words", "max_new_tokens", "n_eval_prompts", "eval_samples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(self, name)}")
        if self.samples_per_prompt < 2:
            raise ConfigError(f"--samples-per-prompt must be >= 2 to form a pair; got {self.samples_per_prompt}")
        if not 0 <= self.checkpoints < self.steps:
            raise ConfigError(f"--checkpoints must be in [0, --steps); got {self.checkpoints}")
        if self.sft_steps < 0:
            raise ConfigError(f"--sft-steps must be >= 0; got {self.sft_steps}")
        if self.sft_max_length < 8:
            raise ConfigError(f"--sft-max-length must be >= 8; got {self.sft_max_length}")
        for name in ("lr", "sft_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0; got {getattr(self, name)}")
        if not 0 < self.pair_top_p <= 1:
            raise ConfigError(f"--pair-top-p must be in (0, 1]; got {self.pair_top_p}")
        for name, values in (("betas", self.betas), ("simpo_betas", self.simpo_betas)):
            if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
                raise ConfigError(f"--{name.replace('_', '-')} must be a non-empty list of numbers > 0")
        sweeps_alpha = any(_has_key(m, "tdpo_alpha") for m in self.methods)
        if sweeps_alpha and (not self.alphas or any(not 0 < a <= 10 for a in self.alphas)):
            raise ConfigError("--alphas must be a non-empty list of numbers in (0, 10] (TDPO2's alpha)")
        if self.vocab_size < 300:
            raise ConfigError(f"--vocab-size must be >= 300 (bytes + specials + merges); got {self.vocab_size}")
        return self

    def runs(self) -> list[tuple[str, float, float | None]]:
        """(method, beta, alpha) of every run, in sweep order (alpha only for TDPO2)."""
        grid: list[tuple[str, float, float | None]] = []
        for method in self.methods:
            # a target-margin method (SimPO) has its own beta scale (its paper's 2.0 against DPO's 0.1)
            betas = self.simpo_betas if _has_key(method, "simpo_gamma") else self.betas
            for beta in betas:
                for alpha in (self.alphas if _has_key(method, "tdpo_alpha") else (None,)):
                    grid.append((method, float(beta), None if alpha is None else float(alpha)))
        return grid


SMOKE = {"betas": (0.3,), "alphas": (0.5,), "simpo_betas": (2.0,), "steps": 4, "batch_size": 4, "eval_steps": 2, "checkpoints": 1,
             "sft_examples": 300, "sft_steps": 12, "classifier_steps": 30, "n_prompts": 24, "samples_per_prompt": 3,
             "max_new_tokens": 12, "n_eval_prompts": 8, "eval_samples": 2, "vocab_size": 512}


# ------------------------------------------------------------------------------------------------- caching
# Stages that build files (data, policy, classifier, pairs) build them in a temporary directory renamed into place
# (alignlab.cache.build_dir_atomically): an existing directory is complete. Training stages cannot: the trainer
# records its run_dir in its checkpoints, so they train in place and mark completion with a DONE file.
def _key(payload: Any) -> str:
    """A short content key for a stage's directory or result name (12 hex digits of alignlab.cache.content_key)."""
    return content_key(payload)[:12]


def _fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (a leftover from an interrupted training stage is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def is_done(path: Path) -> bool:
    """Whether the training stage in `path` finished (its DONE marker exists)."""
    return (path / "DONE").is_file()


def _mark_done(path: Path) -> None:
    (path / "DONE").write_text("ok\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------- stages
@dataclass
class Assets:
    """The built (or given) artefacts of a sweep and their cache keys."""

    sft_texts: list[str]
    sft_labels: list[int]
    pair_prefixes: list[str]
    eval_prefixes: list[str]
    policy: str  # what the trainer loads as the initial policy
    reference: str  # pi_ref: the SFT final directory (or the policy itself when sft_steps is 0)
    reward_model: str
    keys: dict[str, str] = field(default_factory=dict)


def prepare_data(cfg: SentimentConfig, out: Path) -> tuple[str, dict[str, Any]]:
    """The dataset source to read (the synthetic corpus is written under out/data) and its key payload."""
    if cfg.dataset != SYNTHETIC:
        return cfg.dataset, {"dataset": cfg.dataset}
    n_train, n_test = cfg.sft_examples + cfg.n_prompts, cfg.n_eval_prompts
    payload = {"dataset": SYNTHETIC, "seed": cfg.seed, "n_train": n_train, "n_test": n_test}
    directory = out / "data" / f"synthetic-{_key(payload)}"
    build_dir_atomically(directory, lambda tmp: write_dataset(tmp, n_train=n_train, n_test=n_test, seed=cfg.seed))
    return str(directory), payload


def _prefixes(texts: Sequence[str], n: int, words: int, where: str) -> list[str]:
    prefixes = [review_prefix(t, words) for t in texts[:n]]
    if len(prefixes) < n:
        raise ConfigError(f"{where} has {len(prefixes)} reviews for the {n} prefixes asked; lower the count")
    return prefixes


def _device() -> torch.device:
    return resolve_device()


def load_lm(name_or_path: str) -> torch.nn.Module:
    """A causal LM for sampling and scoring, on the GPU when there is one (the trainer places its own)."""
    return load_model(name_or_path).to(_device())


def load_judge(name_or_path: str) -> Any:
    """The reward judge (models.load_reward_judge), on the GPU when there is one."""
    judge = load_reward_judge(name_or_path)
    judge.model.to(_device())
    return judge


def _sft_model_path(run_dir: Path) -> Path:
    return run_dir / "final"


def train_run(base: dict[str, Any], run_dir: Path, trainer: Callable[[Any], Any] | None = None) -> Path:
    """Train the recipe keys `base` into a fresh run_dir (a partial one from an interrupted run is discarded) with
    `trainer` (a function of the TrainConfig; default alignlab.train.train); the DONE marker is written last."""
    _fresh_dir(run_dir)
    cfg = load_config(base={**base, "run_dir": str(run_dir), "tensorboard": False, "progress": False})
    (train if trainer is None else trainer)(cfg)
    _mark_done(run_dir)
    return run_dir


def prepare_assets(cfg: SentimentConfig, out: Path, log: Callable[[str], None]) -> Assets:
    """Data, policy, SFT reference and reward model (module docstring), built or reused from out/."""
    source, data_payload = prepare_data(cfg, out)
    n_train = cfg.sft_examples + cfg.n_prompts
    texts, labels = load_reviews(source, "train", limit=n_train)
    if len(texts) < n_train:
        raise ConfigError(f"dataset '{cfg.dataset}' split 'train' has {len(texts)} reviews; --sft-examples + "
                          f"--n-prompts need {n_train}")
    test_texts, _ = load_reviews(source, "test", limit=cfg.n_eval_prompts)
    sft_texts, sft_labels = texts[:cfg.sft_examples], labels[:cfg.sft_examples]
    pair_prefixes = _prefixes(texts[cfg.sft_examples:], cfg.n_prompts, cfg.prefix_words, "the train split")
    eval_prefixes = _prefixes(test_texts, cfg.n_eval_prompts, cfg.prefix_words, "the test split")
    models_dir = out / "models"
    keys = {"data": _key(data_payload)}

    if cfg.policy == TINY_POLICY:
        payload = {"policy": TINY_POLICY, "data": keys["data"], "sft_examples": cfg.sft_examples,
                   "vocab": cfg.vocab_size, "seed": cfg.seed}
        policy_dir = models_dir / f"policy-init-{_key(payload)}"

        def build_policy_dir(tmp: Path) -> None:
            log("building the tokenizer and the tiny GPT-2 policy")
            build_policy(build_review_tokenizer(sft_texts, cfg.vocab_size), tmp, seed=cfg.seed)

        policy = str(build_dir_atomically(policy_dir, build_policy_dir))
    else:
        policy, payload = cfg.policy, {"policy": cfg.policy}
    keys["policy"] = _key(payload)

    if cfg.sft_steps > 0:
        payload = {"policy": keys["policy"], "data": keys["data"], "n": cfg.sft_examples, "steps": cfg.sft_steps,
                   "lr": cfg.sft_lr, "max_length": cfg.sft_max_length, "seed": cfg.seed}
        keys["sft"] = _key(payload)
        sft_dir = models_dir / f"sft-{keys['sft']}"
        if not is_done(sft_dir):
            log(f"SFT of the policy on {len(sft_texts)} reviews ({cfg.sft_steps} steps)")
            data = write_jsonl_atomically(models_dir / f"sft-data-{keys['sft']}" / "sft.jsonl",
                                          ({"text": t} for t in sft_texts), ensure_ascii=True)
            train_run({"method": "sft", "model": policy, "train_data": str(data), "seed": cfg.seed,
                       "micro_batch_size": 32, "max_steps": cfg.sft_steps, "learning_rate": cfg.sft_lr,
                       "warmup_steps": min(10, cfg.sft_steps - 1), "max_length": cfg.sft_max_length,
                       "max_prompt_length": cfg.sft_max_length // 2, "eval_fraction": 0.05}, sft_dir)
        reference = str(_sft_model_path(sft_dir))
    else:
        keys["sft"] = keys["policy"]
        reference = policy

    if cfg.reward_model is None:
        payload = {"classifier": "tiny-roberta", "data": keys["data"], "n": cfg.sft_examples,
                   "steps": cfg.classifier_steps, "vocab": cfg.vocab_size, "seed": cfg.seed}
        keys["reward"] = _key(payload)
        reward_dir = models_dir / f"classifier-{keys['reward']}"

        def build_classifier(tmp: Path) -> None:
            log(f"training the sentiment classifier on {len(sft_texts)} labelled reviews")
            tokenizer = build_review_tokenizer(sft_texts, cfg.vocab_size) if cfg.policy != TINY_POLICY \
                else load_tokenizer(policy)
            train_classifier(sft_texts, sft_labels, tokenizer, tmp, seed=cfg.seed, steps=cfg.classifier_steps)

        reward_model = str(build_dir_atomically(reward_dir, build_classifier))
    else:
        reward_model = cfg.reward_model
        keys["reward"] = _key({"reward_model": cfg.reward_model})
    return Assets(sft_texts, sft_labels, pair_prefixes, eval_prefixes, policy, reference, reward_model, keys)


def make_pairs(records: Sequence[dict[str, Any]], rewards: Sequence[float]) -> list[dict[str, Any]]:
    """One pair per prompt from scored samples ("max_vs_min": chosen = highest reward, rejected = lowest).

    records: generate()'s records (prompt_index, prompt, completion), rewards [len(records)]. Prompts whose
    rewards all tie, or whose best or worst completion is blank, give no pair. Ties in reward go to the
    earlier sample.
    """
    by_prompt: dict[int, list[tuple[float, dict[str, Any]]]] = {}
    for record, reward in zip(records, rewards):
        by_prompt.setdefault(record["prompt_index"], []).append((float(reward), record))
    pairs = []
    for index in sorted(by_prompt):
        scored = by_prompt[index]
        best = max(scored, key=lambda s: s[0])
        worst = min(scored, key=lambda s: s[0])
        if best[0] == worst[0] or not best[1]["completion"].strip() or not worst[1]["completion"].strip():
            continue
        pairs.append({"prompt": best[1]["prompt"], "chosen": best[1]["completion"],
                      "rejected": worst[1]["completion"], "chosen_reward": best[0], "rejected_reward": worst[0],
                      "prompt_index": index})
    return pairs


PAIR_SPLITS = ("train", "test")


def build_pairs(cfg: SentimentConfig, assets: Assets, out: Path, log: Callable[[str], None], *,
                split: str = "train") -> Path:
    """Sample from pi_ref, score with the classifier and write the pairs (cached); returns pairs.jsonl.

    split "train": the `n_prompts` pair prefixes, the preference runs' training data. split "test": the same
    procedure on the `n_eval_prompts` test prefixes, held-out pairs that no run trains on (the TDPO table's
    alignment accuracy). The train split's cache key predates `split` and does not include it.
    """
    if split not in PAIR_SPLITS:
        raise ValueError(f"split must be one of {', '.join(PAIR_SPLITS)}; got {split!r}")
    prefixes = assets.pair_prefixes if split == "train" else assets.eval_prefixes
    payload = {"sft": assets.keys["sft"], "reward": assets.keys["reward"], "data": assets.keys["data"],
               "n": len(prefixes), "k": cfg.samples_per_prompt, "top_p": cfg.pair_top_p,
               "max_new_tokens": cfg.max_new_tokens, "prefix_words": cfg.prefix_words, "seed": cfg.seed,
               "rule": PAIR_RULE}
    if split == "train":
        assets.keys["pairs"] = _key(payload)
        directory = out / "pairs" / f"pairs-{assets.keys['pairs']}"
        # a training run needs two batches; an evaluation, two pairs
        least, options = 2 * cfg.batch_size, "--n-prompts"
    else:
        assets.keys["heldout_pairs"] = _key({**payload, "split": split})
        directory = out / "pairs" / f"heldout-pairs-{assets.keys['heldout_pairs']}"
        least, options = 2, "--n-eval-prompts"
    build_dir_atomically(directory, lambda tmp: _write_pairs(cfg, assets, prefixes, tmp, log, least=least,
                                                             options=options))
    return directory / "pairs.jsonl"


def _write_pairs(cfg: SentimentConfig, assets: Assets, prefixes: Sequence[str], directory: Path,
                 log: Callable[[str], None], *, least: int, options: str) -> None:
    """Sample, label and write pairs.jsonl and summary.json into `directory` (build_pairs' build step)."""
    log(f"sampling {cfg.samples_per_prompt} completions for {len(prefixes)} prefixes and labelling pairs")
    tokenizer = load_tokenizer(assets.reference)
    model = load_lm(assets.reference)
    records = generate(model, tokenizer, prefixes, n=cfg.samples_per_prompt, temperature=1.0,
                       top_p=cfg.pair_top_p, top_k=0, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                       batch_size=64)
    judge = load_judge(assets.reward_model)
    rewards = judge.score_batch([r["prompt"] for r in records], [r["completion"] for r in records])
    pairs = make_pairs(records, rewards)
    if len(pairs) < least:
        raise AlignlabError(f"only {len(pairs)} usable pairs from {len(prefixes)} prefixes; raise {options} or "
                            "--samples-per-prompt")
    write_jsonl_atomically(directory / "pairs.jsonl", pairs, ensure_ascii=True)
    write_json_atomically(directory / "summary.json", {
        "pairs": len(pairs), "prefixes": len(prefixes), "rule": PAIR_RULE,
        "mean_chosen_reward": float(np.mean([p["chosen_reward"] for p in pairs])),
        "mean_rejected_reward": float(np.mean([p["rejected_reward"] for p in pairs])),
        "mean_sample_reward": float(np.mean(rewards))}, indent=1)


def sample_and_score(model: torch.nn.Module, tokenizer: Any, prefixes: Sequence[str], judge: Any,
                     ref_model: torch.nn.Module, *, n: int, max_new_tokens: int, seed: int,
                     top_p: float = 1.0) -> tuple[list[dict[str, Any]], list[float]]:
    """`n` samples per prefix (temperature 1, top_k 0, nucleus `top_p`; generate's records, scored against
    `ref_model`) and the judge's reward of each. Row (prefix i, sample s) draws its noise from (seed, i, s)
    alone, so two policies sampled with one seed share it (and identical policies give identical samples)."""
    records = generate(model, tokenizer, prefixes, n=n, temperature=1.0, top_p=top_p, top_k=0,
                       max_new_tokens=max_new_tokens, seed=seed, batch_size=64, ref_model=ref_model)
    rewards = judge.score_batch([r["prompt"] for r in records], [r["completion"] for r in records])
    return records, [float(r) for r in rewards]


def sample_metrics(records: Sequence[dict[str, Any]], rewards: Sequence[float]) -> dict[str, float]:
    """Reward (mean and standard error), exact and sampled KL, predictive entropy, distinct-1/2 and length of
    sampled completions (`sample_and_score`'s records and rewards)."""
    texts = [r["completion"] for r in records]
    return {"reward": float(np.mean(rewards)), "reward_se": float(np.std(rewards, ddof=1) / math.sqrt(len(rewards)))
            if len(rewards) > 1 else math.nan, "kl": float(np.mean([r["kl_reverse"] for r in records])),
            "kl_sample": float(np.mean([r["kl_sample"] for r in records])),
            "kl_forward": float(np.mean([r["kl_forward"] for r in records])),
            "entropy": mean_token_entropy(records), "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2), "length": float(np.mean([r["num_tokens"] for r in records])),
            "samples": len(records)}


def evaluate_policy(policy: str, cfg: SentimentConfig, assets: Assets, judge: Any,
                    ref_model: torch.nn.Module) -> dict[str, float]:
    """Reward, KL and diversity of a policy's samples on the test prefixes (module docstring)."""
    records, rewards = sample_and_score(load_lm(policy), load_tokenizer(policy), assets.eval_prefixes, judge,
                                        ref_model, n=cfg.eval_samples, max_new_tokens=cfg.max_new_tokens,
                                        seed=cfg.seed + 1)
    return sample_metrics(records, rewards)


def run_name(method: str, beta: float, alpha: float | None) -> str:
    return f"{method}-beta{beta:g}" + ("" if alpha is None else f"-alpha{alpha:g}")


def _trajectory(run_dir: Path, batch_size: int) -> list[dict[str, float]]:
    """Held-out SeqKL over training: step, examples seen, forward and reverse K(chosen), K(rejected)."""
    rows = []
    for line in read_metrics(run_dir):
        if "eval/kl/chosen" in line:
            rows.append({"step": line["step"], "examples": line["step"] * batch_size,
                         "kl_chosen": line["eval/kl/chosen"], "kl_rejected": line["eval/kl/rejected"],
                         "kl_reverse_chosen": line.get("eval/kl_reverse/chosen", math.nan),
                         "kl_reverse_rejected": line.get("eval/kl_reverse/rejected", math.nan)})
    return rows


def run_config(cfg: SentimentConfig, assets: Assets, pairs: Path, method: str, beta: float,
               alpha: float | None) -> dict[str, Any]:
    """The recipe keys of one preference run from pi_ref on `pairs`: cfg's seed, steps, batch, lr and eval_steps,
    a tenth of the pairs held out; f-DPO with the forward KL (the TDPO paper's baseline), SimPO's gamma = beta/4."""
    base: dict[str, Any] = {"method": method, "model": assets.reference, "train_data": str(pairs), "seed": cfg.seed,
                            "micro_batch_size": cfg.batch_size, "max_steps": cfg.steps, "learning_rate": cfg.lr,
                            "beta": beta, "max_length": 64 + cfg.max_new_tokens + 8, "max_prompt_length": 64,
                            "eval_fraction": 0.1, "eval_steps": cfg.eval_steps}
    if alpha is not None:
        base["tdpo_alpha"] = alpha
    if _has_key(method, "fdpo_divergence"):
        base["fdpo_divergence"] = "forward_kl"  # the TDPO paper's f-DPO baseline
    if _has_key(method, "simpo_gamma"):
        base["simpo_gamma"] = beta / 4  # SimPO's gamma / beta = 0.25
    return base


def train_and_evaluate(cfg: SentimentConfig, assets: Assets, pairs: Path, out: Path, method: str, beta: float,
                       alpha: float | None, judge: Any, ref_model: torch.nn.Module) -> dict[str, Any]:
    """One run: train from pi_ref on the pairs, evaluate on the test prefixes; result cached as JSON."""
    payload = {"pairs": assets.keys["pairs"], "method": method, "beta": beta, "alpha": alpha, "steps": cfg.steps,
               "lr": cfg.lr, "batch": cfg.batch_size, "eval_steps": cfg.eval_steps,
               "n_eval": cfg.n_eval_prompts, "eval_samples": cfg.eval_samples,
               "max_new_tokens": cfg.max_new_tokens, "checkpoints": cfg.checkpoints, "seed": cfg.seed}
    name = f"{run_name(method, beta, alpha)}-{_key(payload)}"
    result_path = out / "runs" / f"{name}.json"
    if result_path.is_file():
        return {**json.loads(result_path.read_text(encoding="utf-8")), "cached": True}
    base = run_config(cfg, assets, pairs, method, beta, alpha)
    if cfg.checkpoints:
        base.update(save_steps=cfg.steps // (cfg.checkpoints + 1), save_total_limit=None)
    start = time.perf_counter()
    run_dir = train_run(base, out / "runs" / name)
    train_s = time.perf_counter() - start
    metrics = evaluate_policy(str(run_dir / "final"), cfg, assets, judge, ref_model)
    checkpoints = []
    for directory in sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
        step = int(directory.name.split("-")[1])
        checkpoints.append({"step": step, **evaluate_policy(str(directory), cfg, assets, judge, ref_model)})
        shutil.rmtree(directory)  # the numbers are kept; the weights (and optimizer state) are not needed
    result = {"method": method, "beta": beta, "alpha": alpha, **metrics, "checkpoints": checkpoints,
              "seqkl": _trajectory(run_dir, cfg.batch_size), "train_s": round(train_s, 1),
              "total_s": round(time.perf_counter() - start, 1), "run_dir": str(run_dir)}
    shutil.rmtree(run_dir / "final", ignore_errors=True)
    write_json_atomically(result_path, result, indent=1)
    return {**result, "cached": False}


def group_label(method: str, alpha: float | None) -> str:
    return METHOD_LABELS[method] + ("" if alpha is None else f" α={alpha:g}")


def _points(run: dict[str, Any]) -> list[tuple[float, float]]:
    """A run's frontier points: its final policy and its intermediate checkpoints."""
    return [(run["kl"], run["reward"])] + [(c["kl"], c["reward"]) for c in run.get("checkpoints", [])]


def summarize(runs: Sequence[dict[str, Any]], reference: dict[str, Any]) -> dict[str, Any]:
    """Frontier per method group (TDPO2 per alpha and pooled) and TDPO2-vs-DPO / TDPO1-vs-DPO comparisons."""
    ref_point = (reference["kl"], reference["reward"])
    groups: dict[str, list[tuple[float, float]]] = {}
    for r in runs:
        groups.setdefault(group_label(r["method"], r["alpha"]), []).extend(_points(r))
    pooled = {METHOD_LABELS[m]: [p for r in runs if r["method"] == m for p in _points(r)]
              for m in dict.fromkeys(r["method"] for r in runs)}
    fronts = {label: pareto_front(points + [ref_point]) for label, points in {**groups, **pooled}.items()}
    comparisons = {}
    if "DPO" in pooled:
        for label in [lbl for lbl in fronts if lbl.startswith("TDPO")]:
            comparisons[f"{label} vs DPO"] = compare_frontiers(fronts[label], fronts["DPO"])
    return {"groups": {k: [list(p) for p in v] for k, v in groups.items()},
            "frontiers": {k: [list(p) for p in v] for k, v in fronts.items()}, "comparisons": comparisons}


def seqkl_curves(runs: Sequence[dict[str, Any]], which: str) -> tuple[dict, float | None]:
    """Curves for Fig. 3b-d at the swept beta closest to 0.1 (the papers' default): DPO, TDPO1, TDPO2 per alpha.

    which: "chosen", "rejected" or "margin" (K(rejected) - K(chosen)); panels forward and reverse SeqKL.
    """
    eligible = [r for r in runs if r["method"] in SEQKL_FIGURE_METHODS and r["seqkl"]]
    if not eligible:
        return {}, None
    beta = min({r["beta"] for r in eligible}, key=lambda b: (abs(math.log(b / 0.1)), b))
    curves = {}
    for r in eligible:
        if r["beta"] != beta:
            continue
        forward, reverse = [], []
        for row in r["seqkl"]:
            if which == "margin":
                f, rv = row["kl_rejected"] - row["kl_chosen"], row["kl_reverse_rejected"] - row["kl_reverse_chosen"]
            else:
                f, rv = row[f"kl_{which}"], row[f"kl_reverse_{which}"]
            forward.append((row["examples"], f))
            reverse.append((row["examples"], rv))
        side = {"chosen": "K(y_w)", "rejected": "K(y_l)", "margin": "K(y_l) − K(y_w)"}[which]
        curves[group_label(r["method"], r["alpha"])] = {f"{side}, forward KL(π_ref‖π_θ)": forward,
                                                        f"{side}, reverse KL(π_θ‖π_ref)": reverse}
    return curves, beta


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, through dicts, lists and tuples (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def console_log(console: Any, started: float) -> Callable[[str], None]:
    """A progress logger: each message on `console` (a rich Console; None is silent) after the seconds since
    `started` (a time.perf_counter() value)."""

    def log(message: str) -> None:
        if console is not None:
            console.print(f"[dim]{time.perf_counter() - started:6.1f}s[/dim] {message}")

    return log


def load_stages(cfg: SentimentConfig, log: Callable[[str], None]) -> tuple[Assets, Path, Any, torch.nn.Module]:
    """Build or reuse the stages under cfg.out (data, policy, SFT reference, classifier, training pairs) and load
    what every experiment on them needs: (assets, training pairs file, reward judge, reference model)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    assets = prepare_assets(cfg, out, log)
    pairs = build_pairs(cfg, assets, out, log)
    return assets, pairs, load_judge(assets.reward_model), load_lm(assets.reference)


def run_sweep(cfg: SentimentConfig, *, console: Any = None, plot: bool = True) -> dict[str, Any]:
    """Build or reuse every stage, run every (method, beta, alpha) not yet cached, write the JSON and PNGs.

    Returns the summary written to out/sentiment.json: config, reference, runs, frontiers, comparisons, files.
    """
    cfg.validate()
    out = Path(cfg.out)
    started = time.perf_counter()
    log = console_log(console, started)
    assets, pairs, judge, ref_model = load_stages(cfg, log)
    ref_payload = {"sft": assets.keys["sft"], "reward": assets.keys["reward"], "n_eval": cfg.n_eval_prompts,
                   "eval_samples": cfg.eval_samples, "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
                   "data": assets.keys["data"], "prefix_words": cfg.prefix_words}
    ref_path = out / "runs" / f"sft-reference-{_key(ref_payload)}.json"
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    if ref_path.is_file():
        reference = json.loads(ref_path.read_text(encoding="utf-8"))
    else:
        log("evaluating the SFT reference on the test prefixes")
        reference = {"method": "sft", "beta": None, "alpha": None,
                     **evaluate_policy(assets.reference, cfg, assets, judge, ref_model)}
        write_json_atomically(ref_path, reference, indent=1)

    grid = cfg.runs()
    runs: list[dict[str, Any]] = []
    progress = None
    if console is not None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=console)
        progress.start()
        task = progress.add_task("runs", total=len(grid))
    try:
        for method, beta, alpha in grid:
            if progress is not None:
                progress.update(task, description=f"runs: {run_name(method, beta, alpha)}")
            runs.append(train_and_evaluate(cfg, assets, pairs, out, method, beta, alpha, judge, ref_model))
            if progress is not None:
                progress.advance(task)
    finally:
        if progress is not None:
            progress.stop()

    summary = summarize(runs, reference)
    files = []
    if plot:
        groups = {k: [tuple(p) for p in v] for k, v in summary["groups"].items()}
        files.append(str(plot_frontier(
            out / "frontier.png", groups, (reference["kl"], reference["reward"]),
            title=f"Reward vs KL frontier ({_describe(cfg)})",
            kl_label="sequence KL(π_θ ‖ π_ref) over generated tokens (nats, exact, mean over samples)",
            reward_label="reward: classifier P(POSITIVE), mean over samples")))
        for which in ("chosen", "rejected", "margin"):
            curves, beta = seqkl_curves(runs, which)
            if curves:
                files.append(str(plot_seqkl(
                    out / f"seqkl_{which}.png", curves, xlabel="training pairs seen",
                    title=f"Sequence KL on held-out {'chosen' if which == 'chosen' else 'rejected' if which == 'rejected' else 'rejected minus chosen'} "
                          f"responses over training (β={beta:g}; {_describe(cfg)})")))
    result = {"config": asdict(cfg), "pair_rule": PAIR_RULE, "assets": asdict(replace(assets, sft_texts=[],
              sft_labels=[], pair_prefixes=[], eval_prefixes=[])),
              "pairs_summary": json.loads((pairs.parent / "summary.json").read_text(encoding="utf-8")),
              "reference": reference, "runs": [{k: v for k, v in r.items() if k != "cached"} for r in runs],
              **summary, "files": files, "elapsed_s": round(time.perf_counter() - started, 1),
              "runs_cached": sum(bool(r.get("cached")) for r in runs)}
    write_json_atomically(out / "sentiment.json", result, indent=1)
    result["files"] = [str(out / "sentiment.json")] + files
    return result


def _describe(cfg: SentimentConfig) -> str:
    policy = "tiny GPT-2" if cfg.policy == TINY_POLICY else Path(cfg.policy).name
    data = "synthetic reviews" if cfg.dataset == SYNTHETIC else Path(cfg.dataset).name
    return f"{policy}, {data}, {cfg.steps} steps × {cfg.batch_size} pairs, lr {cfg.lr:g}"


__all__ = ["METHODS", "PAIR_RULE", "PAIR_SPLITS", "SMOKE", "Assets", "SentimentConfig", "build_pairs",
           "console_log", "evaluate_policy", "is_done", "json_safe", "load_judge", "load_lm", "load_stages",
           "make_pairs", "prepare_assets", "run_config", "run_name", "run_sweep", "sample_and_score",
           "sample_metrics", "seqkl_curves", "summarize", "train_and_evaluate", "train_run"]
