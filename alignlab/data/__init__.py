"""Data pipeline: records -> validated prompt/response items -> token ids + labels -> padded batches.

Public API:
- ``load_preference_data`` / ``load_sft_data`` / ``load_unpaired_data``: source + tokenizer + ``DataSpec`` (the
  settings: split, format, columns, truncation, ...) -> (examples, DataReport).
- ``collate_preference`` / ``collate_sft`` / ``collate_unpaired``: examples -> right-padded tensors
  ([chosen; rejected] stacked; unpaired: the batch and its mismatched KL batch for KTO).
- ``validate_data``: check a source without tokenizing (what ``alignlab validate-data`` reports).
- ``read_records``, ``normalize_records``, ``tokenize_preference``, ``tokenize_sft``, ``tokenize_unpaired``:
  the stages, for callers that need one of them (diagnostics).
- ``DEFAULT_CHAT_TEMPLATE``, ``render_messages``: the chat rendering used where a tokenizer has no template.
- ``SAMPLES_DIR``: the sample data shipped with the package (``pairs.jsonl``, ``sft.jsonl``, ...).

Module docstrings hold the rules: formats.py (formats, detection), tokenization.py (the boundary rule and
truncation), chat.py (template rendering), sources.py (sources, provenance, shuffling).
"""

from pathlib import Path

from alignlab.data.chat import DEFAULT_CHAT_TEMPLATE, render_messages
from alignlab.data.formats import (
    FORMATS,
    PREFERENCE_FORMATS,
    SFT_FORMATS,
    UNPAIRED_FORMATS,
    PreferenceItem,
    SFTItem,
    UnpairedItem,
    normalize_records,
)
from alignlab.data.load import load_preference_data, load_sft_data, load_unpaired_data
from alignlab.data.report import DataReport
from alignlab.data.sources import Record, read_records
from alignlab.data.spec import DataSpec
from alignlab.data.tokenization import IGNORE_INDEX, tokenize_preference, tokenize_sft, tokenize_unpaired
from alignlab.data.validate import ValidationResult, validate_data

SAMPLES_DIR = Path(__file__).parent / "samples"
_COLLATE = ("collate_preference", "collate_sft", "collate_unpaired", "padding_id")


def __getattr__(name: str):
    # collation is the one stage that needs torch: imported on first use, so that reading and checking data
    # (and a config that names a data format) does not pay for torch
    if name in _COLLATE:
        from alignlab.data import collate

        return getattr(collate, name)
    raise AttributeError(f"module 'alignlab.data' has no attribute '{name}'")

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "FORMATS",
    "IGNORE_INDEX",
    "PREFERENCE_FORMATS",
    "SAMPLES_DIR",
    "SFT_FORMATS",
    "UNPAIRED_FORMATS",
    "DataReport",
    "DataSpec",
    "PreferenceItem",
    "Record",
    "SFTItem",
    "UnpairedItem",
    "ValidationResult",
    "collate_preference",
    "collate_sft",
    "collate_unpaired",
    "load_preference_data",
    "load_sft_data",
    "load_unpaired_data",
    "normalize_records",
    "padding_id",
    "read_records",
    "render_messages",
    "tokenize_preference",
    "tokenize_sft",
    "tokenize_unpaired",
    "validate_data",
]
