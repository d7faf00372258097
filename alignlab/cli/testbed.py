"""`alignlab testbed frozenlake|sentiment|ranking-winrate|tdpo-table`: the testbeds' parsers and the tables
printed after a run.

The testbeds themselves (alignlab.testbeds.frozenlake.run_frozenlake, alignlab.testbeds.sentiment.run_sweep,
.ranking_winrate.run_ranking_winrate, .tdpo_table.run_tdpo_table) take arguments and return result dicts; this
module turns options into those arguments and prints the results.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from alignlab.errors import AlignlabError, ConfigError

if TYPE_CHECKING:
    from alignlab.testbeds.sentiment.pipeline import SentimentConfig

# The testbeds are imported inside the commands: `testbed frozenlake` needs torch only, not the sentiment
# testbed's transformers models.

# name -> one line for `alignlab testbed --help` (each testbed's own --help starts with it)
TESTBEDS = {
    "frozenlake": "Frozen Lake: SFT, IFT, DPO, ORPO, SimPO, TDPO1/2 against the exact optimal policy "
                  "(arXiv 2405.11870)",
    "sentiment": "controlled sentiment (arXiv 2404.11999, Fig. 3): DPO/TDPO reward vs KL frontier, offline by "
                 "default",
    "ranking-winrate": "ranking accuracy and win rate vs distance from the reference, offline and online DPO (arXiv "
                       "2405.19534, Fig. 4), on the sentiment testbed",
    "tdpo-table": "alignment accuracy and entropy of f-DPO, DPO, TDPO1, TDPO2 over seeds (arXiv 2404.11999, "
                  "Table 1), on the sentiment testbed",
}


def _usage() -> str:
    width = max(map(len, TESTBEDS))
    lines = [f"usage: alignlab testbed {{{','.join(TESTBEDS)}}} [options]", "", "testbeds:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in TESTBEDS.items()]
    lines += ["", "alignlab testbed NAME --help lists a testbed's options."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """`alignlab testbed NAME [options]`: run the named testbed's command; return its exit code."""
    if not argv or argv[0] in ("-h", "--help"):
        # a missing name is a usage error: stderr and exit 2, as argparse does
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "frozenlake":
        return frozenlake_main(rest)
    if name == "sentiment":
        return sentiment_main(rest)
    if name == "ranking-winrate":
        return ranking_winrate_main(rest)
    if name == "tdpo-table":
        return tdpo_table_main(rest)
    raise AlignlabError(f"unknown testbed '{name}': choose {', '.join(TESTBEDS)}")


# ------------------------------------------------------------------------------------------------- frozenlake


