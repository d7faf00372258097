"""Training configuration in six sections — method, data, optim, model (LoRA included), run, online (rounds of
sampling and judging, off by default) — each a dataclass that validates itself; TrainConfig holds them and checks
what spans two sections.

Recipes and `key=value` overrides name flat keys (`learning_rate: 1e-6`, `max_length=256`): every key belongs
to exactly one section, so a flat key maps to its place (`method` and `model` name the section's `name`). A
recipe may also group keys by section (`optim: {learning_rate: 1e-6}`, `model: {name: gpt2, lora: true}`) and an
override may name the section (`optim.learning_rate=1e-6`). Values are checked on load: unknown keys, wrong
types, NaN or infinite numbers, keys that do not apply to the method and unsupported combinations raise one
ConfigError naming the key; nothing is silently ignored. `alignlab train --list-keys` prints the table by section.
config.yaml in a run directory holds the flat keys (`TrainConfig.to_dict`).

This module imports neither torch nor the loss registry at import time (the registry is read when a config is
validated), so a mistyped key is reported before any heavy import.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from alignlab.data.formats import FORMATS
from alignlab.data.spec import PROMPT_TRUNCATIONS, RESPONSE_TRUNCATIONS, SFT_TURNS, DataSpec
from alignlab.errors import ConfigError

if TYPE_CHECKING:
    from alignlab.losses.registry import Method, Params

def _key(default: Any, help: str, choices: tuple | None = None) -> Any:
    meta = {"help": help, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


class _Section:
    """A config section: its fields are recipe keys with help text and choices; `validate` checks them."""

    NAME: ClassVar[str]

    def validate(self) -> None:
        """Choices and finiteness of every field; subclasses add their ranges and combinations."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                raise ConfigError(f"config key '{flat_key(self.NAME, f.name)}' must be one of {', '.join(choices)}; "
                                  f"got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"config key '{flat_key(self.NAME, f.name)}' must be a finite number; got {value}")

    def _at_least(self, names: tuple[str, ...], least: int, *, optional: bool = False) -> None:
        for name in names:
            value = getattr(self, name)
            if (value is not None or not optional) and value < least:
                tail = " or null" if optional else ""
                raise ConfigError(f"config key '{name}' must be >= {least}{tail}; got {value}")

    def _default(self, name: str) -> Any:
        f = next(f for f in dataclasses.fields(self) if f.name == name)
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@dataclass
class MethodConfig(_Section):
    """The method and its hyper-parameters: null is the method's default (the registry's Params, the papers'
    values); each applies only to the methods whose Params list it."""

    NAME: ClassVar[str] = "method"
    name: str = _key("tdpo2", "training method (the names in alignlab.losses.registry.METHODS)")
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
    disable_dropout: bool | None = _key(None, "turn dropout off (default: on for every method but sft)")
    freeze_input_embeddings: bool | None = _key(None, "feed a frozen copy of the input embeddings "
                                                "(default: true for ift, false otherwise)")

    @property
    def record(self) -> Method:
        """The method's registry record (what it consumes, its loss)."""
        from alignlab.losses.registry import get_method

        return get_method(self.name)

    @functools.cached_property
    def params(self) -> Params:
        """The validated hyper-parameters: the recipe's values over the paper's defaults. Built once (the step
        reads it every micro-batch); a config is not changed after it loads."""
        return self.record.make_params(self.values())

    def values(self) -> dict[str, Any]:
        """The hyper-parameter keys the recipe set (not null)."""
        return {k: getattr(self, k) for k in METHOD_KEYS if getattr(self, k) is not None}

    @property
    def resolved_disable_dropout(self) -> bool:
        return not self.record.keeps_dropout if self.disable_dropout is None else self.disable_dropout

    @property
    def resolved_freeze_input_embeddings(self) -> bool:
        if self.freeze_input_embeddings is None:
            return self.record.mixes_inputs
        return self.freeze_input_embeddings

    def validate(self) -> None:
        super().validate()
        from alignlab.losses.registry import methods_with_key

        record = self.record  # an unknown name: ConfigError listing the methods
        for name in self.values():  # keys of other methods are errors; the method validates its own
            if name not in record.param_keys():
                raise ConfigError(f"config key '{name}' applies to method {'/'.join(methods_with_key(name))}, "
                                  f"not '{self.name}'")
        for name, needs in getattr(self.params, "inactive", dict)().items():
            if name in self.values():
                raise ConfigError(f"config key '{name}' has no effect without {needs}")
        if record.mixes_inputs and not self.resolved_freeze_input_embeddings:
            raise ConfigError(f"method '{self.name}' feeds mixed input embeddings from a frozen copy; "
                              "freeze_input_embeddings: false is not supported")


