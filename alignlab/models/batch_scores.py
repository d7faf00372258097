"""The one scoring loop: tokenized examples -> per-sequence statistics, in batches, in input order.

Used by `alignlab score`, the ranking diagnostics' scoring engine, the trainer's precomputed reference and its
flip tracking. Examples are alignlab.data's dicts (pairs: chosen_* / rejected_*; single responses: input_ids,
labels), collated exactly as training collates them (pairs stacked [chosen; rejected], right padding), sorted
longest first (the biggest batch runs first, so an out-of-memory error shows at once, and padding is minimal)
and scored by `sequence_stats`; right padding never reaches a scored position, so the batching changes no value
beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignlab.data import collate_preference, collate_sft
from alignlab.models.causal_lm import sequence_stats
from alignlab.models.packing import PackedLayout
from alignlab.ops import DEFAULT_CHUNK_BYTES


def is_paired(examples: Sequence[Mapping[str, Any]]) -> bool:
    """Whether tokenized examples are preference pairs (chosen and rejected) rather than single sequences."""
    return "chosen_input_ids" in examples[0]


@torch.no_grad()
def score_batches(trunk: nn.Module, examples: Sequence[Mapping[str, Any]], *, pad_id: int,
                  ref: nn.Module | None = None, batch_size: int = 8, chunked: bool = True, chunk_size: int = 1024,
                  chunk_bytes: int | None = DEFAULT_CHUNK_BYTES, kl: bool = False, prefix_sharing: bool = False,
                  packing: bool = False) -> dict[str, Tensor]:
    """Per-sequence statistics of every example under a Trunk (and a reference Trunk), in input order.

    Returns CPU tensors [S, N] with S = 2 for pairs (row 0 chosen, row 1 rejected) and 1 for single sequences:
    "logps" (float64, summed over scored tokens), "tokens" (int64, scored tokens), with `ref` also "ref_logps",
    and with `kl` (needs ref) "kl_forward" = sum_t KL(ref || policy) and "kl_reverse" = sum_t KL(policy || ref).
    batch_size counts examples. The trunks run in eval mode; their previous modes are restored. `prefix_sharing`
    (a pair's prompt once) and `packing` (no padding between sequences): the models run packed rows
    (alignlab.models.packing; the same values), a ConfigError on a model they are not exact on
    (packed_layout_problem).
    """
    if kl and ref is None:
        raise ValueError("kl needs a reference")
    paired = is_paired(examples)
    sides, n = (2 if paired else 1), len(examples)
    keys = ("chosen_input_ids", "rejected_input_ids") if paired else ("input_ids",)
    order = sorted(range(n), key=lambda i: -max(len(examples[i][k]) for k in keys))
    names = ["logps", "tokens"] + (["ref_logps"] if ref is not None else []) + (["kl_forward", "kl_reverse"]
                                                                               if kl else [])
    out = {name: torch.empty(sides, n, dtype=torch.int64 if name == "tokens" else torch.float64)
           for name in names}
    device = next(trunk.parameters()).device
    modes = [(m, m.training) for m in (trunk, ref) if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        for start in range(0, n, batch_size):
            positions = order[start:start + batch_size]
            chunk = [examples[i] for i in positions]
            if paired:
                batch = collate_preference(chunk, pad_id, prefix_sharing=prefix_sharing, packing=packing)
            else:
                batch = collate_sft(chunk, pad_id, packing=packing)
            batch = {k: v.to(device) for k, v in batch.items()}
            ids, mask, labels = (batch[k] for k in ("input_ids", "attention_mask", "labels"))
            stats = sequence_stats(trunk, ids, mask, labels, ref=ref, layout=PackedLayout.from_batch(batch),
                                   chunked=chunked, chunk_size=chunk_size, chunk_bytes=chunk_bytes, kl=kl,
                                   reverse_kl=kl)
            values = {"logps": stats.logps, "tokens": stats.lengths, "ref_logps": stats.ref_logps,
                      "kl_forward": stats.kl, "kl_reverse": stats.reverse_kl}
            cols = torch.tensor(positions)
            for name in names:
                out[name][:, cols] = values[name].detach().to("cpu", out[name].dtype).view(sides, len(positions))
    finally:
        for m, mode in modes:
            m.train(mode)
    return out


__all__ = ["is_paired", "score_batches"]
