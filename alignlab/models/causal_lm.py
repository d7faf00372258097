"""Any Hugging Face causal LM as (final hidden states, output head): the one scorer.

For every causal LM alignlab accepts,

    model(input_ids).logits == head(decoder(input_ids).last_hidden_state)
    head(h) = softcap(scale * (h W^T + b)),        softcap(u) = c * tanh(u / c)   (identity when c is None)

with W, b the output layer (`get_output_embeddings()`: tied or not, inside a peft wrapper or not) and the
transform read from the config keys in HEAD_TRANSFORM_KEYS. `Trunk` runs the decoder to its final (normed)
hidden states and never asks for logits; `alignlab.ops` applies the head one token tile at a time.

Trust, then verify: the first time a model's head is used, `check_output_head` runs the model's own forward on a
short probe and compares its logits with the head applied to the decoder's hidden states. A family whose
forward transforms the logits in a way this module does not reproduce is an error naming the config keys that
may do it, never a silently wrong log-prob.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from alignlab.errors import ConfigError
from alignlab.models.packing import PackedLayout, attention_masks, mask_plan
from alignlab.ops import (
    DEFAULT_CHUNK_BYTES,
    SequenceStats,
    chunked_argmax,
    chunked_sequence_stats,
    head_logits,
    plain_sequence_stats,
)

# config key -> how it enters the head: "softcap" c, "scale" s (logits * s) or "inverse_scale" s (logits / s)
HEAD_TRANSFORM_KEYS: dict[str, str] = {
    "final_logit_softcapping": "softcap",  # Gemma-2, Gemma-3
    "logits_soft_cap": "softcap",  # RecurrentGemma
    "logit_scale": "scale",  # Cohere, Cohere2
    "logits_scaling": "inverse_scale",  # Granite, GraniteMoE
    "lm_head_multiplier": "scale",  # Falcon-H1
}
# keys whose direction depends on the family (the text config's model_type): these override the table above
FAMILY_HEAD_TRANSFORM_KEYS: dict[str, dict[str, str]] = {
    "hyperclovax": {"logits_scaling": "scale"},  # multiplies where Granite divides
    "muse_spark_text": {"output_multiplier": "scale"},  # then final_logit_softcapping
    "muse_glimmer_text": {"output_multiplier": "scale"},
}
# words in config keys that may name some other transform of the logits or of the input embeddings (named in
# the error when a probe fails)
_SUSPECT_WORDS = ("logit", "softcap", "soft_cap", "multiplier", "scaling", "vocab", "embed")

_CHECKED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
_EMBEDS_CHECKED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers are injected in place), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass(frozen=True)
class OutputHead:
    """The output layer and its transform: logits = softcap(scale * (h weight^T + bias)).

    weight [V, H], bias [V] or None; scale > 0; softcap c > 0 or None."""

    weight: Tensor
    bias: Tensor | None = None
    scale: float = 1.0
    softcap: float | None = None

    def logits(self, hidden: Tensor) -> Tensor:
        """hidden [..., H] -> fp32 logits [..., V] (full width: for small inputs and tests)."""
        return head_logits(hidden, self.weight, self.bias, self.scale, self.softcap)

    def detach(self) -> OutputHead:
        return replace(self, weight=self.weight.detach(), bias=None if self.bias is None else self.bias.detach())

    def ops_kwargs(self, prefix: str = "") -> dict[str, Any]:
        """The keyword arguments of alignlab.ops' statistics for this head (`prefix` "ref_" for the reference)."""
        return {f"{prefix}weight": self.weight, f"{prefix}bias": self.bias, f"{prefix}scale": self.scale,
                f"{prefix}softcap": self.softcap}


