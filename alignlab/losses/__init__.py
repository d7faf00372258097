"""Preference and fine-tuning losses: pure functions over per-sequence statistics ([B] or [B, T] tensors).

Each returns un-reduced per-example losses (and, for pair methods, the chosen / rejected rewards it reports);
the caller reduces. No model, tokenizer or config object enters a loss.
"""

from alignlab.losses.dpo import dpo_loss, reference_scaled_dpo_loss
from alignlab.losses.dpo_variants import LOSS_TYPES as DPO_LOSS_TYPES
from alignlab.losses.dpo_variants import BCORewardMean
from alignlab.losses.fdpo import fdpo_loss
from alignlab.losses.ift import future_discounted_sum, ift_loss
from alignlab.losses.orpo import orpo_loss
from alignlab.losses.sft import sft_loss
from alignlab.losses.simpo import simpo_loss
from alignlab.losses.tdpo import tdpo_loss

__all__ = [
    "DPO_LOSS_TYPES",
    "BCORewardMean",
    "dpo_loss",
    "fdpo_loss",
    "future_discounted_sum",
    "ift_loss",
    "orpo_loss",
    "reference_scaled_dpo_loss",
    "sft_loss",
    "simpo_loss",
    "tdpo_loss",
]
