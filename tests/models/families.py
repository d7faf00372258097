"""Tiny random-init causal LMs of every supported family, built offline from transformers' config classes.

Each family's head weights are scaled up so logits spread over tens of nats: a wrong head transform cannot hide
in near-uniform logits. Vocabulary = the built-in tiny tokenizer's (4096), so the bundled data encodes for all.
"""

# ruff: noqa: C408 - dict(base, key=value) reads best for config variants

from __future__ import annotations

import torch
import transformers

VOCAB = 4096
_COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=1)
_GEMMA = dict(_COMMON, head_dim=16)

# family -> (config class, kwargs); the head transforms use values far from 1 so a missing one shows
FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", _COMMON),
    "mistral": ("MistralConfig", dict(_COMMON, sliding_window=None)),
    "qwen2": ("Qwen2Config", _COMMON),
    "qwen3": ("Qwen3Config", dict(_COMMON, head_dim=16)),
    "gemma": ("GemmaConfig", _GEMMA),
    "gemma2": ("Gemma2Config", dict(_GEMMA, final_logit_softcapping=5.0, query_pre_attn_scalar=16,
                                    sliding_window=32)),
    "gemma3": ("Gemma3TextConfig", dict(_GEMMA, final_logit_softcapping=5.0, query_pre_attn_scalar=16,
                                        sliding_window=32)),
    "phi3": ("Phi3Config", dict(_COMMON, original_max_position_embeddings=256)),
    "olmo2": ("Olmo2Config", _COMMON),
    "gpt2": ("GPT2Config", dict(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=256,
                                bos_token_id=0, eos_token_id=0)),
    "gpt_neox": ("GPTNeoXConfig", dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=256, bos_token_id=0,
                                       eos_token_id=0, pad_token_id=1)),
    # word_embed_proj_dim != hidden_size: the decoder's project_out runs before the head
    "opt": ("OPTConfig", dict(vocab_size=VOCAB, hidden_size=64, ffn_dim=96, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=32,
                              bos_token_id=0, eos_token_id=0, pad_token_id=1)),
    "cohere": ("CohereConfig", dict(_COMMON, logit_scale=0.25)),
    "granite": ("GraniteConfig", dict(_COMMON, logits_scaling=4.0, embedding_multiplier=2.0,
                                      residual_multiplier=0.5, attention_multiplier=0.25)),
    # multiplies by logits_scaling where Granite divides (a family-scoped key)
    "hyperclovax": ("HyperCLOVAXConfig", dict(_COMMON, logits_scaling=0.25)),
    # a hybrid attention + Mamba-2 model whose decoder scales embeddings only when given token ids
    "falcon_h1": ("FalconH1Config", dict(_COMMON, embedding_multiplier=3.0, lm_head_multiplier=0.3, mamba_d_ssm=64,
                                         mamba_n_heads=4, mamba_d_head=16, mamba_d_state=16, mamba_chunk_size=16)),
}
# families whose decoder cannot be fed embeddings exactly (IFT and freeze_input_embeddings are refused)
NO_EMBEDDING_INPUTS = {"falcon_h1": "embedding_multiplier"}
HEAD_SCALE = 8.0


def tiny_config(family: str):
    name, kwargs = FAMILIES[family]
    return getattr(transformers, name)(**kwargs)


def tiny_model(family: str, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A seeded random-init AutoModelForCausalLM of `family` in eval mode, head weights scaled by HEAD_SCALE."""
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family)).to(dtype)
    with torch.no_grad():
        head = model.get_output_embeddings()
        head.weight.mul_(HEAD_SCALE)  # tied tables scale too, which is harmless
        if getattr(head, "bias", None) is not None:
            head.bias.normal_(0, 1)
    return model.eval()
