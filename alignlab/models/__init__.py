"""Causal LMs as (final hidden states, output head): the one place that runs a model for log-probs.

Training (policy, reference, precomputed reference, IFT), the scoring engine, `alignlab score` and generation
scoring all go through `causal_lm`, so there is one forward to hidden states and one head definition;
`batch_scores` is the one loop that scores a list of tokenized examples in batches.
"""

from alignlab.models.batch_scores import is_paired, score_batches
from alignlab.models.causal_lm import (
    HEAD_TRANSFORM_KEYS,
    AdapterDisabledTrunk,
    OutputHead,
    Trunk,
    base_model,
    check_input_embeddings,
    check_output_head,
    greedy_next_tokens,
    head_transform,
    output_head,
    packed_layout_problem,
    sequence_stats,
    unwrap_trunk,
)
from alignlab.models.packing import PackedLayout

__all__ = [
    "HEAD_TRANSFORM_KEYS",
    "AdapterDisabledTrunk",
    "OutputHead",
    "PackedLayout",
    "Trunk",
    "base_model",
    "check_input_embeddings",
    "check_output_head",
    "greedy_next_tokens",
    "head_transform",
    "is_paired",
    "output_head",
    "packed_layout_problem",
    "score_batches",
    "sequence_stats",
    "unwrap_trunk",
]
