"""The training loop for every method, on accelerate (one process, or DDP / FSDP / DeepSpeed via accelerate launch).

Batching semantics: `micro_batch_size` rows per process per forward,
`gradient_accumulation_steps` forwards per optimizer step, so a step sees G = micro x accumulation x processes
pairs (or sequences). The data order is a pure function of (seed, step): epoch e is a seeded permutation of the
prompts (one prompt's pairs stay consecutive), step k takes the k-th block of G examples of it and each process
takes its slice, so resuming needs only the step. The held-out split is drawn by prompt, too.
The step's loss is sum(per-row losses) / (global rows, or global response tokens for SFT token_mean), scaled by
the process count because DDP averages gradients: batch 8 x accumulation 1 and 4 x 2 give the same gradients.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, gather_object, set_seed

from alignlab.assets import cache_dir, load_tokenizer
from alignlab.cache import data_fingerprint, write_text_atomically
from alignlab.data import (
    SAMPLES_DIR,
    collate_preference,
    collate_sft,
    load_preference_data,
    load_sft_data,
    load_unpaired_data,
    padding_id,
)
from alignlab.data.collate import collate_unpaired
from alignlab.errors import AlignlabError, ConfigError, RunInterrupted
from alignlab.models import Trunk, packed_layout_problem, score_batches
from alignlab.train import checkpoint as ckpt
from alignlab.train import fsdp, train_state
from alignlab.train.callbacks import TrainerCallback
from alignlab.train.config import TrainConfig, load_config, run_config_values
from alignlab.train.methods import (
    SIDE_METRICS,
    StepOutput,
    ift_lambda,
    pair_step,
    sequence_step,
    unpaired_step,
)
from alignlab.train.metrics import MetricsWriter
from alignlab.train.model_card import write_model_card
from alignlab.train.modeling import autocast, load_policy, load_reference, reference_trunk
from alignlab.train.ref_cache import REF_CACHE_VERSION, cached_reference_logps, reference_fingerprint
from alignlab.train.run_info import load_run_config
from alignlab.train.run_lock import RunLock

# Keys that may change between a run and its resumption; any other difference is an error.
_RESUMABLE_CHANGES = {"max_steps", "epochs", "save_steps", "save_total_limit", "logging_steps", "eval_steps",
                      "progress", "tensorboard", "run_dir", "max_nonfinite_steps"}


# What a run that never reached a checkpoint leaves, removed when it starts again.
_RUN_FILES = ("metrics.jsonl", "tensorboard", "config.yaml", "data_report.txt", "flip_baseline.json")
# A step whose weight norm moves by more than this fraction moved the weights at least that far (triangle
# inequality: ||w_t - w_t-1|| >= | ||w_t|| - ||w_t-1|| |); healthy fine-tuning moves them by ~1e-3 or less.
DIVERGENCE_RATIO = 0.1


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    eval_before: dict[str, float] = field(default_factory=dict)
    eval_after: dict[str, float] = field(default_factory=dict)
    last_train: dict[str, float] = field(default_factory=dict)
    # lines a user must read before trusting the run (divergence), also in metrics.jsonl as `diverged`
    warnings: list[str] = field(default_factory=list)


class _Health:
    """Per-step bookkeeping of non-finite steps and weight-norm jumps (the divergence warning)."""

    def __init__(self, weight_norm: float):
        self.initial = self.previous = weight_norm
        self.nonfinite_run = 0
        self.warning: str | None = None

    def update(self, finite: bool, weight_norm: float | None) -> dict[str, Any]:
        """The step's health metrics: skipped_nonfinite, weight_norm, update_ratio, diverged."""
        if not finite:
            self.nonfinite_run += 1
            return {"skipped_nonfinite": 1}
        self.nonfinite_run = 0
        ratio = abs(weight_norm - self.previous) / max(self.previous, 1e-12)
        self.previous = weight_norm
        diverged = not math.isfinite(weight_norm) or ratio > DIVERGENCE_RATIO
        if diverged and self.warning is None:
            self.warning = (f"the weights diverged: one step changed their norm by {ratio:.3g} of itself (norm "
                            f"{self.initial:.4g} at the start, {weight_norm:.4g} now); the metrics of this run "
                            "are not those of a trained model: lower learning_rate")
        return {"weight_norm": weight_norm, "update_ratio": ratio, "diverged": int(diverged)}


