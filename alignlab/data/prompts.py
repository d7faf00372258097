"""Prompts of a data source, for sampling (online rounds): the distinct prompts, in first-seen order.

A source is read with its DataSpec as training reads it (split, columns, shuffling, limit). Two kinds of records:
- prompt-only records: a ``prompt`` field (through the column map) and none of the fields that make a record
  another format (``chosen``, ``rejected``, ``completion``, ``messages``, ``text``, ``responses``). The prompt
  is a non-empty string or a list of messages ending on the user turn it asks to answer; other fields (an id)
  are ignored.
- every format the trainer reads (``alignlab.data.formats``): the prompt of each pair, SFT or unpaired example
  (a ``messages`` conversation: the turns before its last assistant turn). ``text`` records hold no prompt and
  are an error, and so are ``tokenized`` records without a ``prompt`` text.
Every record is validated before any prompt is returned; a bad record raises one DataError naming its file and
line (or record index) and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from alignlab.data.formats import (
    SFT_FORMATS,
    UNPAIRED_FORMATS,
    Content,
    _detect_dataset_format,
    _Fields,
    _Problem,
    _prompt,
    check_columns,
    normalize_records,
)
from alignlab.data.sources import read_records
from alignlab.data.spec import DataSpec
from alignlab.data.validate import data_error
from alignlab.errors import DataError

# fields whose presence makes a record a training format rather than a bare prompt
_RESPONSE_FIELDS = ("chosen", "rejected", "completion", "messages", "text", "responses", "chosen_ids",
                    "rejected_ids")
PROMPT_ONLY = "prompt_only"  # read_prompt_source's name for a source of bare prompt records


@dataclass(frozen=True)
class PromptItem:
    """One distinct prompt: a string, or messages ending on a user turn; where its first occurrence is."""

    prompt: Content
    index: int
    where: str

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompt, list)


def _is_prompt_only(data: dict[str, Any], names: dict[str, str]) -> bool:
    fields = _Fields(data, names)
    return fields.has("prompt") and not any(fields.has(name) for name in _RESPONSE_FIELDS)


def _messages_prompt(messages: list[dict[str, str]], where: str) -> list[dict[str, str]]:
    """The turns of a conversation before its last assistant turn (the prompt that turn answers)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt = messages[:last]
    if not prompt or prompt[-1]["role"] != "user":
        raise DataError(f"{where}: field 'messages' has no user turn before its last assistant turn, so no prompt")
    return prompt


def read_prompts(source: Any, spec: DataSpec | None = None, **settings: Any) -> list[PromptItem]:
    """The distinct prompts of `source` read with `spec` (or ``DataSpec(**settings)``), in first-seen order.

    Returns one PromptItem per distinct prompt (equal strings, or equal message lists, are one prompt). Raises
    DataError (one line, naming the first bad record and its field; all errors on ``.errors``) for unreadable or
    invalid records, a ``text`` source, or a source without records.
    """
    return read_prompt_source(source, spec, **settings)[0]


def read_prompt_source(source: Any, spec: DataSpec | None = None,
                       **settings: Any) -> tuple[list[PromptItem], str]:
    """(read_prompts' distinct prompts, the source's format): ``PROMPT_ONLY`` for bare prompt records, else the
    training format detected (or given), e.g. one of ``PREFERENCE_FORMATS`` for a source that holds pairs."""
    spec = DataSpec.of(spec, **settings)
    records, errors = read_records(source, split=spec.split, data_files=spec.data_files,
                                   shuffle_seed=spec.shuffle_seed, limit=spec.limit)
    if errors:
        raise data_error(errors)
    if not records:
        raise DataError(f"{source}: no records (split '{spec.split}')")
    names = check_columns(spec.columns)
    found: list[PromptItem] = []
    if spec.format == "auto" and _is_prompt_only(records[0].data, names):
        fmt = PROMPT_ONLY
        problems = []
        for record in records:
            try:
                if not _is_prompt_only(record.data, names):
                    raise _Problem("has response fields, but the first record is a bare prompt (one format per "
                                   "source)")
                found.append(PromptItem(_prompt(_Fields(record.data, names)), record.index, record.where))
            except _Problem as e:
                problems.append(f"{record.where}: {e}")
        if problems:
            raise data_error(problems)
    else:
        found, fmt = _format_prompts(records, spec, names)
    seen: set[str] = set()
    distinct = []
    for item in found:
        key = json.dumps(item.prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            distinct.append(item)
    return distinct, fmt


def _format_prompts(records: list, spec: DataSpec, names: dict[str, str]) -> tuple[list[PromptItem], str]:
    """(prompts of records in a training format, validated as training validates them; the format)."""
    fmt = _detect_dataset_format(records, names) if spec.format == "auto" else spec.format
    task = "unpaired" if fmt in UNPAIRED_FORMATS else "sft" if fmt in SFT_FORMATS else "preference"
    if fmt == "text":
        raise DataError(f"{records[0].where}: format 'text' holds no prompt to sample from; give prompt records "
                        "({\"prompt\": ...}) or any format with a prompt")
    result = normalize_records(records, format=fmt, columns=names or None, task=task, sft_turns=spec.sft_turns,
                               drop_identical_pairs=False)
    if result.errors:
        raise data_error(result.errors)
    items = []
    for item in result.items:
        prompt = item.prompt
        if fmt == "messages":
            prompt = _messages_prompt(item.messages, item.where)
        if prompt == "":  # a tokenized pair without its text
            raise DataError(f"{item.where}: field '{names.get('prompt', 'prompt')}' is missing; a tokenized pair "
                            "needs its prompt text to sample from")
        items.append(PromptItem(prompt, item.index, item.where))
    return items, fmt


__all__ = ["PROMPT_ONLY", "PromptItem", "read_prompt_source", "read_prompts"]