def frozenlake_main(argv: Sequence[str] | None = None) -> int:
    """CLI entry (`alignlab testbed frozenlake`): run, print the tables, return 0.

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2), or re-raises with --debug.
    """
    from alignlab.testbeds.frozenlake import (
        BRANCH_RULES,
        GYM_MAP_8X8,
        METHODS,
        PAPER_MAP_4X4,
        SCENARIOS,
        FrozenLakeConfig,
        format_tables,
        run_frozenlake,
    )

    d = FrozenLakeConfig()
    p = argparse.ArgumentParser(prog="alignlab testbed frozenlake", description=TESTBEDS["frozenlake"] + ".")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {', '.join(SCENARIOS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    p.add_argument("--base-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", default="frozenlake", help="output directory for frozenlake.json and PNGs")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--map", default=",".join(PAPER_MAP_4X4), help="small map, rows separated by ','")
    p.add_argument("--large-map", default=",".join(GYM_MAP_8X8), help="large map, rows separated by ','")
    p.add_argument("--env-gamma", type=float, default=d.env_gamma)
    p.add_argument("--dpo-beta", type=float, default=d.dpo_beta)
    p.add_argument("--tdpo-beta", type=float, default=d.tdpo_beta)
    p.add_argument("--tdpo-alpha", type=float, default=d.tdpo_alpha)
    p.add_argument("--simpo-beta", type=float, default=d.simpo_beta)
    p.add_argument("--simpo-gamma", type=float, default=d.simpo_gamma)
    p.add_argument("--orpo-lam", type=float, default=d.orpo_lam)
    p.add_argument("--ift-lambda", type=float, default=d.ift_lambda)
    p.add_argument("--ift-gamma", type=float, default=d.ift_gamma)
    p.add_argument("--sft-normalization", default=d.sft_normalization, choices=("sum", "seq_mean", "token_mean"))
    p.add_argument("--net-fit-tol", type=float, default=d.net_fit_tol)
    p.add_argument("--branch-rule", default=d.branch_rule, choices=BRANCH_RULES,
                   help="sub-optimal action of a 'branching' pair: worst (lowest Q*, default) or nearest (highest Q*)")
    p.add_argument("--exclude-ties", action="store_true", help="leave states with tied optimal actions unscored")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--no-plot", action="store_true", help="write only the JSON")
    args = p.parse_args(argv)
    cfg = FrozenLakeConfig(steps=args.steps, lr=args.lr, hidden=args.hidden, env_gamma=args.env_gamma,
                           dpo_beta=args.dpo_beta, tdpo_beta=args.tdpo_beta, tdpo_alpha=args.tdpo_alpha,
                           simpo_beta=args.simpo_beta, simpo_gamma=args.simpo_gamma, orpo_lam=args.orpo_lam,
                           ift_lambda=args.ift_lambda, ift_gamma=args.ift_gamma,
                           sft_normalization=args.sft_normalization, net_fit_tol=args.net_fit_tol,
                           exclude_ties=args.exclude_ties, branch_rule=args.branch_rule)
    results = run_frozenlake(args.scenarios, args.seeds, args.out, methods=args.methods,
                             base_seed=args.base_seed, small_map=args.map, large_map=args.large_map,
                             config=cfg, num_threads=args.threads, plot=not args.no_plot)
    print(format_tables(results))
    print("Wrote " + ", ".join(results["files"]))
    return 0


# -------------------------------------------------------------------------------------------------- sentiment


def _floats(text: str, option: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option}: '{text}' is not a comma-separated list of numbers") from None
    if not values:
        raise ConfigError(f"{option}: give at least one value")
    return values


def _sentiment_parser() -> argparse.ArgumentParser:
    from alignlab.testbeds.sentiment.pipeline import METHODS, SYNTHETIC, TINY_POLICY, SentimentConfig

    d = SentimentConfig()
    p = argparse.ArgumentParser(
        prog="alignlab testbed sentiment",
        description=TESTBEDS["sentiment"] + ". SFT reference, classifier-labelled pairs from its samples, "
                    "DPO/TDPO1/TDPO2 (+ f-DPO, SimPO) over a beta/alpha sweep; --policy gpt2-large --reward-model siebert/sentiment-roberta-large-english "
                    "--dataset imdb runs the paper's set-up.")
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
    from alignlab.testbeds.sentiment.pipeline import SMOKE, SentimentConfig

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


def sentiment_main(argv: Sequence[str] | None = None) -> int:
    """`alignlab testbed sentiment`: run the sweep, print the table and the files; return 0.

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2), or re-raises with --debug.
    """
    args = _sentiment_parser().parse_args(argv)
    _check_threads(args.threads)
    cfg = config_from_args(args)
    from alignlab.testbeds.sentiment import format_table, run_sweep

    result = _run_quietly(args.threads, lambda console: run_sweep(cfg, console=console, plot=not args.no_plot))
    print(format_table(result))
    print(f"{len(result['runs'])} runs ({result['runs_cached']} reused from the cache) in {result['elapsed_s']}s")
    print("Wrote " + ", ".join(result["files"]))
    return 0


# ------------------------------------------------------------------------- the paper experiments on the testbed


def _check_threads(threads: int) -> None:
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1; got {threads}")


def _run_quietly(threads: int, run: Any) -> Any:
    """run(console) with `threads` torch intra-op threads (restored afterwards) and a stderr console."""
    import torch
    from rich.console import Console

    # accelerate warns on every checkpoint of a tied-embedding model (GPT-2); nothing to act on here
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return run(Console(stderr=True))
    finally:
        torch.set_num_threads(old_threads)


def _experiment_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The options every experiment on the sentiment testbed shares: where, which stages, smoke, threads."""
    from alignlab.testbeds.sentiment.pipeline import SYNTHETIC, TINY_POLICY, SentimentConfig

    d = SentimentConfig()
    p = argparse.ArgumentParser(prog=f"alignlab testbed {name}", description=description)
    add = p.add_argument
    add("--out", default=None, help=f"output and cache directory (default {d.out}, `testbed sentiment`'s: the "
                                    "experiments share its reference, classifier and pairs; --smoke: "
                                    f"{d.out}-smoke)")
    add("--seed", type=int, default=None, help=f"seed of the stages (data, models, pairs) and of training "
                                               f"({d.seed})")
    add("--policy", default=None, help=f"'{TINY_POLICY}' (default) or a causal LM (built-in name, local directory, "
                                       "hub id)")
    add("--reward-model", default=None, help="sequence classifier (local directory or hub id); default: train a "
                                             "tiny one")
    add("--dataset", default=None, help=f"'{SYNTHETIC}' (default), a local directory with train/test files, or a "
                                        "datasets name; fields text and label")
    add("--smoke", action="store_true", help="a seconds-long configuration (the test suite's)")
    add("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    add("--no-plot", action="store_true", help="write only the JSON")
    return p


def _stages_from_args(args: argparse.Namespace) -> Any:
    """The sentiment stages (SentimentConfig) an experiment runs on: the sweep's defaults, --smoke's sizes, then
    the given --out, --seed, --policy, --reward-model and --dataset (as `testbed sentiment` reads them)."""
    from alignlab.testbeds.sentiment.pipeline import SMOKE, SentimentConfig

    values: dict[str, Any] = dict(SMOKE) if args.smoke else {}
    values["out"] = args.out if args.out is not None else SentimentConfig.out + ("-smoke" if args.smoke else "")
    for name in ("seed", "policy", "reward_model", "dataset"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return replace(SentimentConfig(), **values)


def _experiment_values(args: argparse.Namespace, config: type, smoke: dict[str, Any],
                       skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The experiment's own settings: --smoke's values, then every option given (None: not given)."""
    values = dict(smoke) if args.smoke else {}
    for f in fields(config):
        if f.name != "stages" and f.name not in skip and getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    return values


def ranking_winrate_main(argv: Sequence[str] | None = None) -> int:
    """`alignlab testbed ranking-winrate`: DPO checkpoints' ranking accuracy and win rate against their distance
    from the reference; print the table and the finding, return 0."""
    from alignlab.testbeds.sentiment.ranking_winrate import SMOKE, RankingWinrateConfig

    d = RankingWinrateConfig()
    p = _experiment_parser("ranking-winrate", TESTBEDS["ranking-winrate"] + ": at each checkpoint, ranking "
                           "accuracy on the training pairs, win rate of its samples against the reference's under "
                           "the classifier (bootstrap interval), and ||θ − θ_ref||₂.")
    add = p.add_argument
    add("--beta", type=float, default=None, help=f"DPO beta ({d.beta:g})")
    add("--steps", type=int, default=None, help=f"optimizer steps ({d.steps}: 5 epochs of the default pairs)")
    add("--lr", type=float, default=None, help=f"learning rate ({d.lr:g})")
    add("--batch-size", type=int, default=None, help=f"pairs per optimizer step ({d.batch_size})")
    add("--checkpoints", type=int, default=None, help=f"checkpoints measured: one every steps/N steps "
                                                      f"({d.checkpoints})")
    add("--online-rounds", type=int, default=None, help=f"rounds of the online DPO arm, steps/N steps each; 0 "
                                                        f"leaves the arm out ({d.online_rounds})")
    add("--eval-samples", type=int, default=None, help=f"samples per test prefix for the win rate "
                                                       f"({d.eval_samples})")
    add("--bootstrap", dest="n_bootstrap", type=int, default=None,
        help=f"bootstrap resamples of the win-rate interval ({d.n_bootstrap})")
    add("--confidence", type=float, default=None, help=f"level of the win-rate intervals ({d.confidence:g})")
    args = p.parse_args(argv)
    _check_threads(args.threads)
    stages = _stages_from_args(args)
    cfg = RankingWinrateConfig(stages=stages, **_experiment_values(args, RankingWinrateConfig, SMOKE)).validate()
    from alignlab.testbeds.sentiment.ranking_winrate import format_summary, run_ranking_winrate

    runner = None
    if cfg.online_rounds:
        from alignlab.online import run_online as runner
    result = _run_quietly(args.threads, lambda console: run_ranking_winrate(
        cfg, console=console, plot=not args.no_plot, online_runner=runner))
    print(format_summary(result))
    print(f"{len(result['arms'])} arm(s) ({result['arms_cached']} reused from the cache) in {result['elapsed_s']}s")
    print("Wrote " + ", ".join(result["files"]))
    return 0


def tdpo_table_main(argv: Sequence[str] | None = None) -> int:
    """`alignlab testbed tdpo-table`: TDPO's Table 1 (accuracy, entropy) over seeds; print it, return 0."""
    from alignlab.testbeds.sentiment.tdpo_table import SMOKE, TABLE_METHODS, TdpoTableConfig

    d = TdpoTableConfig()
    p = _experiment_parser("tdpo-table", TESTBEDS["tdpo-table"] + ": accuracy of the implicit reward on held-out "
                           "pairs and the predictive entropy of samples, mean ± std over seeds.")
    add = p.add_argument
    add("--seeds", type=int, default=None, help=f"training seeds: --seed, --seed + 1, ... ({d.seeds})")
    add("--methods", default=None, help=f"comma-separated from {', '.join(TABLE_METHODS)} (default all)")
    add("--beta", type=float, default=None, help=f"beta of every method ({d.beta:g})")
    add("--alpha", type=float, default=None, help=f"TDPO2's alpha ({d.alpha:g})")
    add("--steps", type=int, default=None, help=f"optimizer steps per run ({d.steps})")
    add("--lr", type=float, default=None, help=f"learning rate ({d.lr:g})")
    add("--batch-size", type=int, default=None, help=f"pairs per optimizer step ({d.batch_size})")
    add("--eval-samples", type=int, default=None, help=f"samples per test prefix for the entropy "
                                                       f"({d.eval_samples})")
    add("--top-p", type=float, default=None, help=f"nucleus p of those samples ({d.top_p:g})")
    args = p.parse_args(argv)
    _check_threads(args.threads)
    stages = _stages_from_args(args)
    values = _experiment_values(args, TdpoTableConfig, SMOKE, skip=("methods",))
    if args.methods is not None:
        values["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    cfg = TdpoTableConfig(stages=stages, **values).validate()
    from alignlab.testbeds.sentiment.tdpo_table import format_table, run_tdpo_table

    result = _run_quietly(args.threads, lambda console: run_tdpo_table(cfg, console=console, plot=not args.no_plot))
    print(format_table(result))
    print(f"{len(result['runs'])} runs ({result['runs_cached']} reused from the cache) in {result['elapsed_s']}s")
    print("Wrote " + ", ".join(result["files"]))
    return 0


__all__ = ["TESTBEDS", "config_from_args", "frozenlake_main", "main", "ranking_winrate_main", "sentiment_main",
           "tdpo_table_main"]