@dataclass
class DataConfig(_Section):
    """Where the data comes from and how it becomes examples (`spec` hands the settings to the loaders)."""

    NAME: ClassVar[str] = "data"
    train_data: str | None = _key(None, "training data: file, directory or datasets name (default: bundled samples)")
    train_split: str = _key("train", "split of train_data")
    eval_data: str | None = _key(None, "held-out data (default: eval_fraction of train_data)")
    eval_split: str = _key("test", "split of eval_data (a single file is its own split)")
    eval_fraction: float = _key(0.1, "fraction of train_data held out when eval_data is not given (0: no eval)")
    data_format: str = _key("auto", "data format (auto-detected by default)", ("auto", *FORMATS))
    columns: dict = _key({}, "column renames, canonical -> source name, e.g. {prompt: question}")
    max_length: int = _key(512, "max tokens of prompt + response")
    max_prompt_length: int = _key(256, "max prompt tokens when a pair is too long")
    prompt_truncation: str = _key("keep_end", "which end of a long prompt is kept", PROMPT_TRUNCATIONS)
    response_truncation: str = _key("truncate", "long responses: cut at the end, or drop the example",
                                    RESPONSE_TRUNCATIONS)
    sft_turns: str = _key("all", "messages data: train all assistant turns or the last", SFT_TURNS)
    limit: int | None = _key(None, "use only the first N records (after shuffling)")
    drop_identical_pairs: bool = _key(True, "drop pairs whose chosen and rejected responses are equal")

    def spec(self, split: str) -> DataSpec:
        """The loaders' settings for one split of this section's data."""
        return DataSpec(split=split, format=self.data_format, columns=self.columns or None,
                        max_length=self.max_length, max_prompt_length=self.max_prompt_length,
                        prompt_truncation=self.prompt_truncation, response_truncation=self.response_truncation,
                        sft_turns=self.sft_turns, limit=self.limit, drop_identical_pairs=self.drop_identical_pairs)

    def validate(self) -> None:
        super().validate()
        self._at_least(("max_length", "max_prompt_length"), 1)
        self._at_least(("limit",), 1, optional=True)
        if self.max_prompt_length >= self.max_length:
            raise ConfigError("config key 'max_prompt_length' must be smaller than 'max_length'")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ConfigError(f"config key 'eval_fraction' must be in [0, 1); got {self.eval_fraction}")
        self.spec(self.train_split)  # what the loaders check (column map, ...)


@dataclass
class OptimConfig(_Section):
    """Batching, the optimizer and its schedule."""

    NAME: ClassVar[str] = "optim"
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
    max_nonfinite_steps: int = _key(3, "stop after this many consecutive steps skipped for a NaN/inf loss or "
                                       "gradient norm")

    def validate(self) -> None:
        super().validate()
        self._at_least(("micro_batch_size", "gradient_accumulation_steps", "max_nonfinite_steps"), 1)
        self._at_least(("max_steps",), 1, optional=True)
        self._at_least(("warmup_steps",), 0)
        for name in ("learning_rate", "epochs", "optimizer_eps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"config key '{name}' must be > 0; got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"config key 'weight_decay' must be >= 0; got {self.weight_decay}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"config key 'warmup_ratio' must be in [0, 1); got {self.warmup_ratio}")
        if self.warmup_steps and self.warmup_ratio:
            raise ConfigError("config keys 'warmup_steps' and 'warmup_ratio' are exclusive: set one")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError("config key 'max_grad_norm' must be > 0 or null")
        betas = self.adam_betas
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and math.isfinite(b) and 0 <= b < 1 for b in betas):
            raise ConfigError(f"config key 'adam_betas' must be a list of two numbers in [0, 1); got {betas!r}")
        if self.optimizer != "adamw" and betas != self._default("adam_betas"):
            raise ConfigError("config key 'adam_betas' applies to optimizer 'adamw' only")
        if self.optimizer != "rmsprop" and self.rmsprop_alpha != self._default("rmsprop_alpha"):
            raise ConfigError("config key 'rmsprop_alpha' applies to optimizer 'rmsprop' only")


