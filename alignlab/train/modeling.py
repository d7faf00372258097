"""Policy and reference models: loading, LoRA, dropout, and the forward that stops at the final hidden states.

Training never asks the model for logits: `Trunk` runs the decoder to its final (normed) hidden states and the
ops compute log-probs and KL from them and the lm_head weight in token chunks (alignlab.ops.chunked). `Trunk`
is the module handed to accelerate, so DDP / FSDP wrap the whole model and see one forward per step.
"""

from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from alignlab.assets import load_model
from alignlab.errors import ConfigError


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers are injected in place), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class Trunk(nn.Module):
    """Wraps a causal LM; forward returns the final hidden states [B, T, H] (after the final norm)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                inputs_embeds: Tensor | None = None) -> Tensor:
        decoder = base_model(self.lm).get_decoder()
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                      use_cache=False)
        return out.last_hidden_state

    def head(self) -> tuple[Tensor, Tensor | None]:
        """(weight [V, H], bias [V] or None) of the output projection."""
        lm_head = base_model(self.lm).get_output_embeddings()
        return lm_head.weight, getattr(lm_head, "bias", None)

    def input_embedding_weight(self) -> Tensor:
        return base_model(self.lm).get_input_embeddings().weight


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


def load_policy(cfg, dtype: torch.dtype) -> nn.Module:
    """The trainable policy (with LoRA adapters when cfg.lora)."""
    model = load_model(cfg.model, **({"seed": cfg.seed} if cfg.model.startswith("alignlab/") else {}), dtype=dtype)
    if cfg.resolved_disable_dropout:
        disable_dropout(model)
    embeddings = model.get_input_embeddings().weight
    if cfg.resolved_freeze_input_embeddings and embeddings is not model.get_output_embeddings().weight:
        # fed from a frozen copy, the table gets no gradient: mark it so (DDP and the optimizer skip it)
        embeddings.requires_grad_(False)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ConfigError("lora: true needs peft: pip install 'alignlab[peft]'") from None
        targets = cfg.lora_target_modules
        target_modules = targets if targets == "all-linear" else [t.strip() for t in targets.split(",")]
        lora_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora_config)
        if hasattr(base_model(model).get_output_embeddings(), "lora_A"):
            raise ConfigError("lora_target_modules adapts the output layer (lm_head); alignlab computes "
                              "log-probs from the lm_head weight directly, so leave lm_head out")
        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
    return model


def load_reference(cfg, dtype: torch.dtype, policy: nn.Module) -> nn.Module | None:
    """A frozen copy in eval mode, or None when the method needs none or LoRA provides it (adapters off)."""
    if not cfg.needs_reference or cfg.lora:
        return None
    if cfg.ref_model is None:
        ref = copy.deepcopy(base_model(policy))
    else:
        kwargs = {"seed": cfg.seed} if cfg.ref_model.startswith("alignlab/") else {}
        ref = load_model(cfg.ref_model, dtype=dtype, **kwargs)
    if getattr(ref, "supports_gradient_checkpointing", False):
        getattr(ref, "activation_checkpointing_disable", ref.gradient_checkpointing_disable)()  # a deep copy of a checkpointed policy: no backward, no recompute
    disable_dropout(ref)
    ref.eval()
    ref.requires_grad_(False)
    return ref


class AdapterDisabledTrunk(Trunk):
    """The LoRA policy seen as its own reference: every forward runs with adapters disabled, in eval mode."""

    def forward(self, *args, **kwargs) -> Tensor:
        was_training = self.lm.training
        self.lm.eval()
        try:
            with self.lm.disable_adapter():
                return super().forward(*args, **kwargs)
        finally:
            self.lm.train(was_training)


def reference_trunk(policy: nn.Module, ref: nn.Module | None) -> Trunk:
    """The reference as a Trunk: the frozen copy, or the LoRA policy with its adapters disabled."""
    if ref is not None:
        return Trunk(ref)
    if not hasattr(policy, "disable_adapter"):
        raise RuntimeError("no reference model: the method needs one, or LoRA adapters to disable")
    return AdapterDisabledTrunk(policy)


def autocast(mixed_precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if mixed_precision == "bf16" else nullcontext()
