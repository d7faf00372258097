"""`alignlab validate-data`: its parser and the report (errors verbatim, warnings, a one-line summary)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from alignlab.data import FORMATS, validate_data
from alignlab.errors import ConfigError

# A broken file often has the same problem on every line: the first errors say what is wrong, the rest is a count.
MAX_REPORTED_ERRORS = 20


def main(argv: list[str] | None = None) -> int:
    """``alignlab validate-data PATH [--split S] [--format F] [--columns JSON] [--sft]``; exit 0 valid, 2
    invalid.

    Prints the first 20 errors verbatim, the number of further errors, the warnings, and a one-line summary.
    A bad option (--columns not JSON) raises AlignlabError; alignlab.cli.main prints it as one line, exit 2.
    """
    parser = argparse.ArgumentParser(
        prog="alignlab validate-data", description="Check a preference or SFT data source before training."
    )
    parser.add_argument("source", help="a .jsonl/.json/.parquet file, a directory, or a datasets name")
    parser.add_argument("--split", default="train")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    parser.add_argument(
        "--columns",
        default=None,
        help='JSON mapping of canonical field to source column, e.g. \'{"chosen": "good"}\'',
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--sft", action="store_true", help="validate as SFT data (preference data: chosen side)")
    kind.add_argument("--unpaired", action="store_true",
                      help="validate as unpaired preference data (prompt, completion, label: KTO)")
    args = parser.parse_args(argv)
    try:
        columns = json.loads(args.columns) if args.columns else None
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--columns is not valid JSON ({e.msg}); pass e.g. '{{\"chosen\": \"good\"}}'"
        ) from None
    # Problems in the data are this command's output (one line each, exit 2); an AlignlabError here means the
    # source itself could not be read and goes to the CLI's one-line error.
    result = validate_data(
        args.source,
        split=args.split,
        columns=columns,
        format=args.format,
        task="sft" if args.sft else "unpaired" if args.unpaired else "preference",
    )
    for line in result.errors[:MAX_REPORTED_ERRORS]:
        print(line)
    if len(result.errors) > MAX_REPORTED_ERRORS:
        print(f"... and {len(result.errors) - MAX_REPORTED_ERRORS} more errors")
    for line in result.warnings:
        print(f"warning: {line}")
    name = Path(args.source).name if Path(args.source).exists() else args.source
    status = "OK" if result.ok else f"{len(result.errors)} errors"
    warnings = f"{len(result.warnings)} warnings"
    print(f"{name}: {result.n_records} records, format '{result.format}': {status}, {warnings}")
    return 0 if result.ok else 2


__all__ = ["MAX_REPORTED_ERRORS", "main"]
