"""The offline tokenizer: byte-level BPE trained on the packaged ``corpus.txt``.

Byte-level pre-tokenization (no prefix space) with the byte-level decoder makes ``decode(encode(s)) == s`` for
every unicode string. Encoding adds no special tokens, so prompt and response ids can be encoded separately
and concatenated. ``<|endoftext|>`` is both BOS and EOS, ``<|pad|>`` is padding, and
``<|im_start|>``/``<|im_end|>`` are extra special tokens for chat markup; no chat template is set (the data
layer supplies its default).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from alignlab.assets._cache import artefact_key, cache_dir
from alignlab.cache import build_dir_atomically

EOS_TOKEN = "<|endoftext|>"
BOS_TOKEN = EOS_TOKEN
PAD_TOKEN = "<|pad|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (EOS_TOKEN, PAD_TOKEN, IM_START_TOKEN, IM_END_TOKEN)

DEFAULT_VOCAB_SIZE = 4096
MODEL_MAX_LENGTH = 2048
# Merges seen fewer times than this are noise from one sentence template.
_MIN_FREQUENCY = 2


def corpus_bytes() -> bytes:
    """The packaged training corpus (UTF-8)."""
    return resources.files("alignlab.assets").joinpath("corpus.txt").read_bytes()


def _tokenizer_params(vocab_size: int) -> dict[str, object]:
    return {
        "kind": "byte-level-bpe",
        "vocab_size": vocab_size,
        "min_frequency": _MIN_FREQUENCY,
        "special_tokens": list(SPECIAL_TOKENS),
        "model_max_length": MODEL_MAX_LENGTH,
    }


def tokenizer_key(vocab_size: int = DEFAULT_VOCAB_SIZE) -> str:
    """Cache key of the tokenizer: hash of the corpus bytes, the training parameters and library versions."""
    payload = {"corpus_sha256": hashlib.sha256(corpus_bytes()).hexdigest(), **_tokenizer_params(vocab_size)}
    return artefact_key(payload)


def build_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on the packaged corpus and wrap it as a ``PreTrainedTokenizerFast``.

    ``vocab_size`` counts the 256 byte symbols, the merges and the 4 special tokens, so ``len(tokenizer)``
    equals it whenever the corpus has enough merges. Deterministic for a given corpus and tokenizers version.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (bytes + specials), got {vocab_size}"
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # Offsets cover the raw text exactly (no trimming of the leading space a token carries).
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=_MIN_FREQUENCY,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = corpus_bytes().decode("utf-8")
    # Paragraphs keep their blank-line separator so newline runs (dialogue turns) get merges too.
    backend.train_from_iterator((para + "\n\n" for para in text.split("\n\n")), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START_TOKEN, IM_END_TOKEN],
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
        add_bos_token=False,
        add_eos_token=False,
        padding_side="right",
    )


def tokenizer_path(vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Path of the cached offline tokenizer.

    Directory of the offline tokenizer (``save_pretrained`` layout); trains and saves it if missing.
    """
    target = cache_dir() / "tokenizers" / f"bpe-{vocab_size}-{tokenizer_key(vocab_size)[:16]}"
    return build_dir_atomically(target, lambda tmp: build_tokenizer(vocab_size).save_pretrained(tmp))
