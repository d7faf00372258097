"""Command line: parse, call the library, print.

`main` is the one place that turns an AlignlabError into output: one stderr line `alignlab: <message>` and
exit code 2 (with --debug anywhere on the command line it re-raises, so the traceback shows). Subcommand mains
and the library raise; they never print errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from alignlab.errors import AlignlabError, ConfigError

USAGE = """alignlab <command> [options]

commands:
  train           train with a recipe: alignlab train --config recipes/dpo.yaml [key=value ...]
                  (no --config: one run from the config defaults and the key=value overrides;
                  bare `alignlab train`: the quickstart, SFT then TDPO2 on the tiny offline model)
  validate-data   check a data file: alignlab validate-data data.jsonl [--sft]
  diagnose        ranking diagnostics: alignlab diagnose --model M [--ref R] --data D | --run RUN_DIR
  generate        sample completions: alignlab generate --model M --prompts FILE [--n 4 ...]
  score           per-record log-probs: alignlab score --model M --data FILE --out scores.jsonl [--ref R]
  testbed         run a testbed: alignlab testbed frozenlake [--seeds 5] | alignlab testbed sentiment

add --help after a command for its options; --debug shows tracebacks.
"""


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _train(argv: list[str]) -> int:
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

    from alignlab.train import describe_keys, load_config, train

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
    if args.resume and cfg.run_dir is None:
        raise ConfigError("--resume needs the run to continue: add run_dir=DIR (or run_dir in the recipe)")
    callbacks = []
    if args.track_flips:
        if not cfg.is_pair_method:
            raise ConfigError(f"--track-flips needs a preference method; method '{cfg.method}' trains on "
                              "single responses")
        from alignlab.diagnostics.callbacks import FlipTracker

        callbacks.append(FlipTracker(n_pairs=args.track_flips))
        if not cfg.needs_reference:
            console.print(f"--track-flips: {cfg.method} is reference-free; flips count against the initial "
                          "policy")
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


def _score(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="alignlab score",
        description="Per-record summed log-probs of a data set under a model (and a reference), computed as "
                    "training computes them; one JSON line per record, in input order. The data options are "
                    "training's config keys of the same names and defaults.")
    parser.add_argument("--model", required=True, help="built-in name, Hugging Face directory or id, or LoRA adapter")
    parser.add_argument("--data", required=True, help="pairs or single responses: file, directory or datasets name")
    parser.add_argument("--out", required=True, help="output JSONL (written atomically)")
    parser.add_argument("--ref", default=None, help="reference model: adds its log-probs and each sequence's KL")
    parser.add_argument("--token-ids", action="store_true",
                        help="add each sequence's input_ids and labels (-100 where not scored)")
    parser.add_argument("--batch-size", type=int, default=8, help="records per forward (a pair is two rows)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer (default: the model's)")
    parser.add_argument("--split", default="train", help="split of a directory or datasets source")
    parser.add_argument("--format", default="auto", help="data format (default: detected, as in training)")
    parser.add_argument("--columns", default=None, help='column renames as JSON, e.g. \'{"prompt": "question"}\'')
    parser.add_argument("--max-length", type=int, default=512, help="max tokens of prompt + response")
    parser.add_argument("--max-prompt-length", type=int, default=256, help="max prompt tokens of a long record")
    parser.add_argument("--prompt-truncation", default="keep_end", help="keep_end or keep_start")
    parser.add_argument("--response-truncation", default="truncate", help="truncate or drop_example")
    parser.add_argument("--sft-turns", default="all", help="messages data: score all assistant turns or the last")
    parser.add_argument("--limit", type=int, default=None, help="score the first N records")
    parser.add_argument("--dtype", default="float32", help="weights: float32 or bfloat16")
    parser.add_argument("--mixed-precision", default="no", help="no, or bf16 (autocast, as training's key)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="tokens per tile of the vocabulary projection")
    args = parser.parse_args(argv)
    from alignlab.diagnostics.generation import write_jsonl
    from alignlab.diagnostics.sequence_scores import score_data

    out = Path(args.out)
    if out.is_dir() or not out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: not a file path in an existing directory")
    for flag, value in (("--batch-size", args.batch_size), ("--chunk-size", args.chunk_size),
                        ("--limit", 1 if args.limit is None else args.limit)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    columns = None
    if args.columns is not None:
        try:
            columns = json.loads(args.columns)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--columns is not valid JSON ({exc.msg})") from None
    records, report = score_data(
        args.model, args.data, ref=args.ref, tokenizer=args.tokenizer, split=args.split, format=args.format,
        columns=columns, max_length=args.max_length, max_prompt_length=args.max_prompt_length,
        prompt_truncation=args.prompt_truncation, response_truncation=args.response_truncation,
        sft_turns=args.sft_turns, limit=args.limit, dtype=args.dtype, mixed_precision=args.mixed_precision,
        device=args.device, token_ids=args.token_ids, batch_size=args.batch_size, chunk_size=args.chunk_size)
    write_jsonl(records, out)
    key = "chosen_logps" if "chosen_logps" in records[0] else "logps"
    mean = sum(r[key] for r in records) / len(records)
    dropped = report.n_dropped_empty + report.n_dropped_truncation
    print(f"{report.n_records} records ({report.format}) -> {len(records)} scored, {dropped} dropped "
          f"({report.n_dropped_empty} empty response, {report.n_dropped_truncation} too long), "
          f"{report.n_response_truncated} with a response cut at max_length; mean {key} {mean:.4f} -> {out}",
          file=sys.stderr)
    return 0


def _testbed(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        # a missing name is a usage error: stderr and exit 2, as argparse does
        print("usage: alignlab testbed {frozenlake,sentiment} [options]", file=sys.stdout if argv else sys.stderr)
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
    "train": _train, "validate-data": _validate, "diagnose": _diagnose, "generate": _generate, "score": _score,
    "testbed": _testbed,
}


def _one_line(exc: BaseException) -> str:
    # a message may wrap (e.g. a quoted library error); the contract is one stderr line per error
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 2 user error or usage error, 130 interrupted)."""
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
        print(f"alignlab: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        raise
    except KeyboardInterrupt:
        print("alignlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