@dataclass
class ModelConfig(_Section):
    """The policy, its reference and tokenizer, how they compute, and LoRA."""

    NAME: ClassVar[str] = "model"
    name: str = _key("alignlab/tiny-llama", "policy: built-in name, local path or Hugging Face id")
    ref_model: str | None = _key(None, "reference model (default: the initial policy)")
    tokenizer: str | None = _key(None, "tokenizer (default: the model's)")
    dtype: str = _key("float32", "parameter dtype of policy and reference", ("float32", "bfloat16"))
    mixed_precision: str = _key("no", "autocast precision", ("no", "bf16", "fp16"))
    gradient_checkpointing: bool = _key(False, "recompute activations in backward")
    chunked_ops: bool = _key(True, "log-probs and KL from hidden states in token chunks (false: full logits)")
    chunk_size: int = _key(1024, "most tokens per tile of the vocabulary projection (slices are sized by chunk_mib)")
    chunk_mib: int = _key(8, "memory budget of one tile of the chunked ops in MiB: its [tokens, vocabulary slice] "
                             "temporaries (policy and reference) stay within it; raise it on a GPU for speed")
    prefix_sharing: bool = _key(True, "paired methods: each pair's prompt runs once ([prompt; chosen; rejected] under "
                                      "a block attention mask, exact); a model that cannot: padded batches, one line")
    packing: bool = _key(False, "pack sequences (pairs, with prefix_sharing) into rows without padding; attention "
                                "masked per sequence, exact; a model that cannot: padded batches, one line")
    packing_tokens: int | None = _key(None, "longest packed row in tokens (null: max_length)")
    precompute_ref_logps: bool = _key(False, "DPO family: one reference pass before training, cached on disk")
    ref_cache_dir: str | None = _key(None, "where precomputed reference log-probs live (default: cache dir)")
    lora: bool = _key(False, "train LoRA adapters (peft); the reference is the policy with adapters disabled")
    lora_r: int = _key(8, "LoRA rank")
    lora_alpha: float = _key(16.0, "LoRA alpha")
    lora_dropout: float = _key(0.0, "LoRA dropout")
    lora_target_modules: str = _key("all-linear", "LoRA target modules (peft syntax, comma separated)")
    save_merged: bool = _key(False, "LoRA: save merged weights instead of the adapter")

    def validate(self) -> None:
        super().validate()
        self._at_least(("chunk_size", "chunk_mib", "lora_r"), 1)
        self._at_least(("packing_tokens",), 1, optional=True)
        if self.packing_tokens is not None and not self.packing:
            raise ConfigError("config key 'packing_tokens' has no effect without packing: true")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"config key 'lora_dropout' must be in [0, 1); got {self.lora_dropout}")
        if self.ref_cache_dir is not None and not self.precompute_ref_logps:
            raise ConfigError("config key 'ref_cache_dir' has no effect without precompute_ref_logps: true")
        if self.precompute_ref_logps and self.lora:
            raise ConfigError("precompute_ref_logps with lora: the adapter-disabled policy is already the "
                              "reference at no memory cost; drop one of the two keys")
        if self.ref_model is not None and self.lora:
            raise ConfigError("config key 'ref_model' with lora: the reference is the policy with adapters "
                              "disabled; drop 'ref_model'")
        if self.save_merged and not self.lora:
            raise ConfigError("config key 'save_merged' applies only with lora: true")
        lora_keys = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules")
        if not self.lora and any(getattr(self, k) != self._default(k) for k in lora_keys):
            raise ConfigError("LoRA keys (lora_r, lora_alpha, lora_dropout, lora_target_modules) need lora: true")


