"""Collation: right-padded training batches (labels in the Hugging Face convention: -100 is never scored).

Padding: ids with ``pad_token_id``, attention_mask with 0, labels with -100. Labels come from the unpadded
examples, so padding never changes which tokens are scored, and a genuine EOS keeps its label when pad == EOS.

Unpaired (KTO) batches also carry the mismatched KL batch, TRL 1.16's rule (``KTOTrainer._prepare_dataset``):
the completions are rotated by +1 within the batch, so row i pairs prompt i with completion i-1 (mod B):
(x_1, y_1), ..., (x_B, y_B) -> (x_1, y_B), (x_2, y_1), ..., (x_B, y_{B-1}). The KL completions are then the
batch's own completions, each under another prompt (for B >= 2; a batch of one pairs an example with itself, as
TRL's last short chunk does, so KTO needs B >= 2 as TRL requires).

Packed layout (``prefix_sharing`` / ``packing``): the batch above stays as it is — the logical view every
statistic is defined on — and gains ``packed_*`` keys, the physical rows the model runs instead. A segment is a
group of sequences that share their longest common prefix (ids and labels): a pair's prompt, stored once and
followed by each sequence's own tail, ``[prompt; chosen tail; rejected tail]``; or one sequence alone. Without
``packing`` each segment is a row (right-padded to the longest); with it, segments are packed into balanced rows
of at most ``packing_tokens`` tokens with the fewest positions (default budget here: the longest segment, so a
row is never longer than padding would make it; the trainer passes max_length). Per token:
``packed_position_ids`` its position in its own sequence (a tail continues after the prefix; a segment restarts
at 0), ``packed_segment_ids`` (tokens attend only within their segment; row padding forms a segment of its own),
``packed_branch_ids`` (0 on the shared prefix, k on the k-th sequence's tail: a tail sees the prefix and itself,
never another tail). ``packed_gather_index`` [S, L] maps
every logical position to its flat index in the rows ([R * T]; 0 on logical padding), so the hidden states of
the rows gathered by it are the logical batch's, position for position. ``alignlab.models`` builds the block
attention mask and runs the rows.
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


Row = tuple[list[int], list[int]]  # (input_ids, labels) of one sequence
PACKED_KEYS = ("input_ids", "labels", "position_ids", "segment_ids", "branch_ids", "gather_index")


def _common_prefix(seqs: Sequence[Row]) -> int:
    """Length of the longest prefix on which every sequence has the same ids and the same labels."""
    first_ids, first_labels = seqs[0]
    n = min(len(ids) for ids, _ in seqs)
    p = 0
    while p < n and all(ids[p] == first_ids[p] and labels[p] == first_labels[p] for ids, labels in seqs[1:]):
        p += 1
    return p


def _check_packing(packing: bool, packing_tokens: int | None) -> None:
    if packing_tokens is not None:
        if not packing:
            raise ValueError("packing_tokens applies only with packing")
        if isinstance(packing_tokens, bool) or not isinstance(packing_tokens, int) or packing_tokens < 1:
            raise ValueError(f"packing_tokens must be a positive integer or None, got {packing_tokens!r}")


def _balanced_rows(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Segments (their lengths) into rows of at most `budget` tokens with the fewest positions (rows x the longest
    row): for each row count from the least the budget allows, longest first into the least-filled row; a
    segment longer than the budget is a row of its own. Deterministic."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    total, longest = sum(lengths), max(lengths)
    best: list[list[int]] | None = None
    best_positions = 0
    for rows in range(min(len(lengths), max(1, -(-total // budget))), len(lengths) + 1):
        if best is not None and rows * max(longest, -(-total // rows)) >= best_positions:
            break  # no more rows can do better
        bins: list[list[int]] = [[] for _ in range(rows)]
        fill = [0] * rows
        for i in order:
            b = min(range(rows), key=lambda j: (fill[j], j))
            bins[b].append(i)
            fill[b] += lengths[i]
        if any(f > budget and len(members) > 1 for f, members in zip(fill, bins)):
            continue
        if best is None or rows * max(fill) < best_positions:
            best, best_positions = [members for members in bins if members], rows * max(fill)
    assert best is not None  # one segment per row always fits
    return best


def pack_layout(
    groups: Sequence[Sequence[tuple[int, list[int], list[int]]]],
    pad_token_id: int,
    *,
    logical_shape: tuple[int, int],
    packing: bool,
    packing_tokens: int | None = None,
    pad_to_multiple_of: int | None = None,
) -> dict[str, torch.Tensor]:
    """The packed rows of a batch (module docstring): ``packed_input_ids``, ``packed_labels``,
    ``packed_position_ids``, ``packed_segment_ids``, ``packed_branch_ids`` [R, T] long and
    ``packed_gather_index`` [S, L] long, (S, L) = ``logical_shape``.

    groups: the segments, each a list of (logical row, input_ids, labels) whose sequences share their longest
    common prefix (a group of one is a sequence alone). Deterministic: the same groups give the same rows.
    """
    _check_packing(packing, packing_tokens)
    segments = []  # (ids, labels, positions, branches, [(logical row, prefix length, tail offset, length)])
    for group in groups:
        seqs = [(ids, labels) for _, ids, labels in group]
        p = _common_prefix(seqs)
        ids, labels = list(seqs[0][0][:p]), list(seqs[0][1][:p])
        positions, branches, places = list(range(p)), [0] * p, []
        for k, (row, s_ids, s_labels) in enumerate(group, start=1):
            places.append((row, p, len(ids), len(s_ids)))
            ids += s_ids[p:]
            labels += s_labels[p:]
            positions += range(p, len(s_ids))
            branches += [k] * (len(s_ids) - p)
        segments.append((ids, labels, positions, branches, places))
    lengths = [len(s[0]) for s in segments]
    if not packing:
        bins = [[i] for i in range(len(segments))]
    else:
        bins = _balanced_rows(lengths, packing_tokens if packing_tokens is not None else max(lengths))
    t = _padded_length([sum(lengths[i] for i in b) for b in bins], pad_to_multiple_of)
    r = len(bins)
    out = {f"packed_{k}": torch.zeros((r, t), dtype=torch.long) for k in PACKED_KEYS[:-1]}
    out["packed_input_ids"].fill_(int(pad_token_id))
    out["packed_labels"].fill_(IGNORE_INDEX)
    gather = torch.zeros(logical_shape, dtype=torch.long)
    for row, members in enumerate(bins):
        start = 0
        for seg_id, i in enumerate(members):
            ids, labels, positions, branches, places = segments[i]
            span = slice(start, start + len(ids))
            for key, values in (("input_ids", ids), ("labels", labels), ("position_ids", positions),
                                ("branch_ids", branches)):
                out[f"packed_{key}"][row, span] = torch.tensor(values, dtype=torch.long)
            out["packed_segment_ids"][row, span] = seg_id
            base = row * t + start
            for logical_row, p, tail, n in places:
                gather[logical_row, :p] = base + torch.arange(p)  # p <= n: the common prefix
                gather[logical_row, p:n] = base + tail + torch.arange(n - p)
            start += len(ids)
        out["packed_segment_ids"][row, start:] = len(members)  # padding: a segment of its own, never scored
    out["packed_gather_index"] = gather
    return out


def collate_preference(
    examples: Sequence[dict[str, Any]], pad_token_id: int, *, pad_to_multiple_of: int | None = None,
    prefix_sharing: bool = False, packing: bool = False, packing_tokens: int | None = None,
) -> dict[str, torch.Tensor]:
    """Stack B preference examples into one right-padded batch of 2B rows.

    Rows 0..B-1 are chosen_1..B, rows B..2B-1 are rejected_1..B, all padded to one length T (the longest row,
    rounded up to ``pad_to_multiple_of``). Returns ``input_ids`` [2B, T] long, ``attention_mask`` [2B, T]
    long, ``labels`` [2B, T] long (-100 on prompt and padding), ``index`` [B] long, and ``alpha`` [B] float32
    when every example carries one. With ``prefix_sharing`` or ``packing``, also the ``packed_*`` rows (module
    docstring): with ``prefix_sharing`` a pair is one segment, its common prefix (the prompt) stored once.
    """
    if not examples:
        raise ValueError("collate_preference needs at least one example")
    rows = [(e["chosen_input_ids"], e["chosen_labels"]) for e in examples]
    rows += [(e["rejected_input_ids"], e["rejected_labels"]) for e in examples]
    batch = _pad(rows, pad_token_id, _padded_length([len(r[0]) for r in rows], pad_to_multiple_of))
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    if all("alpha" in e for e in examples):
        batch["alpha"] = torch.tensor([e["alpha"] for e in examples], dtype=torch.float32)
    if prefix_sharing or packing:
        b = len(examples)
        groups = ([[(i, *rows[i]), (b + i, *rows[b + i])] for i in range(b)] if prefix_sharing
                  else [[(i, *row)] for i, row in enumerate(rows)])
        batch.update(pack_layout(groups, pad_token_id, logical_shape=tuple(batch["input_ids"].shape),
                                 packing=packing, packing_tokens=packing_tokens,
                                 pad_to_multiple_of=pad_to_multiple_of))
    else:
        _check_packing(packing, packing_tokens)
    return batch


def _packed_rows(batch: dict[str, torch.Tensor], rows: Sequence[Row], pad_token_id: int, packing: bool,
                 packing_tokens: int | None, pad_to_multiple_of: int | None) -> None:
    _check_packing(packing, packing_tokens)
    if packing:
        batch.update(pack_layout([[(i, *row)] for i, row in enumerate(rows)], pad_token_id,
                                 logical_shape=tuple(batch["input_ids"].shape), packing=True,
                                 packing_tokens=packing_tokens, pad_to_multiple_of=pad_to_multiple_of))


def collate_sft(
    examples: Sequence[dict[str, Any]], pad_token_id: int, *, pad_to_multiple_of: int | None = None,
    packing: bool = False, packing_tokens: int | None = None,
) -> dict[str, torch.Tensor]:
    """Right-padded SFT batch: ``input_ids``, ``attention_mask``, ``labels`` [B, T] long, ``index`` [B]
    long; with ``packing`` also the ``packed_*`` rows (module docstring), one segment per sequence."""
    if not examples:
        raise ValueError("collate_sft needs at least one example")
    rows = [(e["input_ids"], e["labels"]) for e in examples]
    batch = _pad(rows, pad_token_id, _padded_length([len(r[0]) for r in rows], pad_to_multiple_of))
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    _packed_rows(batch, rows, pad_token_id, packing, packing_tokens, pad_to_multiple_of)
    return batch


def collate_unpaired(
    examples: Sequence[dict[str, Any]],
    pad_token_id: int,
    *,
    pad_to_multiple_of: int | None = None,
    max_length: int | None = None,
    kl: bool = True,
    packing: bool = False,
    packing_tokens: int | None = None,
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
    ``packing``: also the ``packed_*`` rows of the main batch and ``kl_packed_*`` of the KL batch (module
    docstring), one segment per sequence.
    """
    if not examples:
        raise ValueError("collate_unpaired needs at least one example")
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive integer or None, got {max_length!r}")
    rows = [(e["input_ids"], e["labels"]) for e in examples]
    batch = _pad(rows, pad_token_id, _padded_length([len(r[0]) for r in rows], pad_to_multiple_of))
    batch["desirable"] = torch.tensor([bool(e["label"]) for e in examples], dtype=torch.bool)
    batch["index"] = torch.tensor([e["index"] for e in examples], dtype=torch.long)
    _packed_rows(batch, rows, pad_token_id, packing, packing_tokens, pad_to_multiple_of)
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
    _packed_rows(kl_batch, kl_rows, pad_token_id, packing, packing_tokens, pad_to_multiple_of)
    batch.update({f"kl_{k}": v for k, v in kl_batch.items()})
    return batch
