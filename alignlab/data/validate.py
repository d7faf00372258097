"""Validation before any tokenization: every record of a source is checked and all problems are reported at
once.

Each error is one line, ``<where>: <what>``, e.g. ``data/train.jsonl line 7: field 'chosen' is missing``.
``validate_data`` returns them; the loaders raise one DataError (the first error, plus "(and N more errors)",
with the full list on its ``errors`` attribute) so a malformed file stops before training starts, never
halfway. ``validate_data_main`` is the ``alignlab validate-data`` command.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.data.formats import FORMATS, NormalizeResult, normalize_records
from alignlab.data.sources import read_records
from alignlab.errors import ConfigError, DataError

MAX_REPORTED_ERRORS = 20


@dataclass
class ValidationResult:
    """All one-line errors and aggregated warnings of a source; ``ok`` when there are no errors."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_records: int = 0
    format: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


def data_error(errors: list[str]) -> DataError:
    """One DataError for a list of errors: the first line, '(and N more errors)', the list on ``.errors``."""
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    err = DataError(errors[0] + more)
    err.errors = list(errors)
    return err


def load_and_normalize(
    source: Any,
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    format: str = "auto",
    data_files: Any = None,
    task: str = "preference",
    sft_turns: str = "all",
    shuffle_seed: int | None = None,
    limit: int | None = None,
) -> tuple[NormalizeResult, int]:
    """Read and validate a source; returns (normalised result, number of records read). Never tokenizes."""
    records, read_errors = read_records(
        source, split=split, data_files=data_files, shuffle_seed=shuffle_seed, limit=limit
    )
    result = normalize_records(records, format=format, columns=columns, task=task, sft_turns=sft_turns)
    result.errors = read_errors + result.errors
    return result, len(records)


def validate_data(
    source: Any,
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    format: str = "auto",
    data_files: Any = None,
    task: str = "preference",
) -> ValidationResult:
    """Check every record of ``source`` (see ``read_records`` for sources) without a tokenizer.

    task="preference" expects preference pairs; task="sft" accepts SFT formats and preference data (chosen
    side). Unreadable lines, missing or mistyped fields, empty responses, malformed messages and
    implicit-prompt pairs with no common prefix are errors; identical pairs and pairs whose hh/implicit split
    leaves an empty response are warnings with a count. A format that cannot be detected is an error too.
    """
    try:
        result, n = load_and_normalize(
            source, split=split, columns=columns, format=format, data_files=data_files, task=task
        )
    except DataError as e:
        return ValidationResult(errors=getattr(e, "errors", [str(e)]), format=format)
    if n == 0 and not result.errors:
        result.errors.append(f"{source}: no records")
    return ValidationResult(errors=result.errors, warnings=result.warnings, n_records=n, format=result.format)


def validate_data_main(argv: list[str] | None = None) -> int:
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
    parser.add_argument(
        "--sft", action="store_true", help="validate as SFT data (preference data: chosen side)"
    )
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
        task="sft" if args.sft else "preference",
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
