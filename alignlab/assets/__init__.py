"""Offline assets: the embedded byte-level BPE tokenizer and tiny seeded causal LMs, cached on first use.

Nothing here touches the network. Built-in models (``BUILTIN_MODELS``) are built from a config with seeded
random weights; any other name or path goes to ``transformers`` ``from_pretrained``.
"""

from alignlab.assets._cache import cache_dir
from alignlab.assets.loading import (
    load_model,
    load_sequence_classifier,
    load_tokenizer,
    model_fingerprint,
    resolve,
    resolve_device,
)
from alignlab.assets.models import BUILTIN_MODELS, DEFAULT_MODEL, model_path
from alignlab.assets.tokenizer import build_tokenizer, tokenizer_path

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "build_tokenizer",
    "cache_dir",
    "load_model",
    "load_sequence_classifier",
    "load_tokenizer",
    "model_fingerprint",
    "model_path",
    "resolve",
    "resolve_device",
    "tokenizer_path",
]
