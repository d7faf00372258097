"""resolve / load_tokenizer / load_model: built-ins, local directories, and actionable errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from alignlab.assets import BUILTIN_MODELS, DEFAULT_MODEL, load_model, load_tokenizer, model_path, resolve
from alignlab.errors import AlignlabError


def test_resolve() -> None:
    assert resolve(None) == str(model_path(DEFAULT_MODEL))
    assert resolve("alignlab/tiny-gpt2") == str(model_path("alignlab/tiny-gpt2"))
    assert resolve("gpt2") == "gpt2"
    assert resolve("./some/local/dir") == "./some/local/dir"
    with pytest.raises(AlignlabError, match="tiny-llama"):
        resolve("alignlab/tiny-mistral")


def test_unknown_builtin_lists_builtins() -> None:
    with pytest.raises(AlignlabError) as err:
        load_model("alignlab/nonexistent")
    message = str(err.value)
    assert "'alignlab/nonexistent'" in message
    assert all(name in message for name in BUILTIN_MODELS)
    with pytest.raises(AlignlabError):
        load_tokenizer("alignlab/nonexistent")


def test_builtin_names_share_the_offline_tokenizer(tokenizer) -> None:
    for name in (None, *BUILTIN_MODELS):
        assert load_tokenizer(name).get_vocab() == tokenizer.get_vocab()


def _save_foreign_model(directory: Path, tokenizer) -> GPT2LMHeadModel:
    """A model directory not made by alignlab: another GPT-2 config, and a tokenizer without a pad token."""
    torch.manual_seed(5)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    )
    model.save_pretrained(directory)
    tok = AutoTokenizer.from_pretrained(model_path())
    tok.pad_token = None
    tok.save_pretrained(directory)
    return model


def test_local_directory_loads(tmp_path: Path, tokenizer) -> None:
    directory = tmp_path / "my-model"
    original = _save_foreign_model(directory, tokenizer)
    assert resolve(str(directory)) == str(directory)

    model = load_model(str(directory))
    assert model.config.n_embd == 32
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, original.eval()(ids).logits)

    tok = load_tokenizer(str(directory))
    # No pad token saved: load_tokenizer falls back to EOS for padding.
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert load_model(directory).config.n_embd == 32  # a Path works too


def test_dtype_and_kwargs_are_honoured(tmp_path: Path, tokenizer) -> None:
    assert next(load_model(dtype="bfloat16").parameters()).dtype == torch.bfloat16
    assert next(load_model(dtype=torch.float16).parameters()).dtype == torch.float16
    assert next(load_model().parameters()).dtype == torch.float32
    eager = load_model(attn_implementation="eager")
    assert eager.config._attn_implementation == "eager"
    directory = tmp_path / "m"
    _save_foreign_model(directory, tokenizer)
    assert next(load_model(str(directory), dtype="bfloat16").parameters()).dtype == torch.bfloat16
    with pytest.raises(AlignlabError, match="dtype 'float17'"):
        load_model(dtype="float17")


def test_seed_rejected_for_non_builtin(tmp_path: Path, tokenizer) -> None:
    directory = tmp_path / "m"
    _save_foreign_model(directory, tokenizer)
    with pytest.raises(AlignlabError, match="seed=3 only applies to built-in models"):
        load_model(str(directory), seed=3)


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "does-not-exist")
    for loader, what in ((load_model, "model"), (load_tokenizer, "tokenizer")):
        with pytest.raises(AlignlabError) as err:
            loader(missing)
        message = str(err.value)
        assert "\n" not in message
        assert f"cannot load {what} from '{missing}'" in message
        assert "HF_HUB_OFFLINE=1" in message


def test_directory_without_model_is_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AlignlabError) as err:
        load_model(str(empty))
    assert "\n" not in str(err.value)
    assert f"'{empty}'" in str(err.value)


def test_resolve_device_is_one_line_for_bad_or_absent_devices():
    import torch

    from alignlab.assets import resolve_device
    from alignlab.errors import ConfigError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
