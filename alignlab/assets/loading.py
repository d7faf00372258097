"""One entry point for models and tokenizers.

Built-in names resolve to the offline cache; anything else goes to ``transformers`` ``from_pretrained`` (a
local directory or a hub id), with load failures turned into one-line ``AlignlabError``s.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from alignlab.assets.models import BUILTIN_MODELS, DEFAULT_MODEL, check_builtin, is_builtin, model_path
from alignlab.assets.tokenizer import tokenizer_path
from alignlab.cache import model_fingerprint as location_fingerprint
from alignlab.errors import AlignlabError, ConfigError

_BUILTIN_PREFIX = "alignlab/"


def _is_builtin_like(name: str) -> bool:
    """A name in the ``alignlab/`` namespace that is not a local directory: must be a built-in."""
    return name.startswith(_BUILTIN_PREFIX) and not os.path.exists(name)


def resolve(name_or_path: str | None, *, seed: int = 0) -> str:
    """Map a model name to what ``from_pretrained`` should load.

    ``None`` means ``DEFAULT_MODEL``. A built-in name becomes its cached local directory (built with ``seed``
    if missing). Any other string (a local path or hub id) is returned unchanged. An unknown ``alignlab/...``
    name raises ``AlignlabError`` listing the built-ins.
    """
    name = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    if is_builtin(name):
        return str(model_path(name, seed=seed))
    if _is_builtin_like(name):
        check_builtin(name)
    return name


def model_fingerprint(name_or_path: str | os.PathLike | None, *, seed: int = 0) -> str | None:
    """``alignlab.cache.model_fingerprint`` of what ``name_or_path`` resolves to (a built-in: its directory for
    ``seed``, built if missing), or None for a hub id with no local files."""
    return location_fingerprint(resolve(name_or_path, seed=seed))


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to load models on: `device` checked (a one-line ConfigError when malformed or when CUDA is
    asked for and absent), or cuda when available, else cpu."""
    try:
        target = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as exc:
        raise ConfigError(f"device {device!r}: {str(exc).splitlines()[0]}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device}: CUDA is not available on this machine")
    return target


def _load_error(what: str, name: str, exc: Exception) -> AlignlabError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if not os.path.exists(name) and offline:
        hint = (
            "no such local directory and the hub is offline (HF_HUB_OFFLINE=1); pass an existing directory "
            "or a "
            f"built-in ({', '.join(BUILTIN_MODELS)})"
        )
    elif not os.path.exists(name):
        hint = f"not a local directory and the hub could not provide it ({first_line})"
    else:
        hint = first_line
    return AlignlabError(f"cannot load {what} from '{name}': {hint}")


def load_tokenizer(name_or_path: str | None = None) -> PreTrainedTokenizerBase:
    """Load a tokenizer.

    ``None`` or a built-in model name gives the offline byte-level BPE tokenizer (built and cached on first
    use). Anything else is passed to ``AutoTokenizer.from_pretrained``. If the loaded tokenizer has no pad
    token, its EOS token is used for padding (the usual convention for GPT-2-style tokenizers); batches mask
    padding through ``attention_mask``, so the choice does not change any loss.
    """
    if name_or_path is None or is_builtin(os.fspath(name_or_path)):
        source = str(tokenizer_path())
    else:
        source = resolve(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _load_error("tokenizer", source, exc) from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if isinstance(dtype, str) and isinstance(getattr(torch, dtype, None), torch.dtype):
        return getattr(torch, dtype)
    raise AlignlabError(
        f"dtype {dtype!r} is not a torch dtype; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'"
    )


def load_model(
    name_or_path: str | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
    **kwargs: object,
) -> PreTrainedModel:
    """Load a causal LM.

    ``None`` or a built-in name: the tiny model initialised with ``seed`` (built and cached on first use),
    loaded with ``from_pretrained``. Anything else: ``AutoModelForCausalLM.from_pretrained(name_or_path,
    dtype=dtype, **kwargs)``; ``seed`` only selects built-in weights, so a non-zero seed with another model is
    rejected. ``dtype`` is a torch dtype, its name (``"bfloat16"``), ``"auto"`` or ``None`` (float32). Extra
    ``kwargs`` go to ``from_pretrained`` in both cases.
    """
    name = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    torch_dtype = _check_dtype(dtype)
    if not is_builtin(name) and not _is_builtin_like(name) and seed != 0:
        raise AlignlabError(
            f"seed={seed} only applies to built-in models ({', '.join(BUILTIN_MODELS)}); '{name}' has its "
            "own weights"
        )
    source = resolve(name, seed=seed)
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    try:
        return AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error("model", source, exc) from exc
