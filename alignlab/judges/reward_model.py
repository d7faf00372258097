"""A reward judge from a Hugging Face sequence-classification model: `RewardModelJudge` and its loader.

torch and transformers are imported inside the functions that use them: `alignlab.judges` is imported by the
command line before its cheap checks, and an HTTP or Python judge needs neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from alignlab.errors import AlignlabError, ConfigError
from alignlab.judges.interface import checked_inputs, checked_rewards

if TYPE_CHECKING:
    import torch


class RewardModelJudge:
    """A reward judge from a Hugging Face sequence-classification model and its tokenizer.

    reward(prompt, completion) = the single logit of a 1-output reward model (label_index None), or
    softmax(logits)[label_index] for a classifier. Texts are format_fn(prompt, completion), plain concatenation
    by default; they are scored in batches of batch_size under no_grad, in eval mode (restored afterwards),
    right-padded (whatever tokenizer.padding_side says, so absolute-position models see the same positions as
    unbatched) with the tokenizer's pad token, which must equal model.config.pad_token_id (the model reads the
    last non-pad token). max_length truncates on the tokenizer's truncation side; None never truncates.
    A reward that is not finite (NaN, inf) is a one-line AlignlabError naming the example (checked_rewards).
    """

    pairwise = False

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        *,
        label_index: int | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        format_fn: Callable[[str, str], str] | None = None,
    ) -> None:
        config = getattr(model, "config", None)
        num_labels = getattr(config, "num_labels", None)
        if num_labels is None:
            raise AlignlabError(
                "the reward model has no config.num_labels; pass a *ForSequenceClassification"
            )
        if num_labels == 1 and label_index is not None:
            raise AlignlabError(
                "label_index applies to classifiers; this reward model has a single output"
            )
        if num_labels > 1 and (label_index is None or not 0 <= label_index < num_labels):
            raise AlignlabError(
                f"the reward model has {num_labels} labels; pass label_index in [0, {num_labels - 1}] "
                f"(the label whose probability is the reward)"
            )
        if tokenizer.pad_token_id is None:
            raise AlignlabError("the judge tokenizer has no pad token; set tokenizer.pad_token")
        model_pad = (
            config.get_text_config().pad_token_id
            if hasattr(config, "get_text_config")
            else config.pad_token_id
        )
        if model_pad != tokenizer.pad_token_id:
            raise AlignlabError(
                f"tokenizer.pad_token_id ({tokenizer.pad_token_id}) differs from the reward model's "
                f"config.pad_token_id ({model_pad}); set them equal so the model finds each text's last token"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise AlignlabError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int)
                                       or max_length < 1):
            raise AlignlabError(f"max_length must be a positive integer or None, got {max_length!r}")
        self.model, self.tokenizer = model, tokenizer
        self.name = f"reward model {getattr(config, '_name_or_path', '') or type(model).__name__}"
        self.label_index, self.batch_size, self.max_length = label_index, batch_size, max_length
        self.format_fn = (
            format_fn if format_fn is not None else (lambda prompt, completion: prompt + completion)
        )

    def score_batch(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """Rewards for [n] (prompt, completion) pairs, as a list of n floats."""
        import torch

        prompts, completions = checked_inputs(prompts=prompts, completions=completions)
        texts = [self.format_fn(prompt, completion) for prompt, completion in zip(prompts, completions)]
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        rewards: list[float] = []
        try:
            with torch.no_grad():
                for start in range(0, len(texts), self.batch_size):
                    batch = self.tokenizer(
                        texts[start : start + self.batch_size],
                        padding=True,
                        # left padding shifts absolute positions (GPT-2) unless position ids are passed
                        padding_side="right",
                        truncation=self.max_length is not None,
                        max_length=self.max_length,
                        return_tensors="pt",
                    ).to(device)
                    logits = self.model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits.float()
                    if self.label_index is None:
                        rewards.extend(logits[:, 0].tolist())
                    else:
                        rewards.extend(logits.softmax(dim=-1)[:, self.label_index].tolist())
        finally:
            self.model.train(was_training)
        # a NaN or inf logit (an overflowing bf16/fp16 forward, damaged weights) stops here, named
        return checked_rewards(rewards, len(texts), self.name)

    def __call__(self, prompt: str, completion: str) -> float:
        """The reward of one completion."""
        return self.score_batch([prompt], [completion])[0]


def load_reward_model_judge(
    name_or_path: str | os.PathLike,
    *,
    label_index: int | None = None,
    batch_size: int = 8,
    max_length: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> RewardModelJudge:
    """A RewardModelJudge of the sequence-classification model at `name_or_path` (a directory or hub id).

    The model loads through `alignlab.assets.load_sequence_classifier` (safetensors only; a checkpoint without a
    trained classification head is refused) onto `device` (default: cuda if available, else cpu) in `dtype`;
    the tokenizer through `alignlab.assets.load_tokenizer` (a missing pad token becomes EOS, and a model config
    without a pad id gets the tokenizer's). `max_length` None cuts texts at the tokenizer's model_max_length when
    it declares a real one. label_index: see RewardModelJudge.
    """
    for field, value, minimum in (("label_index", label_index, 0), ("batch_size", batch_size, 1),
                                  ("max_length", max_length, 1)):
        if (value is not None or field == "batch_size") and (
                isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise ConfigError(f"{field} must be an integer >= {minimum}, got {value!r}")
    for field, value in (("device", device), ("dtype", dtype)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{field} must be text such as 'cpu' / 'bfloat16', got {value!r}")
    from alignlab.assets import load_sequence_classifier, load_tokenizer, resolve_device

    name = os.fspath(name_or_path)
    target = resolve_device(device)
    tokenizer = load_tokenizer(name)
    model = load_sequence_classifier(name, dtype=dtype).to(target)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if max_length is None:
        declared = getattr(tokenizer, "model_max_length", None)
        # tokenizers without a limit declare a huge sentinel (int(1e30)); only a real limit is applied
        max_length = declared if isinstance(declared, int) and declared < 1_000_000 else None
    if label_index is None and model.config.num_labels > 1:
        raise ConfigError(
            f"reward model '{name}' is a classifier with {model.config.num_labels} labels "
            f"({', '.join(str(v) for v in (model.config.id2label or {}).values())}); set label_index, the label "
            "whose probability is the reward"
        )
    return RewardModelJudge(model, tokenizer, label_index=label_index, batch_size=batch_size,
                            max_length=max_length)


__all__ = ["RewardModelJudge", "load_reward_model_judge"]