def _text_config(model: nn.Module) -> Any:
    config = getattr(base_model(model), "config", None)
    if config is None:
        raise ConfigError(f"{type(model).__name__} has no config; alignlab needs a Hugging Face causal LM")
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def head_transform(config: Any) -> tuple[float, float | None]:
    """(scale, softcap) of a causal LM's output head from its (text) config: the keys in HEAD_TRANSFORM_KEYS,
    with FAMILY_HEAD_TRANSFORM_KEYS[config.model_type] taking precedence."""
    scale, softcap = 1.0, None
    keys = {**HEAD_TRANSFORM_KEYS, **FAMILY_HEAD_TRANSFORM_KEYS.get(getattr(config, "model_type", ""), {})}
    for key, kind in keys.items():
        value = getattr(config, key, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"model config key '{key}' is {value!r}; alignlab needs a finite number > 0 there")
        if kind == "softcap":
            if softcap is not None:
                raise ConfigError(f"model config key '{key}' is a second logit soft-cap; alignlab applies one")
            softcap = float(value)
        elif kind == "scale":
            scale *= float(value)
        else:
            scale /= float(value)
    return scale, softcap


def output_head(model: nn.Module) -> OutputHead:
    """The output head of a causal LM (a peft wrapper's base model's), with its transform; not yet verified."""
    base = base_model(model)
    layer = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if layer is None:
        raise ConfigError(f"{type(base).__name__} has no output layer (get_output_embeddings() is None); "
                          "alignlab needs a causal LM with a language-modelling head")
    if hasattr(layer, "lora_A"):
        raise ConfigError("lora_target_modules adapts the output layer (lm_head); alignlab computes log-probs "
                          "from the output layer's weight directly, so leave lm_head out")
    weight = getattr(layer, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 2:
        raise ConfigError(f"{type(base).__name__}'s output layer {type(layer).__name__} has no [V, H] weight")
    bias = getattr(layer, "bias", None)
    scale, softcap = head_transform(_text_config(model))
    return OutputHead(weight, bias if isinstance(bias, Tensor) else None, scale, softcap)


def _decoder_hidden(model: nn.Module, input_ids: Tensor | None, attention_mask: Tensor | dict[str, Tensor] | None,
                    inputs_embeds: Tensor | None, position_ids: Tensor | None = None) -> Tensor:
    decoder = base_model(model).get_decoder()
    extra = {} if position_ids is None else {"position_ids": position_ids}  # packed rows only: the model's own else
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, use_cache=False,
                  **extra)
    return out.last_hidden_state


def _suspect_keys(config: Any) -> list[str]:
    keys = []
    for key, value in sorted(config.to_dict().items()):
        if key == "vocab_size" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if any(word in key for word in _SUSPECT_WORDS):
            keys.append(f"{key}={value}")
    return keys


def _probe_ids(model: nn.Module, head: OutputHead) -> Tensor:
    """12 fixed token ids valid for both the input table and the output layer."""
    rows = min(head.weight.shape[0], base_model(model).get_input_embeddings().weight.shape[0])
    return torch.randint(0, rows, (1, 12), generator=torch.Generator().manual_seed(0)).to(head.weight.device)


def _mismatch(want: Tensor, got: Tensor, half: bool) -> float | None:
    """How far `got` is from `want` beyond rounding, or None when they agree.

    Two tests: the largest difference (any transform) and the least-squares scale between them, which averages
    the rounding of 12 x V values away, so that a few-percent scale hides in no precision."""
    rel, rel_scale = (3e-2, 2e-3) if half else (1e-4, 1e-5)
    err = float((want - got).abs().max())
    fit = float((want * got).sum() / (got * got).sum().clamp(min=1e-30))
    if err <= rel * (1.0 + float(want.abs().max())) and abs(fit - 1.0) <= rel_scale:
        return None
    return err


def _hint(model: nn.Module) -> str:
    keys = _suspect_keys(_text_config(model))
    return f"config keys that may do it: {', '.join(keys)}" if keys else "no config key says how"


