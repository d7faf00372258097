"""Built-in tiny causal LMs, randomly initialised from a seed and cached as ordinary HF model directories.

Each built-in is a config (no pretrained weights): ``alignlab/tiny-llama`` (Llama, 4 layers, hidden 256) and
``alignlab/tiny-gpt2`` (GPT-2, 4 layers, n_embd 256), both over the offline tokenizer's vocabulary. The model
directory also holds the tokenizer files, so ``from_pretrained(dir)`` works for model and tokenizer alike.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from alignlab.assets._cache import artefact_key, cache_dir
from alignlab.assets.tokenizer import DEFAULT_VOCAB_SIZE, tokenizer_key, tokenizer_path
from alignlab.cache import build_dir_atomically
from alignlab.errors import AlignlabError

DEFAULT_MODEL = "alignlab/tiny-llama"


def _llama_config(vocab_size: int, bos: int, eos: int, pad: int) -> PretrainedConfig:
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )


def _gpt2_config(vocab_size: int, bos: int, eos: int, pad: int) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab_size,
        n_embd=256,
        n_layer=4,
        n_head=4,
        n_positions=1024,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )


_CONFIG_FACTORIES: dict[str, Callable[[int, int, int, int], PretrainedConfig]] = {
    "alignlab/tiny-llama": _llama_config,
    "alignlab/tiny-gpt2": _gpt2_config,
}

BUILTIN_MODELS: tuple[str, ...] = tuple(_CONFIG_FACTORIES)


def is_builtin(name: str | None) -> bool:
    """Whether ``name`` is one of ``BUILTIN_MODELS``."""
    return name in _CONFIG_FACTORIES


def check_builtin(name: str) -> None:
    """Raise ``AlignlabError`` listing the built-ins unless ``name`` is one."""
    if not is_builtin(name):
        raise AlignlabError(f"unknown built-in model '{name}'; built-ins are: {', '.join(BUILTIN_MODELS)}")


def model_config(name: str, tokenizer: PreTrainedTokenizerBase) -> PretrainedConfig:
    """The config of built-in ``name`` for ``tokenizer``: vocab ``len(tokenizer)`` and its bos/eos/pad ids."""
    check_builtin(name)
    return _CONFIG_FACTORIES[name](
        len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    )


def build_model(name: str, tokenizer: PreTrainedTokenizerBase, *, seed: int = 0) -> torch.nn.Module:
    """Instantiate built-in ``name`` with fp32 weights drawn from ``torch.manual_seed(seed)``.

    The global RNG state is restored afterwards, so building does not perturb the caller's randomness. Same
    seed (and torch version) gives bitwise identical weights.
    """
    config = model_config(name, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def model_key(name: str, *, seed: int = 0, vocab_size: int = DEFAULT_VOCAB_SIZE) -> str:
    """Cache key of a built-in model.

    Hashes its config dict, the seed and the tokenizer's own key (corpus and all).
    """
    check_builtin(name)
    # The config dict depends on the tokenizer only through ids already covered by the tokenizer key, so
    # placeholder ids here keep the key computable without building the tokenizer.
    config: dict[str, Any] = _CONFIG_FACTORIES[name](vocab_size, 0, 0, 1).to_diff_dict()
    config.pop("transformers_version", None)
    payload = {"name": name, "config": config, "seed": seed, "tokenizer_key": tokenizer_key(vocab_size)}
    return artefact_key(payload)


def model_path(name: str = DEFAULT_MODEL, *, seed: int = 0) -> Path:
    """Path of the cached built-in model.

    Directory of built-in ``name`` initialised with ``seed``; builds it (and the tokenizer) if missing. The
    directory holds safetensors weights, config, generation config and the tokenizer files.
    """
    check_builtin(name)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise AlignlabError(f"seed must be an int, got {seed!r}")
    short = name.split("/", 1)[1]
    target = cache_dir() / "models" / f"{short}-seed{seed}-{model_key(name, seed=seed)[:16]}"
    if target.is_dir():
        return target
    tok_dir = tokenizer_path()

    def _build(tmp: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        model = build_model(name, tokenizer, seed=seed)
        # transformers 5 writes checkpoint files on rank 0 only once torch.distributed is up; here every rank
        # builds a private copy that is renamed into the cache, so whichever rank wins must have written it all
        model.should_save_on_this_rank = lambda is_main_process: True
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a one-off cache build is not a download worth a progress bar
        try:
            model.save_pretrained(tmp)  # safetensors is the default format
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(tmp)
        if not (tmp / "config.json").is_file():
            raise RuntimeError(f"building {name} wrote no config.json to {tmp}")

    return build_dir_atomically(target, _build)
