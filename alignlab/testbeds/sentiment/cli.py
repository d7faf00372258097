"""`alignlab testbed sentiment`: parse the options, run the sweep, print the table."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

import torch

from alignlab.errors import ConfigError
from alignlab.testbeds.sentiment.pipeline import (
    METHODS,
    SMOKE,
    SYNTHETIC,
    TINY_POLICY,
    SentimentConfig,
    group_label,
    run_sweep,
)


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option}: '{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise ConfigError(f"{option}: give at least one value")
    return values


def _parser() -> argparse.ArgumentParser:
    d = SentimentConfig()
    p = argparse.ArgumentParser(
        prog="alignlab testbed sentiment",
        description="TDPO controlled-sentiment testbed (arXiv 2404.11999, Fig. 3): SFT reference, classifier-"
                    "labelled pairs from its samples, DPO/TDPO1/TDPO2 (+ f-DPO, SimPO) over a beta/alpha sweep, "
                    "reward vs KL frontier. Offline by default; --policy gpt2-large --reward-model "
                    "siebert/sentiment-roberta-large-english --dataset imdb runs the paper's set-up.")
    add = p.add_argument
    # None defaults: an option not given takes --smoke's value (if any) or the sweep default
    add("--out", default=None, help=f"output and cache directory (default {d.out})")
    add("--seed", type=int, default=None, help=f"seed of data, initialisation, sampling and training ({d.seed})")
    add("--policy", default=None, help=f"'{TINY_POLICY}' (default: a tiny GPT-2 built here), a built-in name, a "
                                       "local directory or a hub id (e.g. gpt2-large)")
    add("--reward-model", default=None, help="sequence classifier (local directory or hub id, e.g. "
                                             "siebert/sentiment-roberta-large-english); default: train a tiny one")
    add("--dataset", default=None, help=f"'{SYNTHETIC}' (default), a local directory with train/test files, or a "
                                        "datasets name (e.g. imdb); fields text and label")
    add("--methods", default=None, help=f"comma-separated from {', '.join(METHODS)} (default all)")
    add("--betas", default=None, help=f"beta sweep (default {','.join(f'{b:g}' for b in d.betas)})")
    add("--alphas", default=None, help=f"TDPO2 alpha sweep (default {','.join(f'{a:g}' for a in d.alphas)})")
    add("--simpo-betas", default=None, help="SimPO beta sweep, gamma = beta/4 "
                                            f"(default {','.join(f'{b:g}' for b in d.simpo_betas)})")
    add("--steps", type=int, default=None, help=f"optimizer steps per preference run ({d.steps})")
    add("--lr", type=float, default=None, help=f"learning rate shared by every preference run ({d.lr:g})")
    add("--batch-size", type=int, default=None, help=f"pairs per optimizer step ({d.batch_size})")
    add("--eval-steps", type=int, default=None, help=f"held-out SeqKL logged every N steps ({d.eval_steps})")
    add("--sft-examples", type=int, default=None, help=f"reviews for SFT and the classifier ({d.sft_examples})")
    add("--sft-steps", type=int, default=None, help=f"SFT steps, batch 32; 0 uses the policy as the reference "
                                                    f"({d.sft_steps})")
    add("--sft-lr", type=float, default=None, help=f"SFT learning rate ({d.sft_lr:g})")
    add("--sft-max-length", type=int, default=None, help=f"SFT tokens per review ({d.sft_max_length})")
    add("--classifier-steps", type=int, default=None, help=f"tiny classifier steps ({d.classifier_steps})")
    add("--n-prompts", type=int, default=None, help=f"train prefixes turned into pairs ({d.n_prompts})")
    add("--samples-per-prompt", type=int, default=None, help=f"samples per prefix for pairs, k ({d.samples_per_prompt})")
    add("--pair-top-p", type=float, default=None, help=f"nucleus p when sampling pair candidates ({d.pair_top_p:g})")
    add("--prefix-words", type=int, default=None, help=f"words of a review in a prefix ({d.prefix_words})")
    add("--max-new-tokens", type=int, default=None, help=f"tokens per completion ({d.max_new_tokens})")
    add("--n-eval-prompts", type=int, default=None, help=f"test prefixes for evaluation ({d.n_eval_prompts})")
    add("--eval-samples", type=int, default=None, help=f"samples per test prefix ({d.eval_samples})")
    add("--checkpoints", type=int, default=None, help="intermediate checkpoints per run also evaluated as frontier "
                                                       f"points ({d.checkpoints})")
    add("--vocab-size", type=int, default=None, help=f"tokenizer of the tiny models ({d.vocab_size})")
    add("--smoke", action="store_true", help="a seconds-long configuration (the test suite's)")
    add("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    add("--no-plot", action="store_true", help="write only the JSON")
    return p


def config_from_args(args: argparse.Namespace) -> SentimentConfig:
    """SentimentConfig from parsed options: given options, then --smoke's values, then the defaults."""
    values: dict[str, Any] = dict(SMOKE) if args.smoke else {}
    names = {f.name for f in fields(SentimentConfig)}
    for name in names:
        given = getattr(args, name, None)
        if given is None:
            continue
        if name == "methods":
            given = tuple(m.strip() for m in given.split(",") if m.strip())
        elif name in ("betas", "alphas", "simpo_betas"):
            given = _floats(given, f"--{name.replace('_', '-')}")
        values[name] = given
    if args.smoke and args.out is None:
        values["out"] = "sentiment-smoke"
    return replace(SentimentConfig(), **values).validate()


