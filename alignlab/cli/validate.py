"""`alignlab validate-data`: its parser and the report (errors and warnings on stderr, a one-line summary on
stdout, and a hint when the data is valid as another kind: `--sft`, `--unpaired`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignlab.cli.options import COLUMNS_HELP, check_local_file, parse_columns
from alignlab.data import FORMATS, PREFERENCE_FORMATS, SFT_FORMATS, UNPAIRED_FORMATS, validate_data

# A broken file often has the same problem on every line: the first errors say what is wrong, the rest is a count.
MAX_REPORTED_ERRORS = 20
# task -> (its flag, what to call its data, its own formats). SFT also reads pairs (their chosen side), so a pair
# file passing as SFT is not SFT data: a hint needs the format that was detected to be the task's own.
TASKS = {
    "preference": ("", "preference", PREFERENCE_FORMATS),
    "sft": ("--sft", "SFT", SFT_FORMATS),
    "unpaired": ("--unpaired", "unpaired preference", UNPAIRED_FORMATS),
}


def _hint(args: argparse.Namespace, task: str, columns: dict[str, str] | None, name: str) -> str | None:
    """`<name> is valid SFT data (format 'messages'): pass --sft` when the source fails as `task` but passes as
    another task in one of that task's own formats; None otherwise."""
    for other in ("unpaired", "sft", "preference"):
        if other == task:
            continue
        result = validate_data(args.source, split=args.split, columns=columns, format=args.format, task=other)
        flag, label, formats = TASKS[other]
        if result.ok and result.format in formats:
            current = TASKS[task][0]
            action = f"drop {current}" if not flag else f"pass {flag}" + (f" instead of {current}" if current else "")
            return f"hint: {name} is valid {label} data (format '{result.format}'): {action}"
    return None


def main(argv: list[str] | None = None) -> int:
    """``alignlab validate-data PATH [--split S] [--format F] [--columns a=b,...] [--sft | --unpaired]``; exit 0
    valid, 2 invalid.

    Prints the first 20 errors verbatim, the number of further errors, the warnings and, when the data is valid as
    another kind, the flag to pass, all on stderr; then a one-line summary on stdout. A bad option or a missing
    file raises AlignlabError; alignlab.cli.main prints it as one line, exit 2.
    """
    parser = argparse.ArgumentParser(
        prog="alignlab validate-data", description="Check a preference or SFT data source before training."
    )
    parser.add_argument("source", help="a .jsonl/.json/.parquet file, a directory, or a datasets name")
    parser.add_argument("--split", default="train")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    parser.add_argument("--columns", default=None, help=COLUMNS_HELP)
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--sft", action="store_true", help="validate as SFT data (preference data: chosen side)")
    kind.add_argument("--unpaired", action="store_true",
                      help="validate as unpaired preference data (prompt, completion, label: KTO)")
    args = parser.parse_args(argv)
    columns = parse_columns(args.columns)
    check_local_file(args.source)
    task = "sft" if args.sft else "unpaired" if args.unpaired else "preference"
    # Problems in the data are this command's report (one line each, exit 2); an AlignlabError here means the
    # source itself could not be read and goes to the CLI's one-line error.
    result = validate_data(args.source, split=args.split, columns=columns, format=args.format, task=task)
    for line in result.errors[:MAX_REPORTED_ERRORS]:
        print(line, file=sys.stderr)
    if len(result.errors) > MAX_REPORTED_ERRORS:
        print(f"... and {len(result.errors) - MAX_REPORTED_ERRORS} more errors", file=sys.stderr)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    name = Path(args.source).name if Path(args.source).exists() else args.source
    if not result.ok:
        hint = _hint(args, task, columns, name)
        if hint is not None:
            print(hint, file=sys.stderr)
    status = "OK" if result.ok else f"{len(result.errors)} errors"
    warnings = f"{len(result.warnings)} warnings"
    print(f"{name}: {result.n_records} records, format '{result.format}': {status}, {warnings}")
    return 0 if result.ok else 2


__all__ = ["MAX_REPORTED_ERRORS", "main"]
