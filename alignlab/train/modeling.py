"""Policy and reference models for training: loading, LoRA, dropout, and the reference as a Trunk.

The forward to hidden states and the output head live in alignlab.models (one definition for training,
scoring and generation); this module decides which models train and which one is the reference.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch import nn

from alignlab.assets import load_model
from alignlab.assets.models import is_builtin
from alignlab.errors import ConfigError
from alignlab.models import AdapterDisabledTrunk, Trunk, base_model, check_input_embeddings, check_output_head


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (modules and the attention-dropout config fields)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    config = getattr(base_model(model), "config", None)
    for name in ("attention_dropout", "attn_pdrop", "resid_pdrop", "embd_pdrop", "hidden_dropout",
                 "dropout", "summary_first_dropout"):
        if config is not None and isinstance(getattr(config, name, None), float):
            setattr(config, name, 0.0)


def load_named_model(name: str, *, seed: int, dtype: torch.dtype | None = None) -> nn.Module:
    """The model a config names: a built-in (``alignlab/...``) initialised with the run's `seed`; anything else
    (a path, a hub id, a trained round's final/) has its own weights and loads without it."""
    return load_model(name, dtype=dtype, **({"seed": seed} if is_builtin(name) else {}))


def load_policy(cfg, dtype: torch.dtype) -> nn.Module:
    """The trainable policy (with LoRA adapters when cfg.model.lora)."""
    model = load_named_model(cfg.model.name, seed=cfg.run.seed, dtype=dtype)
    if cfg.method.resolved_disable_dropout:
        disable_dropout(model)
    embeddings = model.get_input_embeddings().weight
    if cfg.method.resolved_freeze_input_embeddings and embeddings is not model.get_output_embeddings().weight:
        # fed from a frozen copy, the table gets no gradient: mark it so (DDP and the optimizer skip it)
        embeddings.requires_grad_(False)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.model.lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ConfigError("lora: true needs peft: pip install 'alignlab[peft]'") from None
        targets = cfg.model.lora_target_modules
        target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
        lora_config = LoraConfig(r=cfg.model.lora_r, lora_alpha=cfg.model.lora_alpha, lora_dropout=cfg.model.lora_dropout,
                                 target_modules=target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora_config)
        if cfg.model.gradient_checkpointing:
            model.enable_input_require_grads()
    # before accelerate wraps forward in autocast: the head is checked against the model's own fp32 logits
    check_output_head(model)
    if cfg.method.resolved_freeze_input_embeddings:
        check_input_embeddings(model)  # IFT feeds embeddings: they must give what the ids give
    return model


def load_reference(cfg, dtype: torch.dtype, policy: nn.Module) -> nn.Module | None:
    """A frozen copy in eval mode, or None when the method needs none or LoRA provides it (adapters off)."""
    if not cfg.method.record.needs_ref or cfg.model.lora:
        return None
    if cfg.model.ref_model is None:
        if any(type(p).__name__ == "DTensor" for p in policy.parameters()):
            raise RuntimeError("the reference is a copy of the unsharded policy: load it before sharding the policy")
        ref = copy.deepcopy(base_model(policy))
    else:
        ref = load_named_model(cfg.model.ref_model, seed=cfg.run.seed, dtype=dtype)
    if getattr(ref, "supports_gradient_checkpointing", False):
        getattr(ref, "activation_checkpointing_disable", ref.gradient_checkpointing_disable)()  # a deep copy of a checkpointed policy: no backward, no recompute
    disable_dropout(ref)
    ref.eval()
    ref.requires_grad_(False)
    check_output_head(ref)
    return ref


def reference_trunk(policy: nn.Module, ref: nn.Module | None) -> Trunk:
    """The reference as a Trunk: the frozen copy (already a Trunk when sharded by FSDP2), or the LoRA policy with
    its adapters disabled."""
    if isinstance(ref, Trunk):
        return ref
    if ref is not None:
        return Trunk(ref)
    if not hasattr(policy, "disable_adapter"):
        raise RuntimeError("no reference model: the method needs one, or LoRA adapters to disable")
    return AdapterDisabledTrunk(policy)


def autocast(mixed_precision: str, device: torch.device):
    """The forward's autocast for the `mixed_precision` key: "no", "bf16" or "fp16" (whose loss scaling is
    accelerate's, in backward and the optimizer step)."""
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    return torch.autocast(device.type, dtype=dtypes[mixed_precision]) if mixed_precision in dtypes else nullcontext()
