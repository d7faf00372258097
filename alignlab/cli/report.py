"""`alignlab report`: its parser, the option checks, and the line saying what was written.

The work (scoring, figures, the page and its JSON) is alignlab.diagnostics.report.build_report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alignlab.cli.options import check_local_file, parse_indices
from alignlab.errors import ConfigError

# alignlab.diagnostics (torch, transformers) is imported once the options have been checked: a missing run
# directory or a bad option is reported before seconds of imports.

USAGE = ("alignlab report RUN_DIR [--ref R] [--data FILE] [--out report.html] [--pairs 3,17] [--extremes 2] "
         "[--max-pairs 32] [--generate N] [--no-checkpoints]")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignlab report", usage=USAGE,
        description="One self-contained HTML page of what a training run did (config, curves, flips, Theorem 4.1, "
                    "per-token views, samples), and the JSON it is drawn from beside it.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="training run directory (config.yaml, metrics.jsonl, final/)")
    p.add_argument("--ref", default=None, help="reference model (default: the run's ref_model, else its initial model)")
    p.add_argument("--data", default=None,
                   help="preference pairs to score (default: the run's eval data, else its training data)")
    p.add_argument("--out", default=None,
                   help="the page (default RUN_DIR/report.html, replaced); the JSON is written beside it as .json")
    p.add_argument("--pairs", default=None, help="record indices that also get a per-token view, e.g. 3,17")
    p.add_argument("--extremes", type=int, default=2, help="most and least improved pairs shown per token (default 2)")
    p.add_argument("--max-pairs", type=int, default=32,
                   help="pairs of the seeded subset scored for the ranking section and the per-token picks "
                        "(default 32)")
    p.add_argument("--generate", type=int, default=0, metavar="N",
                   help="sample N prompts from the final model and the reference (default 0: off)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens per sample (default 32)")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="without tracked flips, do not score the checkpoints for the flip groups")
    p.add_argument("--flip-pairs", type=int, default=32,
                   help="without tracked flips: pairs scored per checkpoint for the flip groups (default 32)")
    p.add_argument("--max-checkpoints", type=int, default=8,
                   help="without tracked flips: checkpoints scored, evenly spaced, the last included (default 8; "
                        "alignlab diagnose --run scores all)")
    p.add_argument("--judge", default=None, metavar="SPEC",
                   help="score the --generate samples with a judge (an alignlab.judges spec, as alignlab winrate's "
                        "--judge: rm:MODEL, py:module:function, https://host/v1#MODEL, judge.yaml)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets and the samples (default 0)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per forward (default 16)")
    p.add_argument("--bf16", action="store_true", help="load the models in bfloat16")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-cache", action="store_true", help="rescore the checkpoints; read and write no score cache")
    return p


def main(argv: list[str]) -> int:
    """`alignlab report`: check the options, build the report, print where it is; return 0."""
    args = _parser().parse_args(argv)
    for flag, value, least in (("--extremes", args.extremes, 0), ("--max-pairs", args.max_pairs, 1),
                               ("--generate", args.generate, 0), ("--max-new-tokens", args.max_new_tokens, 1),
                               ("--flip-pairs", args.flip_pairs, 1), ("--batch-size", args.batch_size, 1),
                               ("--max-checkpoints", args.max_checkpoints, 1)):
        if value < least:
            raise ConfigError(f"{flag} must be >= {least}; got {value}")
    pairs = parse_indices(args.pairs, "--pairs")
    if args.judge is not None and not args.generate:
        raise ConfigError("--judge scores the sample generations: add --generate N")
    from alignlab.train.run_info import check_run_dir

    check_run_dir(args.run_dir)
    if args.out is not None:
        out = Path(args.out)
        if out.is_dir() or not out.parent.is_dir():
            raise ConfigError(f"--out {args.out}: not a file path in an existing directory")
    if args.data is not None:
        check_local_file(args.data)
    from alignlab.diagnostics.diagnose import ScoringOptions
    from alignlab.diagnostics.report import ReportOptions, build_report

    options = ReportOptions(
        max_pairs=args.max_pairs, extremes=args.extremes, pairs=pairs, generate=args.generate,
        max_new_tokens=args.max_new_tokens, checkpoints=not args.no_checkpoints, flip_pairs=args.flip_pairs,
        max_checkpoints=args.max_checkpoints,
        seed=args.seed, judge=args.judge,
        scoring=ScoringOptions(bf16=args.bf16, batch_size=args.batch_size, device=args.device,
                               cache=not args.no_cache))
    result = build_report(args.run_dir, ref=args.ref, data=args.data, out=args.out, options=options)
    size = result.html_path.stat().st_size
    print(f"report: {result.html_path} ({size / 1e6:.2f} MB) and {result.json_path}, built in "
          f"{result.data['build_seconds']:.1f} s")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


__all__ = ["main"]
