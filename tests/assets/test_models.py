"""Built-in tiny models: seeded init, config, cached directory, and reload equivalence."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignlab.assets import BUILTIN_MODELS, DEFAULT_MODEL, load_model, model_path
from alignlab.assets.models import build_model


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_same_seed_same_weights_different_seed_different(tokenizer, name: str) -> None:
    a = build_model(name, tokenizer, seed=0)
    b = build_model(name, tokenizer, seed=0)
    c = build_model(name, tokenizer, seed=1)
    assert _state_equal(a, b)
    assert not _state_equal(a, c)


def test_build_leaves_global_rng_alone(tokenizer) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(DEFAULT_MODEL, tokenizer, seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_llama_config(tokenizer) -> None:
    cfg = load_model("alignlab/tiny-llama").config
    assert cfg.model_type == "llama"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (4, 256, 4)
    assert (cfg.num_key_value_heads, cfg.intermediate_size, cfg.max_position_embeddings) == (2, 688, 1024)
    assert cfg.tie_word_embeddings is False
    assert cfg.vocab_size == len(tokenizer)


def test_gpt2_config(tokenizer) -> None:
    cfg = load_model("alignlab/tiny-gpt2").config
    assert cfg.model_type == "gpt2"
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_positions) == (4, 256, 4, 1024)
    assert cfg.vocab_size == len(tokenizer)


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_cached_directory_reloads_with_identical_logits(tokenizer, name: str) -> None:
    path = model_path(name)
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not any(f.endswith(".bin") for f in files)

    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.get_vocab() == tokenizer.get_vocab()
    for cfg in (model.config, model.generation_config):
        assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (
            tokenizer.bos_token_id,
            tokenizer.eos_token_id,
            tokenizer.pad_token_id,
        )

    fresh = build_model(name, tokenizer, seed=0).eval()
    assert _state_equal(model, fresh)
    batch = tok(["Human: hi\n\nAssistant: hello 😀", "short"], padding=True, return_tensors="pt")
    with torch.no_grad():
        got = model(**batch).logits
        want = fresh(**batch).logits
    assert got.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert got.dtype == torch.float32
    assert torch.equal(got, want)


def test_seed_selects_cached_weights() -> None:
    assert model_path(DEFAULT_MODEL, seed=0) != model_path(DEFAULT_MODEL, seed=1)
    a, b = load_model(seed=0), load_model(seed=1)
    assert not _state_equal(a, b)
    assert _state_equal(a, load_model(DEFAULT_MODEL, seed=0))


def test_builtin_model_built_by_a_nonzero_rank_is_complete(tmp_path, monkeypatch):
    """Under accelerate launch every rank builds the model on a fresh cache; transformers 5 saves on rank 0 only
    once torch.distributed is up, so a rank-1 build must still write its own complete copy."""
    import transformers.distributed.mixin as distributed

    from alignlab.assets.models import model_path

    monkeypatch.setenv("ALIGNLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(distributed, "_is_torch_distributed_initialized", lambda: True)
    monkeypatch.setattr(distributed, "_get_torch_distributed_rank", lambda: 1)
    built = model_path("alignlab/tiny-llama")
    assert (built / "config.json").is_file() and (built / "model.safetensors").is_file()
