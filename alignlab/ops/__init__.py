"""Token-level tensor math: everything that touches a [B, T, V] tensor lives here.

`token_stats` is the plain implementation over full logits (the reference); `chunked` computes the same
per-sequence statistics from hidden states and the lm_head weight one [tokens, vocabulary slice] tile at a time,
tiles sized by a memory budget (`tile_shape`).
"""

from alignlab.ops.chunked import (
    DEFAULT_CHUNK_BYTES,
    SequenceStats,
    chunked_argmax,
    chunked_sequence_stats,
    head_logits,
    plain_sequence_stats,
    tile_shape,
)
from alignlab.ops.token_stats import (
    KL_DIRECTIONS,
    response_lengths,
    sequence_entropy,
    sequence_kl,
    sequence_logps,
    shift_labels,
    token_entropy,
    token_kl,
    token_logps,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "KL_DIRECTIONS",
    "SequenceStats",
    "chunked_argmax",
    "chunked_sequence_stats",
    "head_logits",
    "plain_sequence_stats",
    "response_lengths",
    "sequence_entropy",
    "sequence_kl",
    "sequence_logps",
    "shift_labels",
    "tile_shape",
    "token_entropy",
    "token_kl",
    "token_logps",
]
