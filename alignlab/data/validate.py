"""Validation before any tokenization: every record of a source is checked and all problems are reported at
once.

Each error is one line, ``<where>: <what>``, e.g. ``data/train.jsonl line 7: field 'chosen' is missing``.
``validate_data`` returns them; the loaders raise one DataError (the first error, plus "(and N more errors)",
with the full list on its ``errors`` attribute) so a malformed file stops before training starts, never
halfway. The ``alignlab validate-data`` command (parser and report) is ``alignlab.cli.validate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignlab.data.formats import NormalizeResult, normalize_records
from alignlab.data.sources import read_records
from alignlab.data.spec import DataSpec
from alignlab.errors import DataError


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
    source: Any, spec: DataSpec | None = None, *, task: str = "preference", **settings: Any
) -> tuple[NormalizeResult, int]:
    """Read and validate a source with ``spec`` (or ``DataSpec(**settings)``); returns (normalised result,
    number of records read). Never tokenizes."""
    spec = DataSpec.of(spec, **settings)
    read_warnings: list[str] = []
    records, read_errors = read_records(
        source, split=spec.split, data_files=spec.data_files, shuffle_seed=spec.shuffle_seed, limit=spec.limit,
        warnings=read_warnings,
    )
    result = normalize_records(records, format=spec.format, columns=spec.columns, task=task,
                               sft_turns=spec.sft_turns, drop_identical_pairs=spec.drop_identical_pairs)
    result.errors = read_errors + result.errors
    result.warnings = read_warnings + result.warnings
    return result, len(records)


def validate_data(
    source: Any,
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    format: str = "auto",
    data_files: Any = None,
    task: str = "preference",
    drop_identical_pairs: bool = True,
) -> ValidationResult:
    """Check every record of ``source`` (see ``read_records`` for sources) without a tokenizer.

    task="preference" expects preference pairs; task="sft" accepts SFT formats and preference data (chosen
    side); task="unpaired" expects prompt/completion/label records (KTO; ``label`` a boolean). Unreadable lines, missing or mistyped fields, empty responses, malformed messages and
    implicit-prompt pairs with no common prefix are errors; identical pairs and pairs whose hh/implicit split
    leaves an empty response are warnings with a count (with ``drop_identical_pairs``, a source of nothing but
    identical pairs is an error, as training would have no pair left). A format that cannot be detected, messages
    with an unknown role or out of order, and a local directory without data files are errors too.
    """
    try:
        result, n = load_and_normalize(
            source, split=split, columns=columns, format=format, data_files=data_files, task=task,
            drop_identical_pairs=drop_identical_pairs,
        )
    except DataError as e:
        return ValidationResult(errors=getattr(e, "errors", [str(e)]), format=format)
    if n == 0 and not result.errors:
        result.errors.append(f"{source}: no records")
    return ValidationResult(errors=result.errors, warnings=result.warnings, n_records=n, format=result.format)
