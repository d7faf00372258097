"""One entry point for models and tokenizers.

Built-in names resolve to the offline cache; anything else goes to ``transformers`` ``from_pretrained`` (a
local directory or a hub id), with load failures turned into one-line ``AlignlabError``s. Weights are read from
safetensors files only: a ``pytorch_model.bin`` is a pickle, and unpickling a file from elsewhere can run code
(torch's ``weights_only`` loader narrows that but is not a format guarantee), so one is refused unless the
caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

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


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _unreachable_hub(name: str) -> str | None:
    """Why the hub cannot serve the hub id `name` (one line), or None: a local path, offline mode, not a hub id,
    or a hub that answers (even 404: from_pretrained reports that).

    One HEAD request without retries. Asked before from_pretrained because its download retries an unreachable
    hub for about a minute, a warning line per try, before saying so.
    """
    if os.path.exists(name) or _offline():
        return None
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError, HTTPError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except ValueError:
        return None  # a path that is not there: from_pretrained says so
    try:
        get_hf_file_metadata(hf_hub_url(name, "config.json"), timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return None
    except (HTTPError, OSError) as exc:  # no answer: connection refused, DNS, timeout
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"the hub at {constants.ENDPOINT} is unreachable ({reason})"
    return None


def _load_error(what: str, name: str, exc: Exception, unreachable: str | None = None) -> AlignlabError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline = _offline()
    if unreachable is not None:
        return ConfigError(
            f"cannot load {what} from '{name}': {unreachable} and no cached copy loads; pass a local directory, "
            "or set HF_HUB_OFFLINE=1 to load cached hub models without asking the hub"
        )
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
    unreachable = _unreachable_hub(source)  # then only a cached copy can load, without retries
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=unreachable is not None)
    except (OSError, ValueError) as exc:
        raise _load_error("tokenizer", source, exc, unreachable) from exc
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# Pickled weight files (transformers' and peft's names, sharded or not) and safetensors ones.
_PICKLED_WEIGHTS = ("pytorch_model*.bin", "pytorch_model*.bin.index.json", "adapter_model*.bin")
_SAFE_WEIGHTS = ("*.safetensors", "*.safetensors.index.json")


def check_safetensors(directory: str | os.PathLike) -> None:
    """Refuse a local model or adapter directory whose weights are pickled only.

    Raises ConfigError (one line: the file, why, how to convert) when `directory` holds ``pytorch_model*.bin`` /
    ``adapter_model*.bin`` and no ``*.safetensors``, or when its config.json points transformers at a file that
    is not safetensors (``transformers_weights``). Anything else (a hub id, a directory without weights) passes:
    ``from_pretrained(..., use_safetensors=True)`` reports those.
    """
    path = Path(directory)
    if not path.is_dir():
        return
    explicit = _explicit_weights(path)
    if explicit is not None and not explicit.endswith((".safetensors", ".safetensors.index.json")):
        raise ConfigError(
            f"'{path / 'config.json'}': transformers_weights is '{explicit}', not a safetensors file; alignlab "
            "loads safetensors only (a pickle can run code): point it at a .safetensors file, or pass "
            "allow_pickle=True if you trust the directory"
        )
    if any(next(path.glob(pattern), None) for pattern in _SAFE_WEIGHTS):
        return
    pickled = sorted(p.name for pattern in _PICKLED_WEIGHTS for p in path.glob(pattern))
    if pickled:
        raise ConfigError(
            f"'{path}' holds its weights only as {pickled[0]}, a pickle (loading one can run code); convert it "
            "once where you trust it (from_pretrained(dir, use_safetensors=False).save_pretrained(dir) writes "
            "safetensors), or pass allow_pickle=True"
        )


def _explicit_weights(directory: Path) -> str | None:
    """config.json's ``transformers_weights``: transformers loads that file whatever ``use_safetensors`` says."""
    try:
        value = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("transformers_weights")
    except (OSError, ValueError, AttributeError):
        return None  # no readable config: from_pretrained reports it
    return value if isinstance(value, str) else None


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
    allow_pickle: bool = False,
    **kwargs: object,
) -> PreTrainedModel:
    """Load a causal LM.

    ``None`` or a built-in name: the tiny model initialised with ``seed`` (built and cached on first use),
    loaded with ``from_pretrained``. Anything else: ``AutoModelForCausalLM.from_pretrained(name_or_path,
    dtype=dtype, use_safetensors=True, **kwargs)``; ``seed`` only selects built-in weights, so a non-zero seed
    with another model is rejected. ``dtype`` is a torch dtype, its name (``"bfloat16"``), ``"auto"`` or ``None``
    (float32). Weights load from safetensors only: a directory holding only ``pytorch_model.bin`` raises a
    one-line ConfigError (``check_safetensors``) unless ``allow_pickle`` (then transformers picks the file,
    unpickling with ``weights_only``). Extra ``kwargs`` go to ``from_pretrained`` in both cases.
    """
    name = DEFAULT_MODEL if name_or_path is None else os.fspath(name_or_path)
    torch_dtype = _check_dtype(dtype)
    if not is_builtin(name) and not _is_builtin_like(name) and seed != 0:
        raise AlignlabError(
            f"seed={seed} only applies to built-in models ({', '.join(BUILTIN_MODELS)}); '{name}' has its "
            "own weights"
        )
    return _from_pretrained(AutoModelForCausalLM, resolve(name, seed=seed), torch_dtype, allow_pickle, kwargs)


