"""`alignlab train`: its parser and the tables printed after a run or the quickstart."""

from __future__ import annotations

import argparse
import os

from alignlab.errors import ConfigError


def main(argv: list[str]) -> int:
    """`alignlab train`: parse, train (or run the quickstart), print the held-out metrics; return 0."""
    parser = argparse.ArgumentParser(
        prog="alignlab train",
        description="Train with a YAML recipe and/or key=value overrides of the config defaults; with no "
                    "arguments at all, run the quickstart (SFT then TDPO2 on the tiny offline model).")
    parser.add_argument("--config", help="YAML recipe (omit to start from the config defaults)")
    parser.add_argument("--resume", action="store_true", help="continue from the run_dir's latest checkpoint")
    parser.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    parser.add_argument("--track-flips", type=int, default=0, metavar="N",
                        help="track ranking flips on N training pairs at every evaluation (reference-free "
                             "methods: against the initial policy)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    # intermixed: overrides may sit on either side of the options (`beta=0.2 --track-flips 8 eval_steps=10`)
    args = parser.parse_intermixed_args(argv)
    from rich.console import Console

    # the loop (torch, accelerate, transformers) is imported once the config has loaded: a missing recipe or a
    # mistyped key is reported before seconds of imports
    from alignlab.train import describe_keys, load_config

    console = Console()
    if args.list_keys:
        print(describe_keys())
        return 0
    if args.track_flips < 0:
        raise ConfigError(f"--track-flips takes a number of pairs >= 1 (0: off); got {args.track_flips}")
    # Only a bare `alignlab train` is the two-stage quickstart: overrides meant for one run (run_dir=...)
    # would otherwise apply to both stages and the second would collide with the first's run_dir.
    if args.config is None and not args.overrides and not args.resume and not args.track_flips:
        from alignlab.train.quickstart import run_quickstart

        sft, pref = run_quickstart(console=console)
        _print_quickstart(console, sft, pref)
        return 0
    cfg = load_config(args.config, args.overrides)
    if args.resume and cfg.run.run_dir is None:
        raise ConfigError("--resume needs the run to continue: add run_dir=DIR (or run_dir in the recipe)")
    if cfg.online.rounds is not None:  # online rounds: sample, judge, pair, train (alignlab.online)
        if args.track_flips:
            raise ConfigError("--track-flips applies to offline training; online rounds report flips on their "
                              "held-out pairs in online_metrics.jsonl")
        from alignlab.online import run_online

        _print_online(console, run_online(cfg, resume=args.resume, console=console))
        return 0
    callbacks = []
    if args.track_flips:
        if not cfg.method.record.paired:
            raise ConfigError(f"--track-flips needs a preference method; method '{cfg.method.name}' trains on "
                              "single responses")
        from alignlab.diagnostics.callbacks import FlipTracker

        callbacks.append(FlipTracker(n_pairs=args.track_flips))
        if not cfg.method.record.needs_ref:
            console.print(f"--track-flips: {cfg.method.name} is reference-free; flips count against the initial "
                          "policy")
    from alignlab.train import train

    result = train(cfg, resume=args.resume, callbacks=callbacks, console=console)
    if int(os.environ.get("RANK", "0")) == 0:  # one table for a multi-process run, not one per process
        _print_summary(console, cfg.method.name, result)
    return 0


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _print_summary(console, method: str, result) -> None:
    from rich.table import Table

    table = Table(title=f"{method}: held-out metrics")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    keys = [k for k in ("eval/loss", "eval/rewards/margins", "eval/ranking/accuracy",
                        "eval/ranking/accuracy_normalized", "eval/kl/sequence", "eval/nll/seq_mean")
            if k in result.eval_after]
    for key in keys:
        table.add_row(key[5:], _fmt(result.eval_before.get(key)), _fmt(result.eval_after.get(key)))
    if result.warnings:  # under the table, so a diverged run is never read as a trained one
        table.caption = "\n".join(f"[bold red]warning:[/] {w}" for w in result.warnings)
    console.print(table)
    console.print(f"run directory: {result.run_dir}", soft_wrap=True)  # a path to copy: never wrapped


def _print_online(console, result) -> None:
    from rich.table import Table

    table = Table(title="online rounds (held-out: fixed prompts, seeds and pairs)")
    for label in ("round", "reward", "pairs", "margin", "held-out reward", "held-out ranked", "flips +/-"):
        table.add_column(label, justify="right")
    initial = result.initial
    if initial:
        table.add_row("start", "-", "-", "-", _fmt(initial.get("heldout/reward_mean")),
                      _fmt(initial.get("heldout/ranking_accuracy")), "-")
    for m in result.rounds:
        flips = (f"{m['heldout/flips/incorrect_to_correct']}/{m['heldout/flips/correct_to_incorrect']}"
                 if "heldout/flips/incorrect_to_correct" in m else "-")
        table.add_row(str(m["round"]), _fmt(m["samples/reward_mean"]), str(m["pairs"]), _fmt(m["pairs/margin_mean"]),
                      _fmt(m.get("heldout/reward_mean")), _fmt(m.get("heldout/ranking_accuracy")), flips)
    console.print(table)
    console.print(f"run directory: {result.run_dir} (online_metrics.jsonl, rounds/round-*/)", soft_wrap=True)


def _print_quickstart(console, sft, pref) -> None:
    from rich.table import Table

    table = Table(title="quickstart: TDPO2 after SFT on the tiny offline Llama (held-out pairs)")
    table.add_column("metric")
    table.add_column("before TDPO2", justify="right")
    table.add_column("after TDPO2", justify="right")
    for key, label in (("eval/loss", "loss"), ("eval/rewards/margins", "reward margin"),
                       ("eval/ranking/accuracy", "ranking accuracy"),
                       ("eval/ranking/accuracy_normalized", "ranking accuracy (length-normalised)"),
                       ("eval/kl/sequence", "sequence KL(ref || policy)")):
        table.add_row(label, _fmt(pref.eval_before.get(key)), _fmt(pref.eval_after.get(key)))
    console.print(f"SFT held-out NLL per token: {_fmt(sft.eval_before.get('eval/nll/seq_mean'))} -> "
                  f"{_fmt(sft.eval_after.get('eval/nll/seq_mean'))}")
    console.print(table)
    console.print(f"run directory: {pref.run_dir.parent} (sft/, tdpo2/; final models in */final)", soft_wrap=True)


__all__ = ["main"]
