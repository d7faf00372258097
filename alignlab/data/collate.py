"""Collation: right-padded training batches (labels in the Hugging Face convention: -100 is never scored).

Padding: ids with ``pad_token_id``, attention_mask with 0, labels with -100. Labels come from the unpadded
examples, so padding never changes which tokens are scored, and a genuine EOS keeps its label when pad == EOS.

Unpaired (KTO) batches also carry the mismatched KL batch, TRL 1.16's rule (``KTOTrainer._prepare_dataset``):
the completions are rotated by +1 within the batch, so row i pairs prompt i with completion i-1 (mod B):
(x_1, y_1), ..., (x_B, y_B) -> (x_1, y_B), (x_2, y_1), ..., (x_B, y_{B-1}). The KL completions are then the
batch's own completions, each under another prompt (for B >= 2; a batch of one pairs an example with itself, as
TRL's last short chunk does, so KTO needs B >= 2 as TRL requires).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignlab.data.tokenization import IGNORE_INDEX


def padding_id(tokenizer: Any) -> int:
    """The id that fills padded positions: the tokenizer's pad token, else its EOS (Llama-3, Mistral and others
    ship no pad token), else 0. Any id is correct: padding is masked from attention and never scored."""
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0


def _padded_length(lengths: Sequence[int], pad_to_multiple_of: int | None) -> int:
    t = max(lengths)
    if pad_to_multiple_of is not None:
        if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
        t = -(-t // pad_to_multiple_of) * pad_to_multiple_of
    return t


def _pad(rows: Sequence[tuple[list[int], list[int]]], pad_token_id: int, t: int) -> dict[str, torch.Tensor]:
    n = len(rows)
    input_ids = torch.full((n, t), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((n, t), dtype=torch.long)
    labels = torch.full((n, t), IGNORE_INDEX, dtype=torch.long)
    for i, (ids, lab) in enumerate(rows):
        if len(ids) != len(lab):
            raise ValueError(f"row {i}: input_ids and labels differ in length ({len(ids)} vs {len(lab)})")
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
        labels[i, : len(lab)] = torch.tensor(lab, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def collate_preference(
    examples: Sequence[dict[str, Any]], pad_token_id: int, *, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Stack B preference examples into one right-padded batch of 2B rows.

    Rows 0..B-1 are chosen_1..B, rows B..2B-1 are rejected_1..B, all padded to one length T (the longest row,
    rounded up to ``pad_to_multiple_of``). Returns ``input_ids`` [2B, T] long, ``attention_mask`` [2B, T]
    long, ``labels`` [2B, T] long (-100 on prompt and padding), ``index`` [B] long, and ``alpha`` [B] float32
    when every example carries one.
    """
    if not examples:
        raise ValueError("collate_preference needs at least one example")
    rows = [(e["chosen_input_ids"], e["chosen_labels"]) for e in examples]
    rows += [(e["rejected_input_ids"], e["rejected_labels"]) for e in examples]
    batch = _pad(rows, pad_token_id, _padded_length([len(r[0]) for r in rows], pad_to_multiple_of))
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    if all("alpha" in e for e in examples):
        batch["alpha"] = torch.tensor([e["alpha"] for e in examples], dtype=torch.float32)
    return batch


def collate_sft(
    examples: Sequence[dict[str, Any]], pad_token_id: int, *, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded SFT batch: ``input_ids``, ``attention_mask``, ``labels`` [B, T] long, ``index`` [B]
    long."""
    if not examples:
        raise ValueError("collate_sft needs at least one example")
    rows = [(e["input_ids"], e["labels"]) for e in examples]
    batch = _pad(rows, pad_token_id, _padded_length([len(r[0]) for r in rows], pad_to_multiple_of))
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    return batch


def collate_unpaired(
    examples: Sequence[dict[str, Any]],
    pad_token_id: int,
    *,
    pad_to_multiple_of: int | None = None,
    max_length: int | None = None,
    kl: bool = True,
) -> dict[str, torch.Tensor]:
    """Right-padded batch of B unpaired (KTO) examples plus their mismatched KL batch.

    Returns ``input_ids``, ``attention_mask``, ``labels`` [B, T] long (-100 on prompt and padding), ``desirable``
    [B] bool (the examples' ``label``), ``index`` [B] long and, when ``kl``, ``kl_input_ids``,
    ``kl_attention_mask``, ``kl_labels`` [B, T_kl] long: row i is prompt i + completion (i - 1) mod B (module
    docstring), labelled as that completion is in its own example, padded on its own (T_kl != T in general).
    The pairing depends only on the batch's order, so the caller's sampler fixes it (TRL: sequential).

    max_length: cut KL rows longer than this at the end, as TRL's collator truncates (keep the start). A
    prompt and another example's completion can exceed the budget each example was tokenized under; the
    main rows are left as the loader made them. ``kl=False`` (loss type apo_zero_unpaired) skips the KL batch.
    """
    if not examples:
        raise ValueError("collate_unpaired needs at least one example")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive integer or None, got {max_length!r}")
    rows = [(e["input_ids"], e["labels"]) for e in examples]
    batch = _pad(rows, pad_token_id, _padded_length([len(r[0]) for r in rows], pad_to_multiple_of))
    batch["desirable"] = torch.tensor([bool(e["label"]) for e in examples], dtype=torch.bool)
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    if not kl:
        return batch
    prompts, completions = [], []
    for i, e in enumerate(examples):
        n = len(e["prompt_input_ids"])
        if e["input_ids"][:n] != e["prompt_input_ids"]:
            raise ValueError(f"example {i} ({e.get('where', '?')}): prompt_input_ids is not a prefix of input_ids")
        prompts.append(e["prompt_input_ids"])
        completions.append((e["input_ids"][n:], e["labels"][n:]))
    kl_rows = []
    for i, prompt in enumerate(prompts):
        ids, labels = completions[i - 1]  # i = 0 takes the last completion: a rotation by +1
        ids, labels = prompt + ids, [IGNORE_INDEX] * len(prompt) + labels
        if max_length is not None:
            ids, labels = ids[:max_length], labels[:max_length]
        kl_rows.append((ids, labels))
    kl_batch = _pad(kl_rows, pad_token_id, _padded_length([len(r[0]) for r in kl_rows], pad_to_multiple_of))
    batch.update({f"kl_{k}": v for k, v in kl_batch.items()})
    return batch
