"""High-level entry points: source -> validated records -> tokenized examples + DataReport."""

from __future__ import annotations

from typing import Any

from alignlab.data.report import DataReport
from alignlab.data.tokenization import (
    check_lengths,
    eos_token_id,
    tokenize_preference,
    tokenize_sft,
    tokenize_unpaired,
)
from alignlab.data.validate import data_error, load_and_normalize
from alignlab.errors import DataError


def load_preference_data(
    source: Any,
    tokenizer: Any,
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    format: str = "auto",
    max_length: int = 512,
    max_prompt_length: int = 256,
    prompt_truncation: str = "keep_end",
    response_truncation: str = "truncate",
    shuffle_seed: int | None = None,
    limit: int | None = None,
    data_files: Any = None,
) -> tuple[list[dict[str, Any]], DataReport]:
    """Load, validate and tokenize preference pairs.

    Every record is validated before anything is tokenized; any invalid record raises one DataError (first
    error + "(and N more errors)", all of them on ``.errors``). Returns (examples, report); each example is
    ``{"prompt_input_ids", "chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels":
    list[int], "index": int, "where": str, "eos_dropped": bool}`` plus ``"alpha"`` / ``"votes"`` when the record
    has them and ``"pair"`` (chosen, rejected response positions) for ranking records. *_input_ids are full sequences
    (prompt + response), labels are aligned and -100 on the prompt.
    """
    return _load("preference", source, tokenizer, split=split, columns=columns, format=format,
                 max_length=max_length, max_prompt_length=max_prompt_length, prompt_truncation=prompt_truncation,
                 response_truncation=response_truncation, shuffle_seed=shuffle_seed, limit=limit,
                 data_files=data_files)


def load_sft_data(
    source: Any,
    tokenizer: Any,
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    format: str = "auto",
    max_length: int = 512,
    max_prompt_length: int = 256,
    prompt_truncation: str = "keep_end",
    response_truncation: str = "truncate",
    sft_turns: str = "all",
    shuffle_seed: int | None = None,
    limit: int | None = None,
    data_files: Any = None,
) -> tuple[list[dict[str, Any]], DataReport]:
    """Load, validate and tokenize SFT data; preference data trains on its chosen side (ranking: best
    response).

    Returns (examples, report); each example is ``{"input_ids", "labels": list[int], "index": int, "where": str,
    "eos_dropped": bool}``. Validation happens before tokenization, as in load_preference_data.
    """
    return _load("sft", source, tokenizer, split=split, columns=columns, format=format, max_length=max_length,
                 max_prompt_length=max_prompt_length, prompt_truncation=prompt_truncation,
                 response_truncation=response_truncation, shuffle_seed=shuffle_seed, limit=limit,
                 data_files=data_files, sft_turns=sft_turns)


def load_unpaired_data(
    source: Any,
    tokenizer: Any,
    *,
    split: str = "train",
    columns: dict[str, str] | None = None,
    format: str = "auto",
    max_length: int = 512,
    max_prompt_length: int = 256,
    prompt_truncation: str = "keep_end",
    response_truncation: str = "truncate",
    shuffle_seed: int | None = None,
    limit: int | None = None,
    data_files: Any = None,
) -> tuple[list[dict[str, Any]], DataReport]:
    """Load, validate and tokenize unpaired preference data (KTO): ``prompt``, ``completion``, boolean
    ``label`` records (format "unpaired").

    Validation happens before tokenization, as in load_preference_data. Returns (examples, report); each
    example is ``{"prompt_input_ids", "input_ids", "labels": list[int], "label": bool, "index": int, "where":
    str, "eos_dropped": bool}``: input_ids is the full sequence (prompt + completion), labels aligned and -100
    on the prompt. The order is the source's (after ``shuffle_seed``); it matters for KTO, whose KL
    completions are the neighbours' within a batch (``collate_unpaired``).
    """
    return _load("unpaired", source, tokenizer, split=split, columns=columns, format=format,
                 max_length=max_length, max_prompt_length=max_prompt_length, prompt_truncation=prompt_truncation,
                 response_truncation=response_truncation, shuffle_seed=shuffle_seed, limit=limit,
                 data_files=data_files)


def _load(task: str, source: Any, tokenizer: Any, *, split: str, columns: dict[str, str] | None, format: str,
          max_length: int, max_prompt_length: int, prompt_truncation: str, response_truncation: str,
          shuffle_seed: int | None, limit: int | None, data_files: Any, sft_turns: str = "all"):
    """Validate every record, then tokenize: the shared body of the entry points."""
    check_lengths(max_length, max_prompt_length, prompt_truncation, response_truncation)
    eos_token_id(tokenizer)
    extra = {"sft_turns": sft_turns} if task == "sft" else {}
    result, n = load_and_normalize(source, split=split, columns=columns, format=format, data_files=data_files,
                                   task=task, shuffle_seed=shuffle_seed, limit=limit, **extra)
    if result.errors:
        raise data_error(result.errors)
    if not result.items:
        what = {"preference": "preference pairs", "sft": "SFT examples", "unpaired": "unpaired examples"}[task]
        raise DataError(f"{source}: no {what} (split '{split}')")
    report = DataReport(format=result.format, n_records=n, n_identical_pairs=result.n_identical_pairs,
                        warnings=list(result.warnings))
    tokenize = {"preference": tokenize_preference, "sft": tokenize_sft, "unpaired": tokenize_unpaired}[task]
    examples = tokenize(result.items, tokenizer, report, max_length=max_length, max_prompt_length=max_prompt_length,
                        prompt_truncation=prompt_truncation, response_truncation=response_truncation, **extra)
    return examples, report
