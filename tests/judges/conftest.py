"""A tiny byte-level tokenizer and random GPT-2 sequence classifiers built from config (no hub access)."""

from __future__ import annotations

import pytest
import torch

SENTENCES = [
    "the cat sat on the mat",
    "a helpful answer explains the reason",
    "preference learning ranks responses",
    "the model prefers the chosen reply over the rejected one",
]


@pytest.fixture(scope="session")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def gpt2_classifier(tokenizer, num_labels: int):
    """A random 2-layer GPT2ForSequenceClassification (seeded) in eval mode."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2, num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return GPT2ForSequenceClassification(config).eval()


@pytest.fixture(scope="session")
def classifier_dir(tokenizer, tmp_path_factory):
    """A saved 1-output reward model with its tokenizer: a directory load_judge reads as `rm:DIR`."""
    directory = tmp_path_factory.mktemp("reward-model")
    tokenizer.padding_side = "right"
    gpt2_classifier(tokenizer, num_labels=1).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