@dataclass
class RunConfig(_Section):
    """The run directory, seed, logging, evaluation and checkpoints."""

    NAME: ClassVar[str] = "run"
    seed: int = _key(0, "seed for data order, initialisation of built-in models and dropout")
    run_dir: str | None = _key(None, "run directory (default: runs/<method>-<time>)")
    logging_steps: int = _key(1, "write metrics every N optimizer steps")
    eval_steps: int | None = _key(None, "evaluate every N steps (null: at start and end only)")
    eval_batch_size: int = _key(16, "pairs (or sequences) per eval forward")
    save_steps: int | None = _key(None, "checkpoint every N steps (null: only final/)")
    save_total_limit: int | None = _key(2, "keep the last N checkpoints (null: all)")
    tensorboard: bool = _key(True, "also write TensorBoard event files")
    progress: bool = _key(True, "show a progress bar")

    def validate(self) -> None:
        super().validate()
        self._at_least(("logging_steps", "eval_batch_size"), 1)
        self._at_least(("eval_steps", "save_steps", "save_total_limit"), 1, optional=True)


@dataclass
class OnlineConfig(_Section):
    """Online preference training (alignlab.online): rounds of sampling from the current policy, judging, pairing
    and training. Off while `rounds` is null; every other key of the section then keeps its default."""

    NAME: ClassVar[str] = "online"
    rounds: int | None = _key(None, "online training: rounds of sample -> judge -> pair -> train (null: off)")
    judge: str | dict | None = _key(None, "online: the reward judge, an alignlab.judges spec: py:module:function, "
                                          "rm:MODEL, https://host/v1#MODEL, a .yaml file or a mapping {kind: ...}")
    samples_per_prompt: int = _key(4, "online: completions sampled per prompt and round (K)")
    prompts_per_round: int | None = _key(None, "online: distinct prompts sampled per round, a seeded draw of its "
                                               "own (null: every prompt, every round)")
    steps_per_round: int | None = _key(None, "online: optimizer steps per round (null: `epochs` passes over the "
                                             "round's pairs)")
    pair_rule: str = _key("best_vs_worst", "online: pairs of one prompt's samples: the best against the worst, "
                                           "or every ordered pair", ("best_vs_worst", "all_pairs"))
    min_margin: float = _key(0.0, "online: a pair needs reward(chosen) - reward(rejected) > min_margin (ties "
                                  "never pair)")
    reference: str = _key("fixed", "online: the reference of every round: the initial one, or the previous "
                                   "round's policy (iterative DPO)", ("fixed", "previous_round"))
    max_new_tokens: int = _key(64, "online: most tokens sampled per completion")
    temperature: float = _key(1.0, "online: sampling temperature (> 0)")
    top_p: float = _key(1.0, "online: nucleus sampling mass (1: off)")
    top_k: int = _key(0, "online: sample from the k most likely tokens (0: off)")
    generation_batch_size: int = _key(64, "online: sequences per generate call")

    def validate(self) -> None:
        super().validate()
        if self.rounds is None:
            changed = [f.name for f in dataclasses.fields(self)
                       if f.name != "rounds" and getattr(self, f.name) != self._default(f.name)]
            if changed:
                raise ConfigError(f"config key '{changed[0]}' applies to online training: set rounds (>= 1)")
            return
        self._at_least(("rounds", "max_new_tokens", "generation_batch_size"), 1)
        self._at_least(("samples_per_prompt",), 2)
        self._at_least(("prompts_per_round", "steps_per_round"), 1, optional=True)
        self._at_least(("top_k",), 0)
        if self.judge is None or self.judge in ("", {}):
            raise ConfigError("config key 'judge' is required with online rounds: a reward judge spec, e.g. "
                              "py:module:function or rm:MODEL")
        if self.temperature <= 0:
            raise ConfigError(f"config key 'temperature' must be > 0 (greedy samples of a prompt are identical "
                              f"and give no pairs); got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"config key 'top_p' must be in (0, 1]; got {self.top_p}")
        if self.min_margin < 0:
            raise ConfigError(f"config key 'min_margin' must be >= 0; got {self.min_margin}")


SECTIONS: dict[str, type[_Section]] = {s.NAME: s for s in (MethodConfig, DataConfig, OptimConfig, ModelConfig,
                                                          RunConfig, OnlineConfig)}
# the two `name` fields are the recipe keys `method` and `model`
_RENAMED = {("method", "name"): "method", ("model", "name"): "model"}


def flat_key(section: str, name: str) -> str:
    """The recipe key of a section's field."""
    return _RENAMED.get((section, name), name)


# recipe key -> (section, field)
KEYS: dict[str, tuple[str, str]] = {flat_key(s, f.name): (s, f.name)
                                    for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
_NOT_PARAMS = {"name", "disable_dropout", "freeze_input_embeddings"}
# every recipe key that is some method's hyper-parameter (the registry's Params fields; a test pins the two)
METHOD_KEYS = tuple(sorted(f.name for f in dataclasses.fields(MethodConfig) if f.name not in _NOT_PARAMS))


@dataclass
class TrainConfig:
    """A validated training config: one object per section."""

    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    run: RunConfig = field(default_factory=RunConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> TrainConfig:
        """Build (unvalidated) from flat recipe keys; an unknown key is a ConfigError."""
        _check_keys(list(values), "config")
        grouped: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in values.items():
            section, name = KEYS[key]
            grouped[section][name] = value
        return cls(**{name: SECTIONS[name](**kw) for name, kw in grouped.items()})

    def sections(self) -> tuple[_Section, ...]:
        return (self.method, self.data, self.optim, self.model, self.run, self.online)

    def resolved_run_dir(self) -> Path:
        if self.run.run_dir is None:
            self.run.run_dir = f"runs/{self.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        return Path(self.run.run_dir)

    def to_dict(self) -> dict[str, Any]:
        """Every flat key; the method's hyper-parameters resolved to the values it trains with (other methods' and
        keys without effect in this run: null)."""
        values = {flat_key(s.NAME, f.name): getattr(s, f.name)
                  for s in self.sections() for f in dataclasses.fields(s)}
        values = {k: (type(v)(v) if isinstance(v, (list, dict)) else v) for k, v in values.items()}
        params = self.method.params
        values.update(dataclasses.asdict(params))
        for key in getattr(params, "inactive", dict)():
            values[key] = None
        return values

    def validate(self) -> TrainConfig:
        """Each section checks itself, then the combinations across sections; raise ConfigError naming the key."""
        for section in self.sections():
            section.validate()
        from alignlab.losses.registry import METHODS as RECORDS

        method, model, name = self.method.record, self.model, self.method.name
        if model.precompute_ref_logps and not method.precomputable_ref:
            if method.needs_token_kl:
                raise ConfigError(f"method '{name}' needs the reference model online (its full distribution at "
                                  "every token); precompute_ref_logps is only for the DPO family")
            raise ConfigError(f"config key 'precompute_ref_logps' applies to methods with a reference "
                              f"({'/'.join(n for n, m in RECORDS.items() if m.precomputable_ref)}), not '{name}'")
        online = getattr(self.method.params, "online_ref_reason", lambda: None)()
        if model.precompute_ref_logps and online:
            raise ConfigError(f"precompute_ref_logps: {online}; drop one of the two keys")
        if model.ref_model is not None and not method.needs_ref:
            raise ConfigError(f"config key 'ref_model' applies to methods with a reference "
                              f"({'/'.join(n for n, m in RECORDS.items() if m.needs_ref)}), not '{name}'")
        least = getattr(self.method.params, "min_micro_batch_size", lambda: 1)()
        if self.optim.micro_batch_size < least or self.run.eval_batch_size < least:
            raise ConfigError(f"method '{name}' needs micro_batch_size and eval_batch_size >= {least} (its KL "
                              "reference point pairs each prompt with another example's completion)")
        for key in ("chunk_size", "chunk_mib"):
            if getattr(model, key) != model._default(key) and not (model.chunked_ops or method.mixes_inputs):
                raise ConfigError(f"config key '{key}' has no effect without chunked_ops: true")
        if self.online.rounds is not None:
            self._check_online()
        return self

    def _check_online(self) -> None:
        """What online rounds need from the other sections (alignlab.online trains each round as a run)."""
        from alignlab.losses.registry import METHODS as RECORDS

        method, name = self.method.record, self.method.name
        if not method.paired:
            raise ConfigError(f"online rounds train on pairs; method '{name}' does not (paired methods: "
                              f"{', '.join(n for n, m in RECORDS.items() if m.paired)})")
        if self.online.reference != "fixed" and not method.needs_ref:
            raise ConfigError(f"config key 'reference' applies to methods with a reference, not '{name}'")
        if self.online.reference != "fixed" and self.model.ref_model is not None:
            raise ConfigError("config key 'ref_model' names a fixed reference; reference: previous_round replaces "
                              "it every round: drop one of the two keys")
        if self.model.lora:
            raise ConfigError("lora: true is not supported with online rounds (each round starts from the previous "
                              "round's full final/ weights): drop lora")
        if self.optim.max_steps is not None:
            raise ConfigError("config key 'max_steps' counts the steps of one run; with online rounds set "
                              "steps_per_round")
        if self.run.eval_steps is not None:
            raise ConfigError("config key 'eval_steps' has no effect with online rounds (held-out metrics are "
                              "computed after every round): drop it")


def key_names() -> list[str]:
    return list(KEYS)


def describe_keys() -> str:
    """The keys by section, one line each: name, default, help, choices (`alignlab train --list-keys`)."""
    from alignlab.losses.registry import METHODS, param_defaults

    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        for f in dataclasses.fields(cls):
            key = flat_key(section, f.name)
            default = repr(f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
            choices = tuple(METHODS) if key == "method" else f.metadata.get("choices")
            extra = f" [{'|'.join(choices)}]" if choices else ""
            if key in METHOD_KEYS:  # the default is the method's, from the registry
                default = "per method"
                extra = " [" + ", ".join(f"{m}: {v!r}" for m, v in param_defaults(key).items()) + "]"
            lines.append(f"{key:<26} {default:<22} {f.metadata['help']}{extra}")
    return "\n".join(lines)


# names users reach for that difflib would match to the wrong key
_HINTS = {"data": "train_data", "dataset": "train_data", "train_file": "train_data", "eval_file": "eval_data",
          "lr": "learning_rate", "batch_size": "micro_batch_size", "output_dir": "run_dir",
          "grad_accum": "gradient_accumulation_steps", "steps": "max_steps", "model_name": "model"}


def _check_keys(keys: list[str], where: str) -> None:
    for key in keys:
        if key not in KEYS:
            close = _HINTS.get(key) or next(iter(difflib.get_close_matches(key, list(KEYS), n=1)), None)
            hint = f" (did you mean '{close}'?)" if close else ""
            raise ConfigError(f"{where}: '{key}' is not a config key{hint}")


def _field(key: str) -> dataclasses.Field:
    section, name = KEYS[key]
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)


def _coerce(key: str, value: Any) -> Any:
    """Accept YAML ints for float keys and reject values of the wrong type (or NaN/inf) with the key named."""
    f = _field(key)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    annotation = str(f.type)
    if value is None:
        if "None" not in annotation:
            raise ConfigError(f"config key '{key}' cannot be null")
        return None
    if annotation.startswith("float") and not isinstance(value, bool):
        try:  # YAML 1.1 reads 1e-4 (no dot) as a string
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}' must be a number; got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"config key '{key}' must be a finite number; got {value!r}")
        return number
    if annotation.startswith("bool") and not isinstance(value, bool):
        raise ConfigError(f"config key '{key}' must be true or false; got {value!r}")
    if annotation.startswith("int") and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"config key '{key}' must be an integer; got {value!r}")
    if annotation.startswith("str | dict"):  # a name or a mapping (a judge spec)
        if not isinstance(value, (str, dict)):
            raise ConfigError(f"config key '{key}' must be a name or a mapping; got {value!r}")
        return value
    if annotation.startswith("str | list"):  # a name or a list of names
        if not isinstance(value, (str, list)):
            raise ConfigError(f"config key '{key}' must be a name or a list of names; got {value!r}")
        return value
    if annotation.startswith("str") and not isinstance(value, str):
        raise ConfigError(f"config key '{key}' must be a string; got {value!r}")
    if isinstance(default, (list, dict)) and not isinstance(value, type(default)):
        raise ConfigError(f"config key '{key}' must be a {type(default).__name__}; got {value!r}")
    if isinstance(value, list):
        for item in value:
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"config key '{key}' must hold finite numbers; got {value!r}")
    return value


