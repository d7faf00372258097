"""Training configuration: every key a recipe or the command line can set, documented in one place.

A recipe is a YAML mapping of these keys; `key=value` overrides on the command line are parsed as YAML scalars.
Unknown keys and unsupported combinations raise ConfigError naming the key; nothing is silently ignored.
`alignlab train --list-keys` prints this table.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alignlab.errors import ConfigError
from alignlab.losses.registry import METHODS as METHOD_RECORDS
from alignlab.losses.registry import Method, Params, get_method, methods_with_key, param_defaults

METHODS = tuple(METHOD_RECORDS)
# every recipe key that is some method's hyper-parameter (the registry's Params fields)
METHOD_KEYS = tuple(sorted({k for m in METHOD_RECORDS.values() for k in m.param_keys()}))


def _key(default: Any, help: str, choices: tuple | None = None) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    # what to train
    method: str = _key("tdpo2", "training method", METHODS)
    model: str = _key("alignlab/tiny-llama", "policy: built-in name, local path or Hugging Face id")
    ref_model: str | None = _key(None, "reference model (default: the initial policy)")
    tokenizer: str | None = _key(None, "tokenizer (default: the model's)")
    seed: int = _key(0, "seed for data order, initialisation of built-in models and dropout")
    # data
    train_data: str | None = _key(None, "training data: file, directory or datasets name (default: bundled samples)")
    train_split: str = _key("train", "split of train_data")
    eval_data: str | None = _key(None, "held-out data (default: eval_fraction of train_data)")
    eval_split: str = _key("test", "split of eval_data")
    eval_fraction: float = _key(0.1, "fraction of train_data held out when eval_data is not given (0: no eval)")
    data_format: str = _key("auto", "data format (auto-detected by default)",
                            ("auto", "standard", "conversational", "implicit", "hh", "prompt_completion",
                             "messages", "text"))
    columns: dict = _key({}, "column renames, canonical -> source name, e.g. {prompt: question}")
    max_length: int = _key(512, "max tokens of prompt + response")
    max_prompt_length: int = _key(256, "max prompt tokens when a pair is too long")
    prompt_truncation: str = _key("keep_end", "which end of a long prompt is kept", ("keep_end", "keep_start"))
    response_truncation: str = _key("truncate", "long responses: cut at the end, or drop the example",
                                    ("truncate", "drop_example"))
    sft_turns: str = _key("all", "messages data: train all assistant turns or the last", ("all", "last"))
    limit: int | None = _key(None, "use only the first N records (after shuffling)")
    # batching and schedule
    micro_batch_size: int = _key(8, "pairs (or sequences) per process per forward")
    gradient_accumulation_steps: int = _key(1, "micro-batches per optimizer step")
    epochs: float = _key(1.0, "passes over the training data (fractional allowed)")
    max_steps: int | None = _key(None, "stop after this many optimizer steps (overrides epochs)")
    optimizer: str = _key("adamw", "optimizer", ("adamw", "rmsprop"))
    learning_rate: float = _key(5e-6, "peak learning rate")
    weight_decay: float = _key(0.0, "decoupled weight decay (adamw) / L2 (rmsprop)")
    adam_betas: list = _key([0.9, 0.999], "AdamW betas")
    rmsprop_alpha: float = _key(0.99, "RMSprop smoothing constant")
    optimizer_eps: float = _key(1e-8, "optimizer epsilon")
    lr_scheduler: str = _key("linear", "schedule after warmup", ("constant", "linear", "cosine"))
    warmup_steps: int = _key(0, "linear warmup in optimizer steps")
    warmup_ratio: float = _key(0.0, "warmup as a fraction of total steps (exclusive with warmup_steps)")
    max_grad_norm: float | None = _key(10.0, "gradient clipping norm (null: off)")
    mixed_precision: str = _key("no", "autocast precision", ("no", "bf16"))
    dtype: str = _key("float32", "parameter dtype of policy and reference", ("float32", "bfloat16"))
    gradient_checkpointing: bool = _key(False, "recompute activations in backward")
    disable_dropout: bool | None = _key(None, "turn dropout off (default: on for every method but sft)")
    chunked_ops: bool = _key(True, "log-probs and KL from hidden states in token chunks (false: full logits)")
    chunk_size: int = _key(1024, "tokens per chunk of the vocabulary projection")
    # method hyper-parameters: null is the method's default (alignlab.losses.registry, the papers' values);
    # each applies only to the methods whose record lists it
    beta: float | None = _key(None, "beta")
    loss_type: str | list | None = _key(None, "loss type (TRL's names); dpo: sigmoid, hinge, ipo, exo_pair, "
                                        "nca_pair, robust, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, "
                                        "apo_down, discopop, sigmoid_norm, sft, or a list of them; cpo: sigmoid, "
                                        "hinge, ipo, simpo; kto: kto, apo_zero_unpaired")
    loss_weights: list | None = _key(None, "weights of a loss_type list (default: all 1)")
    rpo_alpha: float | None = _key(None, "RPO: adds alpha x the chosen responses' token-mean NLL to DPO")
    discopop_tau: float | None = _key(None, "discopop loss type's temperature")
    use_weighting: bool | None = _key(None, "WPO: weigh each pair by its length-normalised probabilities (arXiv "
                                      "2406.11827)")
    ld_alpha: float | None = _key(None, "LD-DPO: weight in [0, 1] of the tokens past the shorter response's length "
                                  "(arXiv 2409.06411)")
    label_smoothing: float | None = _key(None, "label smoothing epsilon in [0, 0.5) (cdpo: in (0, 0.5))")
    ipo_normalize: bool | None = _key(None, "IPO on mean token log-ratios (TRL, the IPO paper) rather than sums")
    fdpo_divergence: str | None = _key(None, "f-DPO divergence: reverse_kl, forward_kl, js or alpha")
    fdpo_alpha: float | None = _key(None, "alpha of the f-DPO alpha-divergence")
    tdpo_alpha: float | None = _key(None, "TDPO2 alpha (scales the KL difference)")
    simpo_gamma: float | None = _key(None, "SimPO target margin gamma (absolute; gamma/beta = 0.25 at beta 2)")
    orpo_lambda: float | None = _key(None, "ORPO lambda")
    cpo_alpha: float | None = _key(None, "CPO: weight of the chosen responses' token-mean NLL")
    desirable_weight: float | None = _key(None, "KTO: weight of the desirable examples' losses")
    undesirable_weight: float | None = _key(None, "KTO: weight of the undesirable examples' losses")
    orpo_nll_normalization: str | None = _key(None, "ORPO NLL term: sequence_mean (the paper) or "
                                                    "batch_token_mean (TRL, official code)")
    sft_normalization: str | None = _key(None, "SFT loss normalisation: sum, seq_mean or token_mean")
    ift_lambda: float | None = _key(None, "IFT temporal-residual mix lambda (max)")
    ift_gamma: float | None = _key(None, "IFT discount gamma of future losses")
    ift_lambda_schedule: str | None = _key(None, "IFT lambda schedule: constant or linear")
    ift_lambda_min: float | None = _key(None, "IFT lambda at step 0 with the linear schedule")
    ift_ramp_steps: int | None = _key(None, "IFT linear lambda ramp length in optimizer steps")
    ift_lambda_noise_std: float | None = _key(None, "IFT lambda disturbance: lambda*(1+std*z), z~N(0,1) per step")
    ift_detach_weights: bool | None = _key(None, "IFT: stop the gradient through the loss weights")
    freeze_input_embeddings: bool | None = _key(None, "feed a frozen copy of the input embeddings "
                                                "(default: true for ift, false otherwise)")
    # reference model
    precompute_ref_logps: bool = _key(False, "DPO family: one reference pass before training, cached on disk")
    ref_cache_dir: str | None = _key(None, "where precomputed reference log-probs live (default: cache dir)")
    # LoRA
    lora: bool = _key(False, "train LoRA adapters (peft); the reference is the policy with adapters disabled")
    lora_r: int = _key(8, "LoRA rank")
    lora_alpha: float = _key(16.0, "LoRA alpha")
    lora_dropout: float = _key(0.0, "LoRA dropout")
    lora_target_modules: str = _key("all-linear", "LoRA target modules (peft syntax, comma separated)")
    save_merged: bool = _key(False, "LoRA: save merged weights instead of the adapter")
    # output
    run_dir: str | None = _key(None, "run directory (default: runs/<method>-<time>)")
    logging_steps: int = _key(1, "write metrics every N optimizer steps")
    eval_steps: int | None = _key(None, "evaluate every N steps (null: at start and end only)")
    eval_batch_size: int = _key(16, "pairs (or sequences) per eval forward")
    save_steps: int | None = _key(None, "checkpoint every N steps (null: only final/)")
    save_total_limit: int | None = _key(2, "keep the last N checkpoints (null: all)")
    tensorboard: bool = _key(True, "also write TensorBoard event files")
    progress: bool = _key(True, "show a progress bar")

    # ---------------------------------------------------------------------------------------------------------
    @property
    def method_record(self) -> Method:
        """The method's registry record (what it consumes, its loss)."""
        return get_method(self.method)

    @functools.cached_property
    def params(self) -> Params:
        """The method's validated hyper-parameters: the recipe's values over the paper's defaults. Built once (the
        step reads it every micro-batch); a config is not changed after it loads."""
        return self.method_record.make_params(self.method_values())

    def method_values(self) -> dict[str, Any]:
        """The method hyper-parameter keys the recipe set (not null)."""
        return {k: getattr(self, k) for k in METHOD_KEYS if getattr(self, k) is not None}

    @property
    def is_pair_method(self) -> bool:
        return self.method_record.paired

    @property
    def needs_reference(self) -> bool:
        return self.method_record.needs_ref

    @property
    def resolved_disable_dropout(self) -> bool:
        return not self.method_record.keeps_dropout if self.disable_dropout is None else self.disable_dropout

    @property
    def resolved_freeze_input_embeddings(self) -> bool:
        if self.freeze_input_embeddings is None:
            return self.method_record.mixes_inputs
        return self.freeze_input_embeddings

    def resolved_run_dir(self) -> Path:
        if self.run_dir is None:
            self.run_dir = f"runs/{self.method}-{time.strftime('%Y%m%d-%H%M%S')}"
        return Path(self.run_dir)

    def to_dict(self) -> dict[str, Any]:
        """Every key; the method's hyper-parameters resolved to the values it trains with (other methods' null)."""
        values = dataclasses.asdict(self)
        params = self.params
        values.update(dataclasses.asdict(params))
        for key in getattr(params, "inactive", dict)():  # keys without effect in this run: recorded as null
            values[key] = None
        return values

    def validate(self) -> TrainConfig:
        """Check choices, ranges and combinations; raise ConfigError naming the key."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"config key '{f.name}' must be one of {', '.join(choices)}; got {value!r}")
        positive = ("micro_batch_size", "gradient_accumulation_steps", "max_length", "max_prompt_length",
                    "chunk_size", "eval_batch_size", "logging_steps", "lora_r")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"config key '{name}' must be >= 1; got {getattr(self, name)}")
        if self.max_prompt_length >= self.max_length:
            raise ConfigError("config key 'max_prompt_length' must be smaller than 'max_length'")
        if self.learning_rate <= 0 or self.epochs <= 0:
            raise ConfigError("config keys 'learning_rate' and 'epochs' must be > 0")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"config key 'eval_fraction' must be in [0, 1); got {self.eval_fraction}")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError("config keys 'warmup_steps' and 'warmup_ratio' are exclusive: set one")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError("config key 'max_steps' must be >= 1 or null")
        for name in ("eval_steps", "save_steps", "save_total_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"config key '{name}' must be >= 1 or null; got {value}")
        method = self.method_record
        # a method's hyper-parameters: keys of other methods are errors, the method validates its own
        for name in self.method_values():
            if name not in method.param_keys():
                raise ConfigError(f"config key '{name}' applies to method {'/'.join(methods_with_key(name))}, "
                                  f"not '{self.method}'")
        params = self.params
        for name, needs in getattr(params, "inactive", dict)().items():
            if name in self.method_values():
                raise ConfigError(f"config key '{name}' has no effect without {needs}")
        if self.precompute_ref_logps and not method.precomputable_ref:
            if method.needs_token_kl:
                raise ConfigError(f"method '{self.method}' needs the reference model online (its full distribution "
                                  "at every token); precompute_ref_logps is only for the DPO family")
            raise ConfigError(f"config key 'precompute_ref_logps' applies to methods with a reference "
                              f"({'/'.join(n for n, m in METHOD_RECORDS.items() if m.precomputable_ref)}), "
                              f"not '{self.method}'")
        least = getattr(params, "min_micro_batch_size", lambda: 1)()
        if self.micro_batch_size < least or self.eval_batch_size < least:
            raise ConfigError(f"method '{self.method}' needs micro_batch_size and eval_batch_size >= {least} (its KL "
                              "reference point pairs each prompt with another example's completion)")
        online = getattr(params, "online_ref_reason", lambda: None)()
        if self.precompute_ref_logps and online:
            raise ConfigError(f"precompute_ref_logps: {online}; drop one of the two keys")
        if self.ref_model is not None and not method.needs_ref:
            raise ConfigError(f"config key 'ref_model' applies to methods with a reference "
                              f"({'/'.join(n for n, m in METHOD_RECORDS.items() if m.needs_ref)}), not '{self.method}'")
        if self.precompute_ref_logps and self.lora:
            raise ConfigError("precompute_ref_logps with lora: the adapter-disabled policy is already the "
                              "reference at no memory cost; drop one of the two keys")
        if self.ref_model is not None and self.lora:
            raise ConfigError("config key 'ref_model' with lora: the reference is the policy with adapters "
                              "disabled; drop 'ref_model'")
        if self.save_merged and not self.lora:
            raise ConfigError("config key 'save_merged' applies only with lora: true")
        if method.mixes_inputs and not self.resolved_freeze_input_embeddings:
            raise ConfigError(f"method '{self.method}' feeds mixed input embeddings from a frozen copy; "
                              "freeze_input_embeddings: false is not supported")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"config key 'warmup_ratio' must be in [0, 1); got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise ConfigError(f"config key 'weight_decay' must be >= 0; got {self.weight_decay}")
        if self.warmup_steps < 0:
            raise ConfigError("config key 'warmup_steps' must be >= 0")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError("config key 'max_grad_norm' must be > 0 or null")
        defaults = TrainConfig()
        # keys that only act together with another key's value
        dependent = {
            "ref_cache_dir": (self.precompute_ref_logps, "precompute_ref_logps: true"),
            "chunk_size": (self.chunked_ops or method.mixes_inputs, "chunked_ops: true"),
        }
        for name, (active, needs) in dependent.items():
            if getattr(self, name) != getattr(defaults, name) and not active:
                raise ConfigError(f"config key '{name}' has no effect without {needs}")
        if len(self.adam_betas) != 2:
            raise ConfigError("config key 'adam_betas' must be a list of two floats")
        if self.optimizer != "adamw" and self.adam_betas != [0.9, 0.999]:
            raise ConfigError("config key 'adam_betas' applies to optimizer 'adamw' only")
        if self.optimizer != "rmsprop" and self.rmsprop_alpha != 0.99:
            raise ConfigError("config key 'rmsprop_alpha' applies to optimizer 'rmsprop' only")
        lora_keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
        if not self.lora and any(getattr(self, k) != getattr(defaults, k) for k in lora_keys):
            raise ConfigError("LoRA keys (lora_r, lora_alpha, lora_dropout, lora_target_modules) need lora: true")
        return self


def key_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def describe_keys() -> str:
    """One line per key: name, default, choices, help (what `alignlab train --list-keys` prints)."""
    lines = []
    for f in dataclasses.fields(TrainConfig):
        default = repr(f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        choices = f.metadata.get("choices")
        extra = f" [{'|'.join(choices)}]" if choices else ""
        if f.name in METHOD_KEYS:  # the default is the method's, from the registry
            default = "per method"
            extra = " [" + ", ".join(f"{m}: {v!r}" for m, v in param_defaults(f.name).items()) + "]"
        lines.append(f"{f.name:<26} {default:<22} {f.metadata['help']}{extra}")
    return "\n".join(lines)


def _check_keys(keys: list[str], where: str) -> None:
    names = key_names()
    for key in keys:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"{where}: '{key}' is not a config key{hint}")


def _coerce(name: str, value: Any) -> Any:
    """Accept YAML ints for float keys and reject values of the wrong type with the key named."""
    f = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    annotation = str(f.type)
    if value is None:
        if "None" not in annotation:
            raise ConfigError(f"config key '{name}' cannot be null")
        return None
    if annotation.startswith("float") and not isinstance(value, bool):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{name}' must be a number; got {value!r}") from None
    if annotation.startswith("bool") and not isinstance(value, bool):
        raise ConfigError(f"config key '{name}' must be true or false; got {value!r}")
    if annotation.startswith("int") and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"config key '{name}' must be an integer; got {value!r}")
    if annotation.startswith("str | list"):  # a name or a list of names
        if not isinstance(value, (str, list)):
            raise ConfigError(f"config key '{name}' must be a name or a list of names; got {value!r}")
        return value
    if annotation.startswith("str") and not isinstance(value, str):
        raise ConfigError(f"config key '{name}' must be a string; got {value!r}")
    if isinstance(default, (list, dict)) and not isinstance(value, type(default)):
        raise ConfigError(f"config key '{name}' must be a {type(default).__name__}; got {value!r}")
    return value


def run_config_values(values: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config (config.yaml, checkpoint state) as recipe values: hyper-parameters of methods other
    than the run's are dropped (runs written before the method registry recorded every method's defaults)."""
    method = get_method(values.get("method", TrainConfig.method))
    kept = {k: v for k, v in values.items() if k not in METHOD_KEYS or k in method.param_keys()}
    try:
        params = method.make_params({k: v for k, v in kept.items() if k in method.param_keys() and v is not None})
    except ConfigError:
        return kept  # load_config says what is wrong with it
    for key in getattr(params, "inactive", dict)():  # recorded defaults that had no effect in that run
        kept.pop(key, None)
    return kept


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Build a validated TrainConfig from a YAML recipe (optional), a dict, and `key=value` overrides."""
    values: dict[str, Any] = dict(base or {})
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"recipe '{p}' does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"recipe '{p}' is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"recipe '{p}' must be a mapping of config keys")
        _check_keys(list(loaded), f"recipe '{p}'")
        values.update(loaded)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        _check_keys([key], "command line")
        try:
            values[key] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            values[key] = raw
    _check_keys(list(values), "config")
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return TrainConfig(**coerced).validate()


__all__ = ["METHODS", "METHOD_KEYS", "TrainConfig", "describe_keys", "load_config", "run_config_values"]
