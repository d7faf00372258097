"""Supervised fine-tuning NLL with an explicit normalisation (the papers' reference codes differ).

  sum        per-sequence loss -S_b           (DPO / TDPO reference code)
  seq_mean   per-sequence loss -S_b / n_b     (IFT reference code; IFT with lambda = gamma = 0)
  token_mean batch loss -sum_b S_b / N_tot, N_tot = response tokens in the whole optimizer step (HF Trainer, TRL)
"""

from __future__ import annotations

from torch import Tensor

NORMALIZATIONS = ("sum", "seq_mean", "token_mean")


def sft_loss(
    logps: Tensor, lengths: Tensor, *, normalization: str = "seq_mean", total_tokens: float | None = None
) -> Tensor:
    """Per-sequence NLL [B] from log-prob sums `logps` [B] and response token counts `lengths` [B].

    For `token_mean` the per-sequence value is -S_b * B / total_tokens, so that the caller's mean over the B rows
    equals the token mean -sum_b S_b / total_tokens. Pass `total_tokens` counted over every micro-batch and rank
    of the optimizer step, which makes accumulation and data parallelism give the same gradient as one big batch.
    """
    if normalization == "sum":
        return -logps
    if normalization == "seq_mean":
        return -logps / lengths.clamp(min=1)
    if normalization == "token_mean":
        total = float(lengths.sum()) if total_tokens is None else float(total_tokens)
        return -logps * (logps.shape[0] / max(total, 1.0))
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


__all__ = ["NORMALIZATIONS", "sft_loss"]