@torch.no_grad()
def check_output_head(model: nn.Module) -> None:
    """Verify once per model that head(decoder hidden states) reproduces model(input_ids).logits.

    Runs the model's own forward on 12 probe tokens (eval mode, no autocast; the previous mode is restored).
    Raises ConfigError naming the config keys that may transform the logits when they differ beyond rounding
    (module docstring)."""
    base = base_model(model)
    if _CHECKED.get(base):
        return
    head = output_head(model)
    ids = _probe_ids(model, head)
    was_training = base.training
    base.eval()
    try:
        with torch.autocast(head.weight.device.type, enabled=False):
            want = base(input_ids=ids, use_cache=False).logits.float()
            got = head.logits(_decoder_hidden(model, ids, None, None).to(head.weight.device)).float()
    finally:
        base.train(was_training)
    name = type(base).__name__
    if want.shape != got.shape:
        raise ConfigError(f"{name}: model(input_ids).logits has {want.shape[-1]} entries per position but its output "
                          f"layer has {got.shape[-1]} rows; alignlab cannot reproduce this head ({_hint(model)})")
    err = _mismatch(want, got.to(want.device), head.weight.dtype not in (torch.float32, torch.float64))
    if err is not None:
        raise ConfigError(f"{name}: model(input_ids).logits differ from alignlab's output head by {err:.3g}; "
                          f"alignlab reproduces only {', '.join(HEAD_TRANSFORM_KEYS)} ({_hint(model)})")
    _CHECKED[base] = True


@torch.no_grad()
def check_input_embeddings(model: nn.Module) -> None:
    """Verify once per model that the decoder fed `Trunk.embed(ids)` gives what it gives for input_ids.

    IFT (and freeze_input_embeddings) feed embeddings; a family whose decoder scales embeddings only when given
    input_ids (Falcon-H1's embedding_multiplier) would silently train on other inputs. Raises ConfigError."""
    base = base_model(model)
    if _EMBEDS_CHECKED.get(base):
        return
    ids = _probe_ids(model, output_head(model))
    was_training = base.training
    base.eval()
    try:
        with torch.autocast(ids.device.type, enabled=False):
            want = _decoder_hidden(model, ids, None, None).float()
            got = _decoder_hidden(model, None, None, _embed(model, ids)).float()
    finally:
        base.train(was_training)
    err = _mismatch(want, got, base.get_input_embeddings().weight.dtype not in (torch.float32, torch.float64))
    if err is not None:
        raise ConfigError(f"{type(base).__name__}: its decoder transforms input embeddings only when given token "
                          f"ids (hidden states differ by {err:.3g}), so IFT and freeze_input_embeddings, which feed "
                          f"embeddings, cannot run on it exactly ({_hint(model)})")
    _EMBEDS_CHECKED[base] = True


def _embed(model: nn.Module, input_ids: Tensor) -> Tensor:
    layer = base_model(model).get_input_embeddings()
    weight = dict(layer.named_parameters(recurse=False)).get("weight")
    if weight is None:
        raise ConfigError(f"the input embedding layer {type(layer).__name__} has no weight of its own (is it "
                          "adapted by LoRA?); leave the embeddings out of lora_target_modules")
    return torch.func.functional_call(layer, {"weight": weight.detach()}, (input_ids,))


def _gather_root(trunk: nn.Module) -> None:
    """Under FSDP2 (alignlab.train.fsdp) a Trunk is the root unit holding the embeddings and the output layer,
    which are read outside any forward: all-gather them (a collective every process reaches alike; a no-op when
    the forward already did). They stay full until the backward's end reshards them, so the chunked ops use the
    full weight in forward and backward."""
    unshard = getattr(trunk, "unshard", None)
    if unshard is not None and hasattr(trunk, "set_reshard_after_forward"):  # torch.distributed.fsdp.FSDPModule
        unshard()