def _from_pretrained(
    auto_class: type, source: str, torch_dtype: torch.dtype | str | None, allow_pickle: bool, kwargs: dict
) -> PreTrainedModel:
    """`auto_class.from_pretrained(source)` under the safetensors-only rule, with one-line load errors."""
    if torch_dtype is not None:
        kwargs["dtype"] = torch_dtype
    if not allow_pickle:
        check_safetensors(source)
        kwargs.setdefault("use_safetensors", True)  # a hub id: never falls back to pytorch_model.bin
    unreachable = _unreachable_hub(source)
    if unreachable is not None:  # a cached copy loads, without a minute of retries
        kwargs["local_files_only"] = True
        # transformers looks for a peft adapter with its own settings, which do not inherit local_files_only
        kwargs["adapter_kwargs"] = {**(kwargs.get("adapter_kwargs") or {}), "local_files_only": True}
    try:
        return auto_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if not allow_pickle and "use_safetensors" in str(exc):  # transformers found only pickled weights
            raise ConfigError(
                f"cannot load model from '{source}': it has no safetensors weights and alignlab loads no pickle "
                "(it can run code); pass allow_pickle=True if you trust it"
            ) from exc
        raise _load_error("model", source, exc, unreachable) from exc


def load_sequence_classifier(
    name_or_path: str | os.PathLike, *, dtype: torch.dtype | str | None = None, allow_pickle: bool = False
) -> PreTrainedModel:
    """Load a sequence-classification model (a reward model or classifier) from a directory or hub id.

    `AutoModelForSequenceClassification.from_pretrained` under load_model's rules (safetensors only unless
    `allow_pickle`, `dtype` as there, one-line load errors). A checkpoint without a trained classification head
    (a causal LM, a built-in model) is refused in one line: transformers would initialise the head at random,
    and every reward would be noise.
    """
    name = os.fspath(name_or_path)
    model, info = _from_pretrained(AutoModelForSequenceClassification, resolve(name), _check_dtype(dtype),
                                   allow_pickle, {"output_loading_info": True})
    head = sorted(key for key in info.get("missing_keys", ()) if not key.startswith(model.base_model_prefix + "."))
    if head:
        raise ConfigError(
            f"'{name}' has no trained classification head ({head[0]} is not in the checkpoint, so it would be "
            "random); pass a *ForSequenceClassification checkpoint (a reward model)"
        )
    return model
