"""High-level entry points: source -> validated records -> tokenized examples + DataReport.

Each loader takes its settings as one ``DataSpec`` (``alignlab.data.spec``), or as keywords naming its fields.
"""

from __future__ import annotations

from typing import Any

from alignlab.data.report import DataReport
from alignlab.data.spec import DataSpec
from alignlab.data.tokenization import eos_token_id, tokenize_preference, tokenize_sft, tokenize_unpaired
from alignlab.data.validate import data_error, load_and_normalize
from alignlab.errors import ConfigError, DataError


def load_preference_data(
    source: Any, tokenizer: Any, spec: DataSpec | None = None, **settings: Any
) -> tuple[list[dict[str, Any]], DataReport]:
    """Load, validate and tokenize preference pairs with ``spec`` (or ``DataSpec(**settings)``).

    Every record is validated before anything is tokenized; any invalid record raises one DataError (first
    error + "(and N more errors)", all of them on ``.errors``). Returns (examples, report); each example is
    ``{"prompt_input_ids", "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels":
    list[int], "index": int, "where": str, "eos_dropped": bool}`` plus ``"alpha"`` / ``"votes"`` when the record
    has them and ``"pair"`` (chosen, rejected response positions) for ranking records. *_input_ids are full sequences
    (prompt + response), labels are aligned and -100 on the prompt.
    """
    return _load("preference", source, tokenizer, DataSpec.of(spec, **settings))


def load_sft_data(
    source: Any, tokenizer: Any, spec: DataSpec | None = None, **settings: Any
) -> tuple[list[dict[str, Any]], DataReport]:
    """Load, validate and tokenize SFT data with ``spec`` (or ``DataSpec(**settings)``); preference data trains
    on its chosen side (ranking: best response).

    Returns (examples, report); each example is ``{"input_ids", "labels": list[int], "index": int, "where": str,
    "eos_dropped": bool}``. Validation happens before tokenization, as in load_preference_data.
    """
    return _load("sft", source, tokenizer, DataSpec.of(spec, **settings))


def load_unpaired_data(
    source: Any, tokenizer: Any, spec: DataSpec | None = None, **settings: Any
) -> tuple[list[dict[str, Any]], DataReport]:
    """Load, validate and tokenize unpaired preference data (KTO): ``prompt``, ``completion``, boolean
    ``label`` records (format "unpaired"), with ``spec`` (or ``DataSpec(**settings)``).

    Validation happens before tokenization, as in load_preference_data. Returns (examples, report); each
    example is ``{"prompt_input_ids", "input_ids", "labels": list[int], "label": bool, "index": int, "where":
    str, "eos_dropped": bool}``: input_ids is the full sequence (prompt + completion), labels aligned and -100
    on the prompt. The order is the source's (after ``shuffle_seed``); it matters for KTO, whose KL
    completions are the neighbours' within a batch (``collate_unpaired``).
    """
    return _load("unpaired", source, tokenizer, DataSpec.of(spec, **settings))


_WHAT = {"preference": "preference pairs", "sft": "SFT examples", "unpaired": "unpaired examples"}
_TOKENIZE = {"preference": tokenize_preference, "sft": tokenize_sft, "unpaired": tokenize_unpaired}


def _load(task: str, source: Any, tokenizer: Any, spec: DataSpec) -> tuple[list[dict[str, Any]], DataReport]:
    """Validate every record, then tokenize: the shared body of the entry points."""
    if task != "sft" and spec.sft_turns != "all":
        raise ConfigError(f"sft_turns applies to SFT data, not {_WHAT[task]}")
    eos_token_id(tokenizer)
    result, n = load_and_normalize(source, spec, task=task)
    if result.errors:
        raise data_error(result.errors)
    if not result.items:
        raise DataError(f"{source}: no {_WHAT[task]} (split '{spec.split}')")
    report = DataReport(format=result.format, n_records=n, n_identical_pairs=result.n_identical_pairs,
                        n_dropped_identical=result.n_dropped_identical, warnings=list(result.warnings))
    examples = _TOKENIZE[task](result.items, tokenizer, report, spec)
    if not examples:
        raise DataError(f"{source}: no example left ({report.changes()}); raise max_length "
                        f"(now {spec.max_length}) or use response_truncation: truncate")
    return examples, report