def _flatten(loaded: dict[str, Any], where: str) -> dict[str, Any]:
    """Recipe mapping -> flat keys: a section name whose value is a mapping groups that section's keys."""
    flat: dict[str, Any] = {}
    for key, value in loaded.items():
        if key in SECTIONS and (isinstance(value, dict) or value is None and key not in KEYS):
            for name, inner in (value or {}).items():
                flat_name = flat_key(key, name) if name == "name" else name
                _check_keys([flat_name], f"{where}, section '{key}'")
                if KEYS[flat_name][0] != key:
                    raise ConfigError(f"{where}: key '{flat_name}' belongs to section '{KEYS[flat_name][0]}', "
                                      f"not '{key}'")
                flat[flat_name] = inner
        else:
            _check_keys([key], where)
            flat[key] = value
    return flat


def run_config_values(values: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config (config.yaml, checkpoint state) as recipe values: hyper-parameters of methods other
    than the run's are dropped (runs written before the method registry recorded every method's defaults)."""
    from alignlab.losses.registry import get_method

    method = get_method(values.get("method", MethodConfig.name))
    kept = {k: v for k, v in values.items() if k not in METHOD_KEYS or k in method.param_keys()}
    # runs saved before drop_identical_pairs existed kept identical pairs: resume them on the same examples
    kept.setdefault("drop_identical_pairs", False)
    try:
        params = method.make_params({k: v for k, v in kept.items() if k in method.param_keys() and v is not None})
    except ConfigError:
        return kept  # load_config says what is wrong with it
    for key in getattr(params, "inactive", dict)():  # recorded defaults that had no effect in that run
        kept.pop(key, None)
    return kept


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Build a validated TrainConfig from a YAML recipe (optional), a dict of flat keys, and `key=value`
    (or `section.key=value`) overrides."""
    values: dict[str, Any] = _flatten(base or {}, "config")
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
        values.update(_flatten(loaded, f"recipe '{p}'"))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"command-line override '{item}' must look like key=value")
        key, raw = item.split("=", 1)
        section, dot, name = key.partition(".")
        if dot:
            if section not in SECTIONS:
                raise ConfigError(f"command line: '{section}' is not a config section ({', '.join(SECTIONS)})")
            key = next(iter(_flatten({section: {name: None}}, "command line")))
        _check_keys([key], "command line")
        try:
            values[key] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            values[key] = raw
    _check_keys(list(values), "config")
    return TrainConfig.from_values({k: _coerce(k, v) for k, v in values.items()}).validate()


__all__ = ["METHOD_KEYS", "SECTIONS", "DataConfig", "MethodConfig", "ModelConfig", "OnlineConfig", "OptimConfig",
           "RunConfig", "TrainConfig", "describe_keys", "load_config", "run_config_values"]
