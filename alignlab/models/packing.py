"""Prefix sharing and packing: the batch as packed rows under a block attention mask (Wang & Hegde, arXiv 2410.20305).

A batch has two views. The logical one — S sequences right-padded to [S, L] — is what every statistic is defined
on, and is exactly the padded batch. The physical one — R rows [R, T] built by `alignlab.data.collate` — is what
the model runs: segments of sequences that share a prefix (a pair's prompt, stored once: `[prompt; chosen tail;
rejected tail]`), or sequences alone, packed into rows without padding between them. Query token q attends key
token k of the same row iff

    segment(k) == segment(q)  and  k <= q  and  (branch(k) == 0 or branch(k) == branch(q))
    [and position(q) - position(k) < w on a sliding-window layer of window w]

with each token at its position in its own sequence (a tail continues after the prefix, a segment restarts at
0). Each token then sees exactly the tokens, at exactly the positions, that it sees in its own padded row, so
its hidden state is the padded path's; the rows' hidden states gathered by `gather_index` are the logical
batch's hidden states, and the rejected response's first token is predicted from the last prompt position, as
the chosen one's is. Gradients flow back through the gather, summing at shared positions what the two padded rows
would contribute.

The mask goes to the model as a 4D tensor (bool for SDPA, additive float for eager attention), or as a dict by
layer type for models with sliding-window layers; transformers passes a 4D mask through unchanged. Whether a
model honours it is not assumed: `alignlab.models.causal_lm.packed_layout_problem` runs a probe once per model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignlab.data.collate import PACKED_KEYS

# attention implementations whose mask is a dense 4D tensor (flash attention takes none; flex a BlockMask)
MASKED_ATTENTION = {"sdpa": "bool", "eager": "additive"}
# layer types whose attention this module can mask (a recurrent layer carries state across sequences)
ATTENTION_LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass(frozen=True)
class PackedLayout:
    """The physical rows of a batch: input_ids, labels, position_ids, segment_ids, branch_ids [R, T] long and
    gather_index [S, L] long (flat indices into R * T). See the module docstring."""

    input_ids: Tensor
    labels: Tensor
    position_ids: Tensor
    segment_ids: Tensor
    branch_ids: Tensor
    gather_index: Tensor

    @classmethod
    def from_batch(cls, batch: Mapping[str, Any], prefix: str = "") -> PackedLayout | None:
        """The layout carried by a collated batch (`{prefix}packed_*` keys), or None for a plain padded batch."""
        if f"{prefix}packed_input_ids" not in batch:
            return None
        return cls(*(batch[f"{prefix}packed_{key}"] for key in PACKED_KEYS))

    @property
    def shared(self) -> bool:
        """Whether some sequences share a prefix (a tail exists)."""
        return bool((self.branch_ids > 0).any())

    def to_logical(self, x: Tensor) -> Tensor:
        """Row values [R, T, ...] -> the logical batch's [S, L, ...] (differentiable gather)."""
        flat = x.reshape(-1, *x.shape[2:])
        return flat.index_select(0, self.gather_index.reshape(-1)).view(*self.gather_index.shape, *x.shape[2:])


def block_attention_mask(layout: PackedLayout, *, sliding_window: int | None = None) -> Tensor:
    """Which keys each query attends (module docstring): bool [R, 1, T, T], True = attend."""
    seg, branch, pos = layout.segment_ids, layout.branch_ids, layout.position_ids
    t = torch.arange(seg.shape[1], device=seg.device)
    allowed = (seg.unsqueeze(2) == seg.unsqueeze(1)) & (t.unsqueeze(1) >= t.unsqueeze(0))
    key_branch = branch.unsqueeze(1)
    allowed &= (key_branch == 0) | (key_branch == branch.unsqueeze(2))
    if sliding_window is not None:
        allowed &= (pos.unsqueeze(2) - pos.unsqueeze(1)) < sliding_window
    return allowed.unsqueeze(1)


def mask_plan(config: Any) -> tuple[str | None, dict[str, int | None] | None]:
    """How a model's (text) config takes the block mask: (problem, plan).

    plan maps the key the decoder looks a mask up by ("full_attention", "sliding_attention"; "" for one mask
    for every layer) to the sliding window of that mask (None: full causal). problem is one line saying why the
    model cannot take it (then plan is None)."""
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in MASKED_ATTENTION:
        return (f"attention implementation '{impl}' takes no 4D attention mask "
                f"(alignlab masks {', '.join(MASKED_ATTENTION)})"), None
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types:
        others = sorted(set(layer_types) - set(ATTENTION_LAYER_TYPES))
        if others:
            return (f"layer type {', '.join(repr(o) for o in others)} is not plain attention (a state may cross "
                    "sequence boundaries)"), None
        if "sliding_attention" in layer_types:
            if window is None:
                return "sliding-attention layers without a sliding_window in the config", None
            return None, {"full_attention": None, "sliding_attention": int(window)}
        return None, {"": None}
    return None, {"": int(window) if window is not None else None}  # Mistral, Phi-3: every layer slides


def attention_masks(config: Any, layout: PackedLayout, dtype: torch.dtype) -> Tensor | dict[str, Tensor]:
    """The decoder's `attention_mask` argument for the layout under a model's (text) config: one 4D mask
    [R, 1, T, T] or a dict by layer type (mask_plan); bool for SDPA, additive (0 / finfo(dtype).min) for eager
    attention. Raises ValueError with mask_plan's problem when the model cannot take one."""
    problem, plan = mask_plan(config)
    if problem is not None:
        raise ValueError(problem)
    additive = MASKED_ATTENTION[getattr(config, "_attn_implementation", None) or "eager"] == "additive"
    masks = {}
    for key, window in plan.items():
        allowed = block_attention_mask(layout, sliding_window=window)
        if additive:
            allowed = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
                ~allowed, torch.finfo(dtype).min)
        masks[key] = allowed
    return masks.get("", masks)


__all__ = ["ATTENTION_LAYER_TYPES", "MASKED_ATTENTION", "PackedLayout", "attention_masks", "block_attention_mask",
           "mask_plan"]