class _StopSignals:
    """While installed, SIGTERM and SIGINT only set `signum`: the loop finishes its step, checkpoints and stops. A
    second SIGINT acts as usual (KeyboardInterrupt). Outside the main thread (where handlers cannot be set)
    signals keep their usual effect."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum
        # a second Ctrl-C stops at once; SIGTERM stays deferred, because launchers repeat it (torchrun forwards
        # the one it gets, and a job scheduler signals every process of the job) and follow it with SIGKILL
        signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


_NO_DEEPSPEED_RESUME = ("--resume is not available under DeepSpeed: its optimizer state exists only in DeepSpeed's "
                        "pickled checkpoint format, which alignlab never loads; resumable runs use one process, DDP "
                        "or FSDP2 (recipes/accelerate/)")


class Trainer:
    """Build with a validated TrainConfig, then call `train()`."""

    def __init__(self, cfg: TrainConfig, *, callbacks: Sequence[TrainerCallback] = (), resume: bool = False,
                 console: Any = None):
        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.resume = resume
        if cfg.online.rounds is not None:  # each round is a Trainer run of its own (alignlab.online.round_config)
            raise ConfigError("config key 'rounds' asks for online training: run it with alignlab.online.run_online "
                              "(alignlab train does), not the offline Trainer")
        self.console = console
        # Launched as several processes on a machine without CUDA (accelerate launch --multi_gpu, torchrun):
        # accelerate uses gloo on CPU only when told so; otherwise every process would train alone.
        multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1
        cpu_group = multi_process and not torch.cuda.is_available()
        fsdp_requested = fsdp.requested()  # FSDP2 from the launch's accelerate config; alignlab shards itself
        if not multi_process:
            # accelerate keeps one global state per interpreter; a second Trainer in the same process (a notebook,
            # a sweep, the quickstart's two stages) may use another precision
            AcceleratorState._reset_state(reset_partial_state=True)
        self.accelerator = Accelerator(mixed_precision=cfg.model.mixed_precision, cpu=cpu_group)
        # sharded over the launch's process group (none for a single process on a machine without CUDA)
        self.sharded = fsdp_requested and torch.distributed.is_available() and torch.distributed.is_initialized()
        self._check_precision()
        self._check_deepspeed()
        if self.sharded and cfg.model.lora:
            raise ConfigError("lora: true is not supported with FSDP2 yet (the adapter-disabled reference and the "
                              "adapter export expect an unsharded model): use DDP (recipes/accelerate/ddp.yaml)")
        self.run_dir = cfg.resolved_run_dir()
        set_seed(cfg.run.seed)
        self._setup_data()
        self._setup_models()
        self._setup_layout()
        self._health = _Health(self._weight_norm())

    # ----------------------------------------------------------------------------------------------- set-up
    def _print(self, message: str) -> None:
        if self.accelerator.is_main_process and self.console is not None:
            self.console.print(message)

    def _setup_data(self) -> None:
        cfg = self.cfg
        self.tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.name)
        record = cfg.method.record
        pair = record.paired
        default = SAMPLES_DIR / ("pairs.jsonl" if pair else "unpaired.jsonl" if record.unpaired else "sft.jsonl")
        load = load_preference_data if pair else load_unpaired_data if record.unpaired else load_sft_data
        examples, self.data_report = load(str(cfg.data.train_data or default), self.tokenizer,
                                          cfg.data.spec(cfg.data.train_split))
        if self.data_report.changes():
            self._print(self.data_report.changes())
        if cfg.data.eval_data is not None:
            eval_examples, _ = load(cfg.data.eval_data, self.tokenizer, cfg.data.spec(cfg.data.eval_split))
        elif cfg.data.eval_fraction > 0:
            # held out by prompt, so no prompt has pairs on both sides of the split
            groups = _prompt_groups(examples)
            order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(cfg.run.seed)).tolist()
            target = max(1, round(len(examples) * cfg.data.eval_fraction))
            held: list[int] = []
            for g in order:
                if len(held) >= target or len(held) + len(groups[g]) >= len(examples):
                    break
                held.extend(groups[g])
            held_set = set(held)
            eval_examples = [examples[i] for i in sorted(held_set)]
            examples = [ex for i, ex in enumerate(examples) if i not in held_set]
        else:
            eval_examples = []
        self.train_examples, self.eval_examples = examples, eval_examples
        # pairs of one prompt stay together (the DPO reference's order); unpaired completions do not, so that KTO's
        # KL batch (each prompt with its neighbour's completion) rarely pairs a prompt with its own other completion
        self._train_groups = [[i] for i in range(len(examples))] if record.unpaired else _prompt_groups(examples)
        world = self.accelerator.num_processes
        self.global_batch = cfg.optim.micro_batch_size * cfg.optim.gradient_accumulation_steps * world
        self.steps_per_epoch = len(examples) // self.global_batch
        if self.steps_per_epoch == 0:
            raise ConfigError(f"train data has {len(examples)} examples, fewer than one optimizer step's "
                              f"{self.global_batch} (micro_batch_size x gradient_accumulation_steps x processes)")
        self.total_steps = cfg.optim.max_steps or max(1, math.ceil(cfg.optim.epochs * self.steps_per_epoch))
        self.pad_id = padding_id(self.tokenizer)
        if record.unpaired:  # with its mismatched KL batch when the loss needs a reference point (TRL's KTO)
            kl = getattr(cfg.method.params, "needs_kl_batch", lambda: False)()
            self.collate = functools.partial(collate_unpaired, max_length=cfg.data.max_length, kl=kl)
        else:
            self.collate = collate_preference if pair else collate_sft

    def _setup_models(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        dtype = torch.bfloat16 if cfg.model.dtype == "bfloat16" else torch.float32
        policy = load_policy(cfg, dtype)
        self._probe_packed_rows(policy)
        self.ref_model = None
        self.ref_table = None
        self._ref_rows: dict[int, torch.Tensor] = {}
        if cfg.model.precompute_ref_logps:
            self.ref_table = self._precompute_reference(policy, dtype)
        else:
            self.ref_model = load_reference(cfg, dtype, policy)  # copied from the policy before it is sharded
            self._probe_packed_rows(self.ref_model)
            if self.ref_model is not None:
                self.ref_model = (fsdp.shard(Trunk(self.ref_model)) if self.sharded
                                  else acc.prepare_model(self.ref_model, evaluation_mode=True))
        trunk = fsdp.shard(Trunk(policy)) if self.sharded else Trunk(policy)
        params = [p for p in trunk.parameters() if p.requires_grad]  # FSDP2: the shards, which the optimizer steps
        if cfg.optim.optimizer == "adamw":
            # torch's fused kernel where it runs (transformers' default AdamW since torch 2.8): one pass per tensor,
            # ~5x the per-tensor loop for tiny-llama's weights on a CPU. The device is where the model will run;
            # FSDP2's DTensor shards and DeepSpeed's flat partitions keep the loop.
            fused = (not self.sharded and acc.distributed_type != DistributedType.DEEPSPEED
                     and acc.device.type in ("cpu", "cuda"))
            optimizer = torch.optim.AdamW(params, lr=cfg.optim.learning_rate, betas=tuple(cfg.optim.adam_betas),
                                          eps=cfg.optim.optimizer_eps, weight_decay=cfg.optim.weight_decay,
                                          fused=fused or None)
        else:
            optimizer = torch.optim.RMSprop(params, lr=cfg.optim.learning_rate, alpha=cfg.optim.rmsprop_alpha,
                                            eps=cfg.optim.optimizer_eps, weight_decay=cfg.optim.weight_decay)
        from transformers import get_scheduler

        warmup = cfg.optim.warmup_steps or int(cfg.optim.warmup_ratio * self.total_steps)
        name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[cfg.optim.lr_scheduler]
        # Not prepared: accelerate's wrapper steps the schedule once per process; here it steps once per update.
        self.scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=self.total_steps)
        if self.sharded:  # accelerate never sees them: alignlab.train.fsdp says why
            self.trunk, self.optimizer = trunk, optimizer
        else:
            self.trunk, self.optimizer = acc.prepare(trunk, optimizer)
        # Checkpoints save the scheduler as JSON in trainer_state.json and the rest through train_state, never
        # through accelerate's save_state, which pickles them.
        self.params = params

    @property
    def policy(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.trunk).lm

    def _requested_layout(self) -> tuple[bool, bool]:
        """(prefix sharing, packing) as the config asks for them; prefix sharing applies to paired methods."""
        cfg = self.cfg
        return cfg.model.prefix_sharing and cfg.method.record.paired, cfg.model.packing

    def _probe_packed_rows(self, model: torch.nn.Module | None) -> None:
        """Probe a freshly loaded model for packed rows (cached per model), before sharding or wrapping, as the
        head check runs at load: _setup_layout reads the verdict."""
        if model is not None and any(self._requested_layout()):
            packed_layout_problem(model)

    def _setup_layout(self) -> None:
        """Prefix sharing (paired methods) and packing: the collate function adds packed rows to every batch when
        the options ask for them and they are exact on the policy and the reference (packed_layout_problem);
        otherwise the padded batches stay, with one line saying why."""
        cfg = self.cfg
        sharing, packing = self._requested_layout()
        # rows as long as the longest sequence the data may hold (a shared pair longer than that: a row of its own)
        tokens = cfg.model.packing_tokens or cfg.data.max_length
        self.packed_rows = False
        self.layout_options: dict[str, bool] = {}  # for score_batches
        if not (sharing or packing):
            return
        keys = (("chosen_input_ids", "rejected_input_ids") if cfg.method.record.paired else ("input_ids",))
        longest = max(len(ex[k]) for ex in self.train_examples + self.eval_examples for k in keys)
        if cfg.method.record.unpaired:  # the KL rows (a prompt with another completion) are cut to max_length
            longest = max(longest, cfg.data.max_length)
        models = [self.policy] + [getattr(m, "lm", m) for m in [self.ref_model] if m is not None]
        for model in models:
            problem = packed_layout_problem(self.accelerator.unwrap_model(model), longest=longest)
            if problem is not None:
                what = " and ".join(n for n, on in (("prefix sharing", sharing), ("packing", packing)) if on)
                self._print(f"{what} off (padded batches): {problem}")
                return
        options = {"packing": packing, "packing_tokens": tokens if packing else None}
        if cfg.method.record.paired:
            options["prefix_sharing"] = sharing
        self.collate = functools.partial(self.collate, **options)
        self.packed_rows = True
        self.layout_options = {"prefix_sharing": sharing, "packing": packing}

    def _check_deepspeed(self) -> None:
        """DeepSpeed as alignlab can drive it: ZeRO-2 (ZeRO-3 partitions the output layer, which the chunked ops read
        outside the model's forward), one micro-batch per step (accelerate's DeepSpeed backward steps the engine
        after every backward), and the micro-batch size DeepSpeed needs to know without a data loader."""
        acc = self.accelerator
        if acc.distributed_type != DistributedType.DEEPSPEED:
            return
        plugin = acc.state.deepspeed_plugin
        if plugin.zero_stage == 3:
            raise ConfigError("DeepSpeed ZeRO-3 partitions the output layer, which alignlab reads outside the model's "
                              "forward for its chunked log-probs: use FSDP2 (recipes/accelerate/fsdp2.yaml), which "
                              "alignlab gathers exactly, or ZeRO-2")
        if self.cfg.optim.gradient_accumulation_steps != 1:
            raise ConfigError("gradient_accumulation_steps must be 1 under DeepSpeed (accelerate steps DeepSpeed's "
                              "engine in every backward): raise micro_batch_size or the number of processes")
        plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = self.cfg.optim.micro_batch_size
        if self.resume:
            raise ConfigError(_NO_DEEPSPEED_RESUME)
        self._print("DeepSpeed: checkpoints hold the weights, not the optimizer state (DeepSpeed stores it only in "
                    "its own pickled format, which alignlab never loads), so --resume is not available")

    def _check_precision(self) -> None:
        """fp16 trains only where accelerate scales the loss: it creates its GradScaler for GPUs alone (accelerator.py,
        the fp16 branch requires a device other than 'cpu'), and under alignlab's FSDP2 the optimizer is not
        accelerate's, so nothing would unscale and step with the scaler. DeepSpeed scales the loss itself."""
        acc = self.accelerator
        if self.cfg.model.mixed_precision != "fp16" or acc.distributed_type == DistributedType.DEEPSPEED:
            return
        if acc.scaler is None:
            raise ConfigError("mixed_precision: fp16 needs a GPU (accelerate scales the loss on GPUs only); on CPU "
                              "use mixed_precision: bf16")
        if self.sharded:
            raise ConfigError("mixed_precision: fp16 with FSDP2 is not supported (the loss scaler would not be "
                              "stepped); use mixed_precision: bf16")

    def _precompute_reference(self, policy: torch.nn.Module, dtype: torch.dtype) -> torch.Tensor:
        cfg, acc = self.cfg, self.accelerator
        ref_name = cfg.model.ref_model or cfg.model.name
        scored = self.train_examples + self.eval_examples
        fingerprint = "-".join([f"v{REF_CACHE_VERSION}", reference_fingerprint(ref_name, seed=cfg.run.seed)[:24],
                                cfg.model.dtype, cfg.model.mixed_precision, data_fingerprint(scored)[:24]])
        directory = Path(cfg.model.ref_cache_dir) if cfg.model.ref_cache_dir else cache_dir() / "ref_logps"
        ref = None

        def compute(positions: list[int]) -> torch.Tensor:
            nonlocal ref
            if ref is None:
                ref = acc.prepare_model(load_reference(cfg, dtype, policy), evaluation_mode=True)
            with autocast(cfg.model.mixed_precision, acc.device):
                logps = score_batches(Trunk(ref), [scored[i] for i in positions], pad_id=self.pad_id,
                                      batch_size=cfg.run.eval_batch_size, chunked=cfg.model.chunked_ops,
                                      chunk_size=cfg.model.chunk_size,
                                      chunk_bytes=cfg.model.chunk_mib * 2**20)["logps"]
            return logps.t().contiguous()  # [len(positions), 2]: (chosen, rejected)

        table, cached = cached_reference_logps(directory, fingerprint, scored, compute,
                                               rank=acc.process_index, world=acc.num_processes,
                                               gather=gather_object, barrier=acc.wait_for_everyone)
        self._print(f"reference log-probs {'reused from' if cached else 'computed and cached in'} "
                    f"{directory / (fingerprint + '.pt')}")
        del ref
        self._ref_rows = {id(ex): row for ex, row in zip(scored, table)}  # example -> (chosen, rejected) sums
        return table

    # ------------------------------------------------------------------------------------------- batches
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def step_block(self, step: int) -> list[int]:
        """Example positions of an optimizer step over every process (G = micro x accumulation x processes)."""
        epoch, k = divmod(step, self.steps_per_epoch)
        # each epoch shuffles prompts, keeping one prompt's pairs consecutive (the DPO reference's order)
        generator = torch.Generator().manual_seed(self.cfg.run.seed + epoch)
        perm = torch.randperm(len(self._train_groups), generator=generator)
        order = [i for g in perm.tolist() for i in self._train_groups[g]]
        return order[k * self.global_batch:(k + 1) * self.global_batch]

    def step_positions(self, step: int) -> list[list[int]]:
        """Example positions of this process's micro-batches at an optimizer step."""
        block = self.step_block(step)
        micro, world, rank = (self.cfg.optim.micro_batch_size, self.accelerator.num_processes,
                              self.accelerator.process_index)
        return [block[(m * world + rank) * micro:(m * world + rank + 1) * micro]
                for m in range(self.cfg.optim.gradient_accumulation_steps)]

    def _ref_logps(self, examples: Sequence[dict[str, Any]]) -> torch.Tensor | None:
        """Precomputed reference sums [2B] (chosen then rejected) for examples of the train or eval split."""
        if self.ref_table is None:
            return None
        rows = torch.stack([self._ref_row(ex) for ex in examples])
        return torch.cat([rows[:, 0], rows[:, 1]]).float().to(self.accelerator.device)

    def _ref_row(self, example: dict[str, Any]) -> torch.Tensor:
        """The precomputed (chosen, rejected) reference sums of one example, float64 [2]."""
        try:
            return self._ref_rows[id(example)]
        except KeyError:
            raise ConfigError("precompute_ref_logps covers the train and eval examples only; "
                              "score other pairs with the reference model online") from None

    def _forward(self, batch: dict[str, torch.Tensor], examples: Sequence[dict[str, Any]], lam: float,
                 *, eval_kl: bool = False, step_totals: tuple[float, float] | None = None,
                 collective: bool = True) -> StepOutput:
        cfg = self.cfg
        with autocast(cfg.model.mixed_precision, self.accelerator.device):
            if cfg.method.record.unpaired:
                ref = reference_trunk(self.policy, self.ref_model)
                return unpaired_step(cfg, self.trunk, batch, ref,
                                     all_reduce_mean=self._all_reduce_mean if collective else None)
            if not cfg.method.record.paired:
                return sequence_step(cfg, self.trunk, batch, lam=lam)
            ref_logps = self._ref_logps(examples)
            needs_online_ref = cfg.method.record.needs_ref and ref_logps is None
            ref = reference_trunk(self.policy, self.ref_model) if needs_online_ref else None
            return pair_step(cfg, self.trunk, batch, ref, ref_logps, eval_kl=eval_kl, step_totals=step_totals)

    def _all_reduce_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean over processes of a per-process scalar (KTO's reference point is averaged before clamping)."""
        return self.accelerator.reduce(x, reduction="mean")

    # ---------------------------------------------------------------------------------------- train step
    def accumulate_gradients(self, step: int) -> dict[str, Any]:
        """Forward and backward over this process's micro-batches of an optimizer step; grads left in .grad."""
        cfg, acc = self.cfg, self.accelerator
        micro_positions = self.step_positions(step)
        batches = [self._to_device(self.collate([self.train_examples[i] for i in pos], self.pad_id))
                   for pos in micro_positions]
        if cfg.method.record.token_normalised(cfg.method.params):
            local = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
            normaliser = float(acc.reduce(torch.tensor(local, device=acc.device), reduction="sum"))
        else:
            normaliser = float(self.global_batch)
        step_totals = None
        if cfg.method.record.needs_step_chosen_tokens(cfg.method.params):  # chosen rows: the first half of each batch
            local = sum(int((b["labels"][: b["labels"].shape[0] // 2, 1:] != -100).sum()) for b in batches)
            step_totals = (float(acc.reduce(torch.tensor(local, device=acc.device), reduction="sum")),
                           float(self.global_batch))
        lam_gen = torch.Generator().manual_seed(cfg.run.seed * 1_000_003 + step)
        lam = ift_lambda(cfg.method.params, step, lam_gen) if cfg.method.record.mixes_inputs else 0.0
        loss_sum = torch.zeros((), device=acc.device)
        rows: dict[str, list[torch.Tensor]] = {}
        tokens = 0
        for m, (batch, positions) in enumerate(zip(batches, micro_positions)):
            last = m == len(batches) - 1
            with nullcontext() if last else acc.no_sync(self.trunk):
                out = self._forward(batch, [self.train_examples[i] for i in positions], lam,
                                    step_totals=step_totals)
                acc.backward(out.losses.sum() * acc.num_processes / normaliser)
            loss_sum += out.losses.detach().sum()
            tokens += out.tokens
            for k, v in out.metrics.items():
                rows.setdefault(k, []).append(v.detach().float())
        return {"loss_sum": loss_sum, "normaliser": normaliser, "rows": rows, "tokens": tokens}

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step; returns the step's metrics (means over the global batch)."""
        cfg, acc = self.cfg, self.accelerator
        start = time.perf_counter()
        acc_out = self.accumulate_gradients(step)
        if cfg.optim.max_grad_norm is not None:  # FSDP2: over the shards of every process (DTensor-aware)
            grad_norm = acc.clip_grad_norm_(self.params, cfg.optim.max_grad_norm)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        elif self.sharded:
            grad_norm = torch.tensor(fsdp.global_norm([p.grad for p in self.params]))
        else:
            acc.unscale_gradients()  # fp16: the norm of the true gradients (a no-op without a loss scaler)
            grads = [p.grad.detach().norm() for p in self.params if p.grad is not None]
            grad_norm = torch.stack(grads).norm() if grads else torch.zeros(())
        lr = self.scheduler.get_last_lr()[0]
        total_loss = float(acc.reduce(acc_out["loss_sum"], reduction="sum")) / acc_out["normaliser"]
        # the gradient norm is over the reduced gradients and the loss is reduced: every process agrees
        finite = math.isfinite(total_loss) and math.isfinite(float(grad_norm))
        finite = not self._any(not finite)  # a shard's norm (FSDP without clipping) may differ: all skip or none
        # fp16 loss scaling: an overflowing step goes to the optimizer, whose scaler skips it and lowers its scale
        overflow = not finite and acc.scaler is not None and math.isfinite(total_loss)
        if finite:
            self.optimizer.step()
            self.scheduler.step()
        else:
            if overflow:
                self.optimizer.step()
            with warnings.catch_warnings():  # torch warns of a schedule stepped without an optimizer step: wanted
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()  # a skipped step still consumes its batch and its place in the schedule
        self.optimizer.zero_grad(set_to_none=True)
        total_tokens = float(acc.reduce(torch.tensor(float(acc_out["tokens"]), device=acc.device), reduction="sum"))
        metrics = {"loss": total_loss, "lr": lr, "grad_norm": float(grad_norm),
                   "tokens_per_s": total_tokens / max(time.perf_counter() - start, 1e-9)}
        if overflow:
            metrics.update({"skipped_overflow": 1, "loss_scale": float(acc.scaler.get_scale())})
        else:
            metrics.update(self._health.update(finite, self._weight_norm() if finite else None))
        if not finite and not overflow:
            metrics["nonfinite_records"] = [self.train_examples[i]["where"] for i in self.step_block(step)[:8]]
        for k, values in acc_out["rows"].items():
            # nan-aware: a metric of some rows only (KTO's desirable / undesirable sides) is NaN on the others
            gathered = acc.gather(torch.cat(values))
            one_side = k in SIDE_METRICS and cfg.method.record.unpaired
            metrics[k] = float(gathered.nanmean() if one_side else gathered.mean())
        return metrics

    def _weight_norm(self) -> float:
        """L2 norm of the trainable parameters (for the divergence check)."""
        if self.sharded:
            return fsdp.global_norm(self.params)
        norms = [torch.linalg.vector_norm(p.detach(), dtype=torch.float32) for p in self.params]
        return float(torch.stack(norms).norm()) if norms else 0.0

    # ------------------------------------------------------------------------------------------ evaluate
    @torch.no_grad()
    def evaluate(self, step: int = 0) -> dict[str, float]:
        """Mean loss and metrics over the held-out examples (forward and reverse sequence KL included).

        IFT evaluates at the step's scheduled lambda, without the training-time disturbance."""
        if not self.eval_examples:
            return {}
        cfg, acc = self.cfg, self.accelerator
        was_training = self.trunk.training
        self.trunk.eval()
        local = list(range(acc.process_index, len(self.eval_examples), acc.num_processes))
        lam = ift_lambda(cfg.method.params, step, noise=False) if cfg.method.record.mixes_inputs else 0.0
        rows: dict[str, list[float]] = {}
        chunks = [local[s:s + cfg.run.eval_batch_size] for s in range(0, len(local), cfg.run.eval_batch_size)]
        if cfg.method.record.unpaired and len(chunks) > 1 and len(chunks[-1]) < 2:
            chunks[-2] += chunks.pop()  # a KL batch needs another example's completion
        stand_ins = 0
        if self.sharded:  # every forward all-gathers shards: each process runs as many as the busiest one
            most = torch.tensor(len(chunks), device=acc.device)
            torch.distributed.all_reduce(most, op=torch.distributed.ReduceOp.MAX)
            stand_ins = int(most) - len(chunks)
        for n, positions in enumerate(chunks + [list(range(min(2, len(self.eval_examples))))] * stand_ins):
            chunk = [self.eval_examples[i] for i in positions]
            batch = self._to_device(self.collate(chunk, self.pad_id))
            # processes may evaluate different numbers of chunks: no collective inside (KTO's z0 is per process)
            out = self._forward(batch, chunk, lam, eval_kl=True, collective=False)
            if n >= len(chunks):
                continue  # a stand-in forward (FSDP2): its results are not this process's
            if cfg.method.record.token_normalised(cfg.method.params):  # sum(-S) / sum(n), like training
                rows.setdefault("_token_nll", []).extend((-out.metrics["logps/sequence"]).cpu().tolist())
                rows.setdefault("_tokens", []).extend((batch["labels"][:, 1:] != -100).sum(-1).cpu().tolist())
            else:
                rows.setdefault("loss", []).extend(out.losses.float().cpu().tolist())
            for k, v in out.metrics.items():
                rows.setdefault(k, []).extend(v.float().cpu().tolist())
        self.trunk.train(was_training)
        merged: dict[str, list[float]] = {}
        for part in gather_object([rows]):
            for k, v in part.items():
                merged.setdefault(k, []).extend(v)
        # the per-side metrics of unpaired methods are NaN on the other side's rows; everything else keeps its NaN
        one_side = SIDE_METRICS if cfg.method.record.unpaired else frozenset()
        merged = {k: [x for x in v if not (k in one_side and math.isnan(x))] for k, v in merged.items()}
        result = {f"eval/{k}": sum(v) / len(v) for k, v in merged.items() if v and not k.startswith("_")}
        if "_tokens" in merged:
            result["eval/loss"] = sum(merged["_token_nll"]) / max(sum(merged["_tokens"]), 1)
        if "eval/kl/chosen" in result:
            result["eval/kl/sequence"] = (result["eval/kl/chosen"] + result["eval/kl/rejected"]) / 2
        return result

    @torch.no_grad()
    def score_pairs(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Policy and reference per-pair log-prob sums and lengths, float64 [N] (callback contract)."""
        cfg = self.cfg
        if not cfg.method.record.paired:
            raise ConfigError("score_pairs needs a preference method")
        kwargs = {"pad_id": self.pad_id, "batch_size": cfg.run.eval_batch_size, "chunked": cfg.model.chunked_ops,
                  "chunk_size": cfg.model.chunk_size, "chunk_bytes": cfg.model.chunk_mib * 2**20,
                  **self.layout_options}
        with autocast(cfg.model.mixed_precision, self.accelerator.device):
            policy = score_batches(self.trunk, examples, **kwargs)
            if self.ref_model is not None or (cfg.model.lora and cfg.method.record.needs_ref):
                ref_logps = score_batches(reference_trunk(self.policy, self.ref_model), examples, **kwargs)["logps"]
            elif self.ref_table is not None:
                ref_logps = torch.stack([self._ref_row(ex) for ex in examples], 1)
            else:  # reference-free method: there is no reference ranking
                ref_logps = torch.full_like(policy["logps"], float("nan"))
        return {"policy_chosen_logps": policy["logps"][0], "policy_rejected_logps": policy["logps"][1],
                "ref_chosen_logps": ref_logps[0], "ref_rejected_logps": ref_logps[1],
                "chosen_lengths": policy["tokens"][0].double(),
                "rejected_lengths": policy["tokens"][1].double()}

    # ----------------------------------------------------------------------------------------- checkpoints
    def save(self, step: int, *, final: bool = False) -> Path:
        cfg, acc = self.cfg, self.accelerator
        target = self.run_dir / ("final" if final else f"checkpoint-{step}")

        def write(tmp: Path) -> None:
            # FSDP2: the full weights, gathered to the main process (a collective: every process takes part)
            full = {"state_dict": fsdp.full_state_dict(self.policy)} if self.sharded else {}
            if acc.is_main_process:
                model = self.policy
                if cfg.model.lora and cfg.model.save_merged:
                    import copy

                    model = copy.deepcopy(model).merge_and_unload()
                model.save_pretrained(tmp, safe_serialization=True, **full)
                self.tokenizer.save_pretrained(tmp)
                ckpt.write_state(tmp, {"step": step, "epoch": step / self.steps_per_epoch,
                                       "global_batch": self.global_batch, "config": cfg.to_dict(),
                                       "scheduler": self.scheduler.state_dict()})
                if final:  # a model card, so a pushed final/ documents itself (before the manifest lists it)
                    write_model_card(tmp, self.run_dir, cfg, examples=self.train_examples)
            if not final:  # optimizer, loss scaler and RNG states as safetensors and JSON (train_state)
                deepspeed = acc.distributed_type == DistributedType.DEEPSPEED
                train_state.save(tmp / "state", self.trunk if self.sharded else acc.unwrap_model(self.trunk),
                                 None if deepspeed else self.optimizer, rank=acc.process_index,
                                 world=acc.num_processes, is_main=acc.is_main_process, sharded=self.sharded,
                                 scaler=acc.scaler)

        # adds manifest.json; a failed write (disk full) leaves the older checkpoints and raises one line
        ckpt.build_checkpoint(target, write, is_main=acc.is_main_process, barrier=acc.wait_for_everyone,
                              any_failed=self._any if acc.num_processes > 1 else None)
        if acc.is_main_process and not final:
            ckpt.prune_checkpoints(self.run_dir, cfg.run.save_total_limit)
        acc.wait_for_everyone()
        return target

    def _resume_point(self) -> tuple[Path, dict[str, Any]] | None:
        """The checkpoint to resume from and its state, after every check passed; None when the run directory
        holds no checkpoint yet (the run then starts from step 0). Reads only: nothing is written or loaded."""
        if not ckpt.list_checkpoints(self.run_dir):
            return None
        # the newest checkpoint matching its manifest; a damaged newer one is skipped with a line
        latest, notes = ckpt.latest_valid_checkpoint(self.run_dir)
        for note in notes:
            self._print(note)
        state = ckpt.read_state(latest)
        # the saved config through today's rules (the method's hyper-parameters resolved), so runs written
        # before the method registry compare equal when nothing changed
        saved = load_config(base=run_config_values(state["config"])).to_dict()
        for key, value in self.cfg.to_dict().items():
            if key not in _RESUMABLE_CHANGES and saved.get(key) != value:
                raise ConfigError(f"--resume: config key '{key}' is {value!r} but the run was started with "
                                  f"{saved.get(key)!r}; resume with the same value")
        if state["global_batch"] != self.global_batch:
            raise ConfigError(f"--resume: the global batch is {self.global_batch} but the run used "
                              f"{state['global_batch']} (processes x micro_batch_size x accumulation)")
        if int(state["step"]) >= self.total_steps:
            raise ConfigError(f"--resume: {latest.name} is at step {state['step']}, and this run has "
                              f"{self.total_steps} steps: nothing to train (raise max_steps or epochs to go on)")
        if "scheduler" not in state:
            raise ConfigError(f"--resume: {latest / ckpt.STATE_FILE} has no scheduler state; resume from a checkpoint "
                              "this version wrote, or start the run in a new run_dir")
        problem = train_state.resume_problem(latest / "state", world=self.accelerator.num_processes,
                                             sharded=self.sharded, scaler=self.accelerator.scaler)
        if problem:
            raise ConfigError(f"--resume: {latest.name}: {problem}")
        return latest, state

    def _restore(self, latest: Path, state: dict[str, Any]) -> int:
        acc = self.accelerator
        train_state.load(latest / "state", self.trunk if self.sharded else acc.unwrap_model(self.trunk),
                         self.optimizer, rank=acc.process_index, world=acc.num_processes, scaler=acc.scaler)
        self.scheduler.load_state_dict(state["scheduler"])
        self._print(f"resumed from {latest} at step {state['step']}")
        return int(state["step"])

    def _start(self) -> int:
        """Check the run directory and decide where training starts: 0, or the resumed checkpoint's step.

        A directory holding an earlier run is refused without --resume. A run that stopped before its first
        checkpoint (killed early, or stopped by non-finite steps) starts again from step 0 with one line, with or
        without --resume; its files are moved aside into `.stopped-<time>/`, never deleted, and only when its
        config.yaml is an alignlab config (anything else is not ours to move). Leftovers of an interrupted
        checkpoint write are removed. config.yaml is written only after every check has passed."""
        cfg, acc = self.cfg, self.accelerator
        finished = (self.run_dir / "final").is_dir()
        has_checkpoint = bool(ckpt.list_checkpoints(self.run_dir))
        if not self.resume and (has_checkpoint or finished):
            raise ConfigError(f"run_dir '{self.run_dir}' already holds a run: pass --resume to continue it, "
                              "or choose another run_dir")
        point = self._resume_point() if self.resume else None
        if point is None and finished:
            raise ConfigError(f"--resume: run_dir '{self.run_dir}' holds a finished run (final/) and no "
                              "checkpoint-<step> to continue from; set save_steps to make checkpoints, or choose "
                              "another run_dir")
        leftovers = [name for name in _RUN_FILES if (self.run_dir / name).exists()]
        if point is None and leftovers and not _is_alignlab_run(self.run_dir):
            raise ConfigError(f"run_dir '{self.run_dir}' holds {', '.join(leftovers)} that are not an alignlab run's; "
                              "choose another run_dir")
        error: BaseException | None = None
        if acc.is_main_process:
            try:
                for leftover in ckpt.remove_stale_temporaries(self.run_dir):
                    self._print(f"removed {leftover.name}, left by an interrupted write")
                if point is None and leftovers:
                    aside = self.run_dir / f".stopped-{time.strftime('%Y%m%d-%H%M%S')}"
                    aside.mkdir()
                    for name in leftovers:
                        (self.run_dir / name).rename(aside / name)
                    self._print(f"run_dir '{self.run_dir}' holds a run stopped before its first checkpoint: "
                                f"starting it again from step 0 (its files are in {aside.name}/)")
                write_text_atomically(self.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
                write_text_atomically(self.run_dir / "data_report.txt", str(self.data_report) + "\n")
            except OSError as exc:
                error = exc
        # every process learns of a failure on the main one (instead of waiting for it at a barrier)
        if self._any(error is not None):
            raise error or ConfigError(f"run_dir '{self.run_dir}': the main process could not prepare it")
        return 0 if point is None else self._restore(*point)

    # ------------------------------------------------------------------------------------------------ loop
    def train(self) -> TrainResult:
        """Train to the last step and save final/; see the module docstring for what a step is.

        Holds the run directory's lock throughout (a second run on it is refused). SIGTERM or SIGINT ends the
        current step, writes a checkpoint and raises RunInterrupted naming it."""
        acc = self.accelerator
        lock = RunLock(self.run_dir) if acc.is_main_process else None
        locked = None
        if lock is not None:
            try:
                lock.acquire()
            except ConfigError as exc:
                locked = exc
        # every process learns the outcome: a refused main process must not leave the others at a barrier
        if self._any(locked is not None):
            raise locked or ConfigError(f"run_dir '{self.run_dir}' is in use by another alignlab run")
        stop = _StopSignals()
        stop.install()
        try:
            return self._train(stop)
        finally:
            stop.restore()
            if lock is not None:
                lock.release()

    def _any(self, flag: bool) -> bool:
        """True on every process when `flag` is true on any (a no-op with one process)."""
        if self.accelerator.num_processes == 1:
            return flag
        value = torch.tensor(float(flag), device=self.accelerator.device)
        return bool(self.accelerator.reduce(value, reduction="sum") > 0)

    def _train(self, stop: _StopSignals) -> TrainResult:
        cfg, acc = self.cfg, self.accelerator
        start = self._start()
        writer = MetricsWriter(self.run_dir, tensorboard=cfg.run.tensorboard, enabled=acc.is_main_process,
                               resume_step=start if self.resume and start else None)
        result = TrainResult(run_dir=self.run_dir, steps=self.total_steps)
        for cb in self.callbacks:
            cb.on_train_begin(self)
        if start == 0:
            result.eval_before = self._evaluate_and_log(writer, 0)
        self.trunk.train()
        self._health = _Health(self._weight_norm())  # from the weights training starts (or resumes) from
        progress = self._progress()
        task = progress.add_task(f"{cfg.method.name}", total=self.total_steps, completed=start) if progress else None
        try:
            for step in range(start, self.total_steps):
                metrics = self.train_step(step)
                done = step + 1
                result.last_train = metrics
                if done % cfg.run.logging_steps == 0 or done == self.total_steps or metrics.get("skipped_nonfinite"):
                    writer.log(done, {"epoch": done / self.steps_per_epoch, **metrics})
                warning = self._health.warning
                if warning and warning not in result.warnings:
                    result.warnings.append(warning)
                    self._print(f"warning: {warning}")
                if self._health.nonfinite_run >= cfg.optim.max_nonfinite_steps:
                    raise AlignlabError(
                        f"stopped at step {done}: the loss or gradient norm was NaN/inf for "
                        f"{self._health.nonfinite_run} consecutive steps (max_nonfinite_steps; last batch: "
                        f"{', '.join(metrics['nonfinite_records'])}); no update was applied for them: lower "
                        "learning_rate, train in float32, or check those records")
                if cfg.run.eval_steps and done % cfg.run.eval_steps == 0 and done != self.total_steps:
                    self._evaluate_and_log(writer, done)
                stopping = self._any(stop.signum is not None)
                saving = cfg.run.save_steps and done % cfg.run.save_steps == 0
                if (saving or stopping) and done != self.total_steps:
                    saved = self.save(done)
                    if stopping:
                        raise RunInterrupted(stop.signum or signal.SIGTERM, done, saved)
                if progress:
                    progress.update(task, advance=1, description=f"{cfg.method.name} loss {metrics['loss']:.4f}")
            if progress:
                progress.stop()
                progress = None
            result.eval_after = self._evaluate_and_log(writer, self.total_steps)
            self.save(self.total_steps, final=True)
        finally:
            if progress:
                progress.stop()
            writer.close()
        return result

    def _evaluate_and_log(self, writer: MetricsWriter, step: int) -> dict[str, float]:
        metrics = self.evaluate(step)
        for cb in self.callbacks:
            metrics.update(cb.on_evaluate(self, step))
        if metrics:
            writer.log(step, metrics)
        return metrics

    def _progress(self):
        if not (self.cfg.run.progress and self.accelerator.is_main_process):
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), console=self.console, transient=False)
        progress.start()
        return progress


def _prompt_groups(examples: Sequence[dict[str, Any]]) -> list[list[int]]:
    """Example positions grouped by prompt tokens (in first-seen order): pairs or SFT sequences of one prompt."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, ex in enumerate(examples):
        if "prompt_input_ids" in ex:
            key = tuple(ex["prompt_input_ids"])
        else:  # SFT: the tokens before the first trained one
            first = next((t for t, label in enumerate(ex["labels"]) if label != -100), len(ex["labels"]))
            key = tuple(ex["input_ids"][:first])
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _is_alignlab_run(run_dir: Path) -> bool:
    """Whether run_dir/config.yaml is a config alignlab wrote (it loads as one)."""
    try:
        load_run_config(run_dir)
    except (AlignlabError, TypeError, AttributeError):
        return False
    return True


def train(cfg: TrainConfig, **kwargs: Any) -> TrainResult:
    """Train with a validated config; see Trainer."""
    return Trainer(cfg, **kwargs).train()


__all__ = ["TrainResult", "Trainer", "train"]