class Trunk(nn.Module):
    """Wraps a causal LM: forward returns the final hidden states [B, T, H] (after the final norm), head() the
    verified output head. This is the module handed to accelerate, so DDP / FSDP see one forward per step."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | dict[str, Tensor] | None = None,
                inputs_embeds: Tensor | None = None, position_ids: Tensor | None = None) -> Tensor:
        """[B, T] ids (or [B, T, H] embeddings), a 2D padding mask or a packed layout's 4D block mask (a dict by
        layer type for sliding-window models) with its position_ids [B, T] -> final hidden states [B, T, H]."""
        return _decoder_hidden(self.lm, input_ids, attention_mask, inputs_embeds, position_ids)

    def head(self) -> OutputHead:
        check_output_head(self.lm)
        _gather_root(self)
        return output_head(self.lm)

    def embed(self, input_ids: Tensor) -> Tensor:
        """The model's own input embeddings of input_ids [B, T] -> [B, T, H] (scaled where the family's embedding
        layer scales, as Gemma's does), from a detached view of the table: IFT's frozen embedding copy. Checked
        once per model: the decoder fed these must give what it gives for the ids (check_input_embeddings)."""
        check_input_embeddings(self.lm)
        _gather_root(self)
        return _embed(self.lm, input_ids)


class AdapterDisabledTrunk(Trunk):
    """The LoRA policy seen as its own reference: every forward runs with adapters disabled, in eval mode."""

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        was_training = self.lm.training
        self.lm.eval()
        try:
            with self.lm.disable_adapter():
                return super().forward(*args, **kwargs)
        finally:
            self.lm.train(was_training)


def unwrap_trunk(trunk: nn.Module) -> Trunk:
    """The Trunk inside a DDP wrapper (forward goes through the wrapper; weights are read from the inside)."""
    return getattr(trunk, "module", trunk)


# packed rows (alignlab.models.packing): model -> (problem or None, the longest sequence the probe covers or None)
_LAYOUT_CHECKED: weakref.WeakKeyDictionary[nn.Module, tuple[str | None, int | None]] = weakref.WeakKeyDictionary()
# the probe crosses a sliding window of at most this many tokens
PROBE_WINDOW = 256


def _probe_examples(vocab: int, prompt: int) -> list[dict[str, Any]]:
    """Two pairs with shared prompts (lengths prompt and 3), tails of different lengths, fixed random ids."""
    ids = torch.randint(0, vocab, (prompt + 24,), generator=torch.Generator().manual_seed(0)).tolist()
    examples = []
    for i, (p, c, r) in enumerate(((prompt, 6, 4), (3, 2, 5))):
        head, ids = ids[:p], ids[p:]
        chosen, rejected, ids = ids[:c], ids[c:c + r], ids[c + r:]
        examples.append({"chosen_input_ids": head + chosen, "chosen_labels": [-100] * p + chosen,
                         "rejected_input_ids": head + rejected, "rejected_labels": [-100] * p + rejected,
                         "index": i})
    return examples


def _probe_packed_layout(model: nn.Module) -> tuple[str | None, int | None]:
    from alignlab.data.collate import collate_preference

    base = base_model(model)
    config = _text_config(model)
    problem, plan = mask_plan(config)
    if problem is not None:
        return problem, None
    # the config's window too: a plan that missed a window must not also shorten the probe that would show it
    window = max((int(w) for w in (*plan.values(), getattr(config, "sliding_window", None)) if w is not None),
                 default=None)
    max_positions = getattr(config, "max_position_embeddings", None) or 2 * PROBE_WINDOW
    crossed = window is None or (window <= PROBE_WINDOW and window + 8 <= max_positions)
    prompt = window + 2 if window is not None and crossed else 6  # its pair's rows outgrow the window
    embeddings = base.get_input_embeddings().weight
    examples = _probe_examples(min(embeddings.shape[0], output_head(model).weight.shape[0]), prompt)
    padded = collate_preference(examples, 0)
    packed = collate_preference(examples, 0, prefix_sharing=True, packing=True, packing_tokens=4 * prompt + 64)
    device = embeddings.device
    layout = PackedLayout.from_batch({k: v.to(device) for k, v in packed.items()})
    ids, mask = padded["input_ids"].to(device), padded["attention_mask"].to(device)
    was_training = base.training
    base.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            want = _decoder_hidden(model, ids, mask, None)
            rows = _decoder_hidden(model, layout.input_ids, attention_masks(config, layout, embeddings.dtype),
                                   None, layout.position_ids)
            got = layout.to_logical(rows)
    except Exception as exc:  # noqa: BLE001 - any failure of the forward on a block mask: padded rows stay
        return f"its forward fails on a block attention mask ({type(exc).__name__}: {str(exc).splitlines()[0]})", None
    finally:
        base.train(was_training)
    valid = mask.bool()
    err = _mismatch(want[valid].float(), got[valid].float(), embeddings.dtype not in (torch.float32, torch.float64))
    if err is not None:
        return (f"its hidden states on packed rows differ from its padded rows by {err:.3g} (the attention mask "
                "or the position ids are not honoured)"), None
    return None, (None if window is None or crossed else window)


def packed_layout_problem(model: nn.Module, *, longest: int | None = None) -> str | None:
    """None when packed rows (prefix sharing, packing: alignlab.models.packing) give this model exactly its padded
    rows' hidden states for sequences of up to `longest` tokens (None: any length); else why not, in one line.

    Checked once per model: the model must take a 4D block mask (SDPA or eager attention, attention layers only)
    and a probe — two pairs sharing their prompts, packed in one row, against their padded rows, in eval mode
    without autocast — must give the same hidden states at every position beyond rounding. The probe crosses a
    sliding window of up to PROBE_WINDOW tokens; a longer window is trusted only for sequences that fit in it,
    where sliding and full attention are the same."""
    base = base_model(model)
    if base not in _LAYOUT_CHECKED:
        _LAYOUT_CHECKED[base] = _probe_packed_layout(model)
    problem, covered = _LAYOUT_CHECKED[base]
    if problem is not None:
        return f"{type(base).__name__}: {problem}"
    if covered is not None and (longest is None or longest > covered):
        reach = "an unknown length" if longest is None else f"{longest} tokens"
        return (f"{type(base).__name__}: its sliding window ({covered} tokens) is longer than the probe checks "
                f"and sequences reach {reach}")
    return None


def _rows_hidden(trunk: nn.Module, layout: PackedLayout, longest: int, inputs_embeds: Tensor | None) -> Tensor:
    """The packed rows through a Trunk: [R, T] ids (or [R, T, H] embeddings) -> hidden states [R, T, H]."""
    lm = unwrap_trunk(trunk).lm
    problem = packed_layout_problem(lm, longest=longest)
    if problem is not None:
        raise ConfigError(f"packed rows (prefix_sharing, packing) are not exact on this model: {problem}; "
                          "set prefix_sharing: false and packing: false")
    dtype = inputs_embeds.dtype if inputs_embeds is not None else base_model(lm).get_input_embeddings().weight.dtype
    mask = attention_masks(_text_config(lm), layout, dtype)
    return trunk(input_ids=None if inputs_embeds is not None else layout.input_ids, attention_mask=mask,
                 inputs_embeds=inputs_embeds, position_ids=layout.position_ids)


def _head_rows(lm: nn.Module) -> int | None:
    """Rows of a model's output layer, read without gathering it (a DTensor's shape is the global one)."""
    layer = base_model(lm).get_output_embeddings()
    weight = getattr(layer, "weight", None)
    return None if weight is None else int(weight.shape[0])


def _hidden(trunk: nn.Module, input_ids: Tensor, attention_mask: Tensor, inputs_embeds: Tensor | None,
            layout: PackedLayout | None) -> Tensor:
    """Final hidden states of the logical batch [B, T, H], from its padded rows or from its packed layout."""
    if layout is not None:
        return layout.to_logical(_rows_hidden(trunk, layout, attention_mask.shape[1], inputs_embeds))
    if inputs_embeds is not None:
        return trunk(attention_mask=attention_mask, inputs_embeds=inputs_embeds)
    return trunk(input_ids=input_ids, attention_mask=attention_mask)


def sequence_stats(trunk: nn.Module, input_ids: Tensor, attention_mask: Tensor, labels: Tensor, *,
                   ref: Trunk | None = None, inputs_embeds: Tensor | None = None, layout: PackedLayout | None = None,
                   chunked: bool = True, chunk_size: int = 1024, chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
                   kl: bool = False, reverse_kl: bool = False, entropy: bool = False, token_logps: bool = False,
                   log_sum_sq: bool = False) -> SequenceStats:
    """Per-sequence statistics of a batch under a Trunk (possibly DDP-wrapped) and optionally a reference Trunk.

    input_ids, attention_mask, labels [B, T] (HF-aligned labels, -100 where not scored); inputs_embeds [B, T, H]
    replaces input_ids for the policy (IFT). The reference runs without gradient on input_ids. chunked: the
    token-tiled ops (never [B, T, V] logits; tiles of at most chunk_size tokens and chunk_bytes of temporaries) or
    the plain full-logit reference. Returns SequenceStats ([B] fields;
    kl = forward sum_t KL(ref || policy), reverse_kl = sum_t KL(policy || ref)).

    layout: the batch's packed rows (alignlab.models.packing; input_ids, attention_mask and labels stay the
    logical padded batch). Both models then run the rows, and their hidden states are gathered back to the logical
    positions, so every statistic is the padded path's; inputs_embeds are then the rows' [R, T', H]. A model the
    packed rows are not exact on (packed_layout_problem) is a ConfigError.
    """
    kwargs: dict[str, Any] = {}
    if ref is not None:
        # the reference first: its forward's temporaries are freed before the policy's activations exist, so
        # they never add to the policy's peak (only its [B, T, H] hidden states stay)
        ref_head = ref.head().detach()
        rows = _head_rows(unwrap_trunk(trunk).lm)
        if rows is not None and ref_head.weight.shape[0] != rows:  # before any id reaches the reference
            raise ConfigError(f"the reference model's output layer has {ref_head.weight.shape[0]} rows but the "
                              f"policy's has {rows}; policy and reference need one vocabulary")
        with torch.no_grad():
            kwargs["ref_hidden"] = _hidden(ref, input_ids, attention_mask, None, layout).to(ref_head.weight.device)
        kwargs.update(ref_head.ops_kwargs("ref_"))
    hidden = _hidden(trunk, input_ids, attention_mask, inputs_embeds, layout)
    head = unwrap_trunk(trunk).head()
    hidden = hidden.to(head.weight.device)  # a device map may put the last layer and the head apart
    kwargs.update(head.ops_kwargs())
    fn = chunked_sequence_stats if chunked else plain_sequence_stats
    return fn(hidden, labels=labels, chunk_size=chunk_size, chunk_bytes=chunk_bytes, kl=kl, reverse_kl=reverse_kl,
              entropy=entropy, return_token_logps=token_logps, log_sum_sq=log_sum_sq, **kwargs)


@torch.no_grad()
def greedy_next_tokens(trunk: nn.Module, attention_mask: Tensor, inputs_embeds: Tensor, *,
                       chunk_size: int = 1024, chunk_bytes: int | None = DEFAULT_CHUNK_BYTES,
                       layout: PackedLayout | None = None) -> Tensor:
    """argmax of the model's next-token logits at every position, without full logits: [B, T, H] -> [B, T].

    With a packed layout, inputs_embeds are its rows' [R, T', H] and so are the guesses [R, T'] (attention_mask
    stays the logical one)."""
    if layout is not None:
        hidden = _rows_hidden(trunk, layout, attention_mask.shape[1], inputs_embeds)
    else:
        hidden = trunk(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
    head = unwrap_trunk(trunk).head()
    return chunked_argmax(hidden, head.weight, bias=head.bias, scale=head.scale, softcap=head.softcap,
                          chunk_size=chunk_size, chunk_bytes=chunk_bytes)


__all__ = [
    "HEAD_TRANSFORM_KEYS",
    "AdapterDisabledTrunk",
    "OutputHead",
    "Trunk",
    "base_model",
    "check_input_embeddings",
    "check_output_head",
    "greedy_next_tokens",
    "head_transform",
    "output_head",
    "packed_layout_problem",
    "sequence_stats",
    "unwrap_trunk",
]
