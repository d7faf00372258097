"""`alignlab diagnose`: its parser, the option checks, and the tables printed for model mode and run mode.

The work (scoring, summary, diagnose.json, plots) is alignlab.diagnostics.diagnose.diagnose_model / diagnose_run.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from alignlab.cli.options import add_data_options, check_local_file, data_spec
from alignlab.errors import ConfigError

if TYPE_CHECKING:
    from alignlab.diagnostics.diagnose import DiagnoseResult

# alignlab.diagnostics (torch, transformers) is imported once the options have been checked: a missing data file
# or a bad option is reported before seconds of imports.

DESCRIPTION = (
    "`alignlab diagnose`: ranking diagnostics of a model (and its reference) on preference data, or of a training "
    "run."
)
USAGE = (
    "alignlab diagnose --model PATH [--ref PATH] --data PATH_OR_NAME [--split S] [--beta 0.1] [--out DIR] "
    "[--batch-size N] [--bf16] [--max-length N] [--max-prompt-length N] [--max-pairs N]\n"
    "       alignlab diagnose --run RUN_DIR [--beta B] [--out DIR] [--batch-size N] [--bf16] [--max-pairs N]"
)
# model-mode options: a run directory brings its own models and data, so with --run any of these is an error
_MODEL_ONLY = (
    "model",
    "ref",
    "data",
    "split",
    "tokenizer",
    "format",
    "columns",
    "max_length",
    "max_prompt_length",
    "prompt_truncation",
    "response_truncation",
)



def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alignlab diagnose", usage=USAGE, description=DESCRIPTION)
    p.add_argument("--model", help="model: built-in name (alignlab/tiny-llama), directory or hub id")
    p.add_argument(
        "--ref", help="reference model (enables reward accuracy, flip threshold, idealized accuracy)"
    )
    p.add_argument("--data", help="preference data: file, directory or datasets name")
    p.add_argument("--tokenizer", help="tokenizer (default: the model's)")
    add_data_options(p)
    p.add_argument("--run", help="training run directory (config.yaml, checkpoint-<step>/, final/)")
    p.add_argument(
        "--beta",
        type=float,
        default=None,
        help="beta of the DPO loss and flip threshold (default 0.1; --run: the run's beta)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="output directory for diagnose.json and PNGs (default: RUN_DIR/diagnose with --run, ./diagnose "
        "otherwise; a default directory holding an earlier diagnose.json is refused, a named one is replaced)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="pairs per forward (default 16)")
    p.add_argument("--bf16", action="store_true", help="load the models in bfloat16")
    p.add_argument(
        "--max-pairs",
        type=int,
        default=256,
        help="score a seeded random subset of at most N pairs (0: all; default 256)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --max-pairs subset (default 0)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--cache-dir", default=None, help="score cache directory (default: <alignlab cache>/scores)"
    )
    p.add_argument("--no-cache", action="store_true", help="always rescore; read and write no cache")
    return p


def _check_args(args: argparse.Namespace, defaults: argparse.Namespace) -> None:
    if args.run is not None:
        given = [name for name in _MODEL_ONLY if getattr(args, name) != getattr(defaults, name)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise ConfigError(
                f"{flag} cannot be combined with --run: a run's models and data come from its config.yaml"
            )
    else:
        if args.model is None or args.data is None:
            raise ConfigError(
                "diagnose needs --model and --data (or --run RUN_DIR); see alignlab diagnose --help"
            )
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1; got {args.batch_size}")
    if args.max_pairs < 0:
        raise ConfigError(f"--max-pairs must be >= 0 (0: all pairs); got {args.max_pairs}")
    if args.beta is not None and not (math.isfinite(args.beta) and args.beta > 0):
        raise ConfigError(f"--beta must be a number > 0; got {args.beta}")
    if args.run is None:
        check_local_file(args.data)
    if args.device is not None:
        import torch

        try:
            torch.device(args.device)
        except (RuntimeError, ValueError):
            raise ConfigError(
                f"--device '{args.device}' is not a torch device (e.g. cpu, cuda, cuda:1)"
            ) from None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _print_summary(summary: Mapping[str, Any], header: str, console: Console) -> None:
    from alignlab.diagnostics.flips import GROUPS
    from alignlab.diagnostics.plots import GROUP_LABELS

    console.print(header)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("note")
    acc = summary["ranking_accuracy"]
    table.add_row("pairs scored", str(summary["n_pairs"]), "")
    table.add_row("ranking accuracy R", _pct(acc["raw"]), "model alone, strict (ties wrong)")
    table.add_row("length-normalised R~", _pct(acc["length_normalized"]), "per-token mean log-probs")
    no_ref = "needs --ref"
    ref_acc = summary["ref_ranking_accuracy"]
    table.add_row(
        "reference R / R~",
        "n/a" if ref_acc is None else f"{_pct(ref_acc['raw'])} / {_pct(ref_acc['length_normalized'])}",
        no_ref if ref_acc is None else "",
    )
    table.add_row(
        "reward accuracy",
        _pct(summary["reward_accuracy"]),
        no_ref if summary["reward_accuracy"] is None else "what DPO trainers log (Remark 2.5)",
    )
    beta = summary["beta"]
    for key, label in (
        ("mean_dpo_loss", f"mean DPO loss (β={beta:g})"),
        ("mean_flip_threshold", f"mean flip threshold f(c) (β={beta:g})"),
    ):
        value = summary[key]
        table.add_row(label, "n/a" if value is None else f"{value:.4f}", no_ref if value is None else "")
    groups = summary["flip_groups"]
    if groups is not None:
        for group in GROUPS:
            table.add_row(
                f"  {GROUP_LABELS[group]}",
                _pct(groups["fractions"][group]),
                f"{groups['counts'][group]} pairs",
            )
        table.add_row("  flipped (of ref-incorrect)", _pct(groups["flipped_fraction"]), "")
    gap = summary["alignment_gap"]
    if gap is None:
        table.add_row("idealized accuracy R*", "n/a", "see below")
    else:
        excluded = f"{gap['n_tied_excluded']} tied pairs excluded"
        if summary["alpha"].get("n_undefined_excluded"):
            excluded += f", {summary['alpha']['n_undefined_excluded']} without votes"
        for variant, label in (("raw", "R"), ("normalized", "R~")):
            g = gap[variant]
            if g is None:
                continue
            table.add_row(
                f"idealized {label}* min/median/max",
                f"{_pct(g['idealized_min'])} / {_pct(g['idealized_median'])} / {_pct(g['idealized_max'])}",
                f"β ∈ {{{', '.join(f'{b:g}' for b in gap['betas'])}}}",
            )
            table.add_row(
                f"alignment gap ({label}, median)",
                _pct(g["gap_median"]),
                excluded,
            )
    console.print(table)
    if summary["alpha"]["message"]:
        console.print(summary["alpha"]["message"])


def _print_run(report: Mapping[str, Any], console: Console) -> None:
    from alignlab.diagnostics.flips import GROUPS

    rows = report["checkpoints"]
    console.print(f"{report['run']} ({report['method']}): {report['n_pairs']} pairs of {report['data']}, "
                  f"β={report['beta']:g}")
    table = Table()
    for column in ("step", "checkpoint", "R", *("cc", "ci", "ic", "ii"), "flipped"):
        table.add_column(column, justify="left" if column == "checkpoint" else "right")
    for row in rows:
        table.add_row(
            str(row["step"]),
            row["label"],
            _pct(row["ranking_accuracy"]),
            *(_pct(row["fractions"][g]) for g in GROUPS),
            _pct(row["flipped_fraction"]),
        )
    console.print(table)
    console.print(
        "cc/ci/ic/ii: reference correct/incorrect -> model correct/incorrect (strict); "
        "flipped = ic / (ic + ii)"
    )
    last = rows[-1]["flipped_fraction"]
    console.print(f"flipped at the last checkpoint: {_pct(last)} of the pairs the reference ranked wrongly")


def main(argv: Sequence[str]) -> int:
    """Entry point of `alignlab diagnose`; returns the exit code (0, or 2 for an argparse usage error).

    User errors raise AlignlabError; alignlab.cli.main prints them (one line, exit 2), or re-raises with --debug.
    """
    parser = _parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse already printed usage and the error (or --help)
        return int(exc.code or 0)
    console = Console(width=max(Console().width, 110), soft_wrap=False)
    _check_args(args, parser.parse_args([]))
    spec = None
    if args.run is None:
        spec = data_spec(args)
    from alignlab.diagnostics.diagnose import ScoringOptions, diagnose_model, diagnose_run

    options = ScoringOptions(bf16=args.bf16, batch_size=args.batch_size, device=args.device,
                             cache=not args.no_cache, cache_dir=args.cache_dir)
    result: DiagnoseResult
    if args.run is not None:
        result = diagnose_run(args.run, beta=args.beta, out=args.out, max_pairs=args.max_pairs, seed=args.seed,
                              options=options)
        _print_run(result.report, console)
    else:
        result = diagnose_model(
            args.model, args.data, ref=args.ref, tokenizer=args.tokenizer, spec=spec,
            beta=0.1 if args.beta is None else args.beta,
            out=args.out, max_pairs=args.max_pairs, seed=args.seed, options=options)
        report = result.report
        _print_summary(report, f"{args.model} on {args.data} ({report['n_pairs']} of {result.n_kept} pairs)",
                       console)
        if args.ref is None:
            console.print("no plot: the DPO loss vs reference log-ratio plot needs --ref")
    console.print(f"wrote {result.json_path}" + "".join(f", {p}" for p in result.report["plots"]))
    return 0


__all__ = ["USAGE", "main"]
