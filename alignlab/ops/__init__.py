"""Token-level tensor math: everything that touches a [B, T, V] tensor lives here.

`token_stats` is the plain implementation over full logits (the reference); `chunked` computes the same
per-sequence statistics from hidden states and the lm_head weight one token chunk at a time.
"""

from alignlab.ops.chunked import (
    SequenceStats,
    chunked_argmax,
    chunked_sequence_stats,
    head_logits,
    plain_sequence_stats,
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
    "token_entropy",
    "token_kl",
    "token_logps",
]
