"""Command line: parse, call the library, print. User errors print one line and exit with code 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from alignlab.errors import AlignlabError

USAGE = """alignlab <command> [options]

commands:
  train           train with a recipe: alignlab train --config recipes/dpo.yaml [key=value ...]
                  (no --config: the quickstart, SFT then TDPO2 on the tiny offline model)
  validate-data   check a data file: alignlab validate-data data.jsonl [--sft]
  diagnose        ranking diagnostics: alignlab diagnose --model M [--ref R] --data D | --run RUN_DIR
  generate        sample completions: alignlab generate --model M --prompts FILE [--n 4 ...]
  testbed         run a testbed: alignlab testbed frozenlake [--seeds 5] | alignlab testbed sentiment

add --help after a command for its options; --debug shows tracebacks.
"""


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _train(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alignlab train", description="Train with a YAML recipe.")
    parser.add_argument("--config", help="YAML recipe (omit for the quickstart)")
    parser.add_argument("--resume", action="store_true", help="continue from the run_dir's latest checkpoint")
    parser.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    parser.add_argument("--track-flips", type=int, default=0, metavar="N",
                        help="track ranking flips on N training pairs at every evaluation")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)
    from rich.console import Console

    from alignlab.train import describe_keys, load_config, train

    console = Console()
    if args.list_keys:
        print(describe_keys())
        return 0
    callbacks = []
    if args.track_flips:
        from alignlab.diagnostics.callbacks import FlipTracker

        callbacks.append(FlipTracker(n_pairs=args.track_flips))
    if args.config is None:
        if args.resume or callbacks:
            raise AlignlabError("--resume and --track-flips need --config (the quickstart always starts fresh)")
        from alignlab.train.quickstart import run_quickstart

        sft, pref = run_quickstart(overrides=args.overrides, console=console)
        _print_quickstart(console, sft, pref)
        return 0
    cfg = load_config(args.config, args.overrides)
    result = train(cfg, resume=args.resume, callbacks=callbacks, console=console)
    _print_summary(console, cfg.method, result)
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
    console.print(table)
    console.print(f"run directory: {result.run_dir}")


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
    console.print(f"run directory: {pref.run_dir.parent} (sft/, tdpo2/; final models in */final)")


def _validate(argv: list[str]) -> int:
    from alignlab.data import validate_data_main

    return validate_data_main(argv)


def _diagnose(argv: list[str]) -> int:
    from alignlab.diagnostics.diagnose import diagnose_main

    return diagnose_main(argv)


def _generate(argv: list[str]) -> int:
    from alignlab.diagnostics.generation import generate_main

    return generate_main(argv)


def _testbed(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: alignlab testbed {frozenlake,sentiment} [options]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "frozenlake":
        from alignlab.testbeds.frozenlake import main

        return main(rest)
    if name == "sentiment":
        from alignlab.testbeds.sentiment import main

        return main(rest)
    raise AlignlabError(f"unknown testbed '{name}': choose frozenlake or sentiment")


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _train, "validate-data": _validate, "diagnose": _diagnose, "generate": _generate, "testbed": _testbed,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"alignlab: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
        return 2
    _quiet_libraries()
    try:
        return COMMANDS[command](rest)
    except AlignlabError as exc:
        if debug:
            raise
        print(f"alignlab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