def format_table(result: dict[str, Any]) -> str:
    """The terminal summary: one row per run (reference first), then the frontier comparisons."""
    header = f"{'method':<18} {'beta':>6} {'reward':>7} {'KL':>7} {'KL~':>7} {'entropy':>7} {'dist-1':>6} " \
             f"{'dist-2':>6} {'len':>5}"
    lines = [header, "-" * len(header)]

    def row(label: str, beta: Any, r: dict[str, Any]) -> str:
        b = "-" if beta is None else f"{beta:g}"
        return (f"{label:<18} {b:>6} {r['reward']:7.3f} {r['kl']:7.2f} {r['kl_sample']:7.2f} {r['entropy']:7.3f} "
                f"{r['distinct_1']:6.3f} {r['distinct_2']:6.3f} {r['length']:5.1f}")

    lines.append(row("SFT (reference)", None, result["reference"]))
    for r in result["runs"]:
        lines.append(row(group_label(r["method"], r["alpha"]), r["beta"], r))
    lines.append("KL = exact sum_t KL(pi_theta || pi_ref) over generated tokens; KL~ = its single-sample estimate")
    for name, c in result["comparisons"].items():
        if c["points"] == 0 or math.isnan(c["mean_gap"]):
            lines.append(f"{name}: no common KL range")
            continue
        verdict = "dominates" if c["dominates"] else "does not dominate"
        lines.append(f"{name}: {verdict} on KL [{c['kl_range'][0]:.2f}, {c['kl_range'][1]:.2f}]; reward gap "
                     f"mean {c['mean_gap']:+.3f}, min {c['min_gap']:+.3f}, max {c['max_gap']:+.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: run the sweep, print the table and the files; return 0.

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2), or re-raises with --debug.
    """
    args = _parser().parse_args(argv)
    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1; got {args.threads}")
    cfg = config_from_args(args)
    from rich.console import Console

    # accelerate warns on every checkpoint of a tied-embedding model (GPT-2); nothing to act on here
    logging.getLogger("accelerate").setLevel(logging.ERROR)

    console = Console(stderr=True)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = run_sweep(cfg, console=console, plot=not args.no_plot)
    finally:
        torch.set_num_threads(old_threads)
    print(format_table(result))
    print(f"{len(result['runs'])} runs ({result['runs_cached']} reused from the cache) in {result['elapsed_s']}s")
    print("Wrote " + ", ".join(result["files"]))
    return 0


__all__ = ["config_from_args", "format_table", "main"]
