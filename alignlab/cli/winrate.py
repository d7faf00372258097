"""`alignlab winrate`: its parser, the win-rate table (one row per temperature) and the JSON output."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from alignlab.cli.options import add_sampling_options, check_local_file
from alignlab.data.sources import LOCAL_SUFFIXES
from alignlab.errors import ConfigError
from alignlab.judges import SPEC_FORMS, load_judge

# alignlab.diagnostics (torch, transformers) is imported once the options and the judge spec have been checked.

USAGE = (
    "alignlab winrate --model PATH --baseline PATH --prompts FILE --judge SPEC [--temperatures 1.0] [--n 1] "
    "[--max-new-tokens 48] [--top-p 1.0] [--top-k 0] [--seed 0] [--bootstrap 1000] [--confidence 0.95] "
    "[--batch-size 16] [--prompt-column prompt] [--split train] [--limit N] [--device DEVICE] [--dtype DTYPE] "
    "[--out FILE.json]"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignlab winrate",
        usage=USAGE,
        description="Sample from a model and a baseline, judge each pair, and print the model's win rate with a "
                    "bootstrap interval at each sampling temperature.",
    )
    parser.add_argument("--model", required=True, help="the model: a built-in name, a directory or a hub id")
    parser.add_argument("--baseline", required=True, help="what it is compared with (same forms)")
    parser.add_argument(
        "--prompts", required=True, help=".txt (one per line), .jsonl/.json/.parquet, or a datasets name"
    )
    parser.add_argument("--judge", required=True, help=f"judge spec: {SPEC_FORMS}")
    parser.add_argument("--temperatures", default="1.0",
                        help="sampling temperatures, comma-separated (the TDPO paper's sweep: 0.25,0.75,1.0)")
    add_sampling_options(parser, n=1, n_help="samples per prompt and model")
    parser.add_argument("--seed", type=int, default=0, help="sampling, judging order and bootstrap")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the prompts")
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the interval")
    parser.add_argument("--out", default=None, help="write the results and every judged pair as JSON")
    return parser


def parse_temperatures(text: str) -> list[float]:
    """`0.25,0.75,1.0` as floats (order kept, repeats dropped); a one-line ConfigError naming the bad item."""
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"--temperatures item '{item}' is not a temperature (a number >= 0, 0 is greedy; "
                              "e.g. --temperatures 0.25,0.75,1.0)")
        values.append(value)
    return list(dict.fromkeys(values))


def main(argv: list[str] | None = None) -> int:
    """`alignlab winrate` (USAGE): print one row per temperature (and write --out); return 0.

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2) or re-raises (--debug).
    """
    args = _parser().parse_args(argv)
    temperatures = parse_temperatures(args.temperatures)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be an integer >= 1, got {args.limit!r}")
    if args.bootstrap < 1:
        raise ConfigError(f"--bootstrap must be an integer >= 1, got {args.bootstrap}")
    if not 0.0 < args.confidence < 1.0:
        raise ConfigError(f"--confidence must be in (0, 1), got {args.confidence}")
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise ConfigError(f"--out {args.out}: not a writable file path (is the directory there?)")
    check_local_file(args.prompts, (*LOCAL_SUFFIXES, ".txt"))  # .txt: one prompt per line (load_prompts)
    judge = load_judge(args.judge, device=args.device)  # a malformed spec fails here, before torch loads
    from alignlab.cache import write_json_atomically
    from alignlab.diagnostics.generation import load_prompts
    from alignlab.diagnostics.head_to_head import head_to_head

    prompts = load_prompts(args.prompts, column=args.prompt_column, split=args.split, limit=args.limit)
    results = head_to_head(
        args.model, args.baseline, prompts, judge, temperatures=temperatures, n=args.n, top_p=args.top_p,
        top_k=args.top_k, max_new_tokens=args.max_new_tokens, seed=args.seed, batch_size=args.batch_size,
        n_bootstrap=args.bootstrap, confidence=args.confidence, device=args.device, dtype=args.dtype,
    )
    print(f"win rate of {args.model} against {args.baseline}, judge {args.judge}: {len(prompts)} prompts x "
          f"{args.n} sample{'s' if args.n != 1 else ''}")
    interval = f"{args.confidence:.0%} interval"
    print(f"{'temperature':>11}  {'win rate':>8}  {interval:>16}  {'wins':>5}  {'ties':>5}  {'losses':>6}")
    for result in results:
        wr = result.win_rate
        print(f"{result.temperature!s:>11}  {wr.win_rate:>8.3f}  {f'[{wr.ci_low:.3f}, {wr.ci_high:.3f}]':>16}  "
              f"{wr.wins:>5}  {wr.ties:>5}  {wr.losses:>6}")
    requests = getattr(judge, "requests", None)
    if requests is not None:  # an HTTP judge: what the cache saved
        print(f"judge: {requests} requests, {judge.cache_hits} answers from the cache", file=sys.stderr)
    if args.out is not None:
        write_json_atomically(args.out, {
            "model": args.model, "baseline": args.baseline, "judge": args.judge, "prompts": args.prompts,
            "n": args.n, "max_new_tokens": args.max_new_tokens, "top_p": args.top_p, "top_k": args.top_k,
            "seed": args.seed, "results": [result.to_dict() for result in results],
        }, indent=1)
        print(f"-> {args.out}", file=sys.stderr)
    return 0


__all__ = ["USAGE", "main", "parse_temperatures"]
