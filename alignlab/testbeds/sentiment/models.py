"""The testbed's own offline artefacts: a byte-level BPE tokenizer trained on the review corpus, a tiny GPT-2
policy built from a config, and a tiny sentiment classifier (a Hugging Face sequence-classification model).

Both models are ordinary `save_pretrained` directories with their tokenizer, so they load through exactly the
code paths of the real ones: the policy through `alignlab.assets.load_model` / the trainer (as `gpt2-large` would),
the classifier through `AutoModelForSequenceClassification.from_pretrained` + `RewardModelJudge` (as
`siebert/sentiment-roberta-large-english` would, `load_reward_judge`).

Classifier: RoBERTa (siebert's architecture) shrunk to 2 layers of width 64, labels {0: NEGATIVE, 1: POSITIVE},
trained with AdamW on soft targets (label 1 -> [0, 1], 0 -> [1, 0], -1 (no majority) -> [0.5, 0.5]) so that
P(POSITIVE) of a mixed review sits near 0.5. Its reward is P(POSITIVE), as with siebert.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForSequenceClassification,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from alignlab.assets import load_tokenizer
from alignlab.assets.loading import check_safetensors
from alignlab.assets.tokenizer import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN
from alignlab.errors import AlignlabError
from alignlab.judges import RewardModelJudge

CLASSIFIER_MAX_LENGTH = 512  # siebert's (RoBERTa's) limit; the tiny classifier gets the same position table


def build_review_tokenizer(texts: Sequence[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `texts`, with alignlab's special tokens (EOS = BOS, PAD); the same
    conventions as `alignlab.assets.build_tokenizer` (no prefix space, decode(encode(s)) == s), but a vocabulary
    fitted to the reviews, so a word is about one token and the tiny models stay cheap."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS_TOKEN, PAD_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN,
                                   pad_token=PAD_TOKEN, model_max_length=1024, clean_up_tokenization_spaces=False,
                                   padding_side="right")


def build_policy(tokenizer: PreTrainedTokenizerFast, directory: str | Path, *, seed: int, n_layer: int = 2,
                 n_embd: int = 128) -> Path:
    """Save a randomly initialised GPT-2 (`n_layer` layers, width `n_embd`, 4 heads, tied embeddings) and the
    tokenizer to `directory`; weights drawn from `seed` without touching the global RNG."""
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=n_embd, n_layer=n_layer, n_head=4, n_positions=256,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def classifier_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """A copy of `tokenizer` that starts every text with its BOS token, the classification position (RoBERTa's
    <s>): the classifier reads the first token's final state, so that token must be the same for every text."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    bos = tokenizer.bos_token
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                      special_tokens=[(bos, tokenizer.bos_token_id)])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=tokenizer.eos_token,
                                   pad_token=tokenizer.pad_token, model_max_length=CLASSIFIER_MAX_LENGTH,
                                   clean_up_tokenization_spaces=False, padding_side="right")


def _classifier(tokenizer: PreTrainedTokenizerFast, seed: int) -> RobertaForSequenceClassification:
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=128, max_position_embeddings=CLASSIFIER_MAX_LENGTH + 2,
                           pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id, num_labels=2,
                           id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return RobertaForSequenceClassification(config)


def train_classifier(texts: Sequence[str], labels: Sequence[int], tokenizer: PreTrainedTokenizerFast,
                     directory: str | Path, *, seed: int, steps: int = 300, batch_size: int = 32, lr: float = 3e-3,
                     max_length: int = 128) -> Path:
    """Train the tiny classifier on (texts [N], labels [N] in {1, 0, -1}) and save it with its tokenizer
    (`classifier_tokenizer(tokenizer)`).

    Soft-target cross-entropy (module docstring); AdamW, constant lr, batches drawn with `seed`; texts are cut
    to `max_length` tokens for training only (scoring uses CLASSIFIER_MAX_LENGTH).
    """
    if len(texts) != len(labels) or not texts:
        raise AlignlabError(f"classifier training needs as many labels as texts (> 0): {len(texts)} vs {len(labels)}")
    tokenizer = classifier_tokenizer(tokenizer)
    model = _classifier(tokenizer, seed)
    targets = torch.tensor([[0.0, 1.0] if y == 1 else [1.0, 0.0] if y == 0 else [0.5, 0.5] for y in labels])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(texts)))
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:batch_size], order[batch_size:]
        enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        loss = -(targets[batch] * F.log_softmax(logits, -1)).sum(-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if not math.isfinite(loss.item()):
            raise AlignlabError("classifier training diverged (non-finite loss); lower the classifier lr")
    model.eval()
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def positive_label_index(config) -> int:
    """Index of the positive class: the label named POSITIVE or POS (any case) in config.id2label, else index 1
    of a 2-label classifier (LABEL_0 / LABEL_1 checkpoints, IMDb's convention 1 = positive)."""
    num_labels = getattr(config, "num_labels", None)
    id2label = {int(k): str(v).upper() for k, v in (getattr(config, "id2label", None) or {}).items()}
    for index, name in sorted(id2label.items()):
        if name in ("POSITIVE", "POS"):
            return index
    if num_labels == 2:
        return 1
    raise AlignlabError(f"the reward model has labels {sorted(id2label.values()) or num_labels}; it needs a "
                        "POSITIVE label or exactly two labels (index 1 positive)")


def load_reward_judge(name_or_path: str, *, batch_size: int = 32) -> RewardModelJudge:
    """reward(prompt, completion) = P(POSITIVE | prompt + completion) from a sequence-classification model.

    The same path for the tiny stand-in (a local directory) and a hub classifier such as
    siebert/sentiment-roberta-large-english: `AutoModelForSequenceClassification.from_pretrained` and the model's
    own tokenizer (through `alignlab.assets.load_tokenizer`, which sets a missing pad token to EOS; the model's
    config then gets the same pad id). Texts are cut to 512 tokens (RoBERTa's limit).
    """
    tokenizer = load_tokenizer(name_or_path)
    local = os.path.isdir(name_or_path)
    if local:
        check_safetensors(name_or_path)  # a local directory's weights are never unpickled
    try:
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, use_safetensors=local or None)
    except (OSError, ValueError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "yes", "on")
        why = "not a local directory and the hub is offline" if offline and not os.path.exists(name_or_path) \
            else str(exc).strip().splitlines()[0]
        raise AlignlabError(f"cannot load reward model from '{name_or_path}': {why}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    limit = min(CLASSIFIER_MAX_LENGTH, getattr(tokenizer, "model_max_length", CLASSIFIER_MAX_LENGTH))
    return RewardModelJudge(model, tokenizer, label_index=positive_label_index(model.config), batch_size=batch_size,
                            max_length=limit)


__all__ = ["CLASSIFIER_MAX_LENGTH", "build_policy", "build_review_tokenizer", "classifier_tokenizer", "load_reward_judge",
           "positive_label_index", "train_classifier"]
