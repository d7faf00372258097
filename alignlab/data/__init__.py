"""Data pipeline: records -> validated prompt/response items -> token ids + labels -> padded batches.

Public API:
- ``load_preference_data`` / ``load_sft_data`` / ``load_unpaired_data``: source + tokenizer -> (examples,
  DataReport).
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
from alignlab.data.collate import collate_preference, collate_sft, collate_unpaired, padding_id
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
from alignlab.data.tokenization import IGNORE_INDEX, tokenize_preference, tokenize_sft, tokenize_unpaired
from alignlab.data.validate import ValidationResult, validate_data

SAMPLES_DIR = Path(__file__).parent / "samples"

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "FORMATS",
    "IGNORE_INDEX",
    "PREFERENCE_FORMATS",
    "SAMPLES_DIR",
    "SFT_FORMATS",
    "UNPAIRED_FORMATS",
    "DataReport",
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
