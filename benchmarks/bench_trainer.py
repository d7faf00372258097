r"""Time and memory of one DPO optimizer step: TRL's DPOTrainer, alignlab's Trainer, and hand-written loops.

Everything runs in fp32 on CPU with the same weights, the same pairs every step and the same thread count. The
model is a Llama with 4 layers, 4 heads (2 key/value heads, as alignlab/tiny-llama), hidden --width (256),
intermediate width x 688 / 256, and --vocab rows (8192); the text comes from the offline tokenizer (4096 ids, so
only the first 4096 rows are ever looked up, which changes no cost). The data: --pairs (8) synthetic pairs, one
micro-batch a step, whose lengths scale with --length (T, 128): prompts of about T/4 tokens and responses of 3T/8
to 2T/3, so every sequence fits in max_length T and nothing is truncated; each prompt ends and each response starts
on a token boundary, so TRL (joint prompt + response encoding) and alignlab (separate encoding) train on identical
token ids, which the benchmark checks. With --data FILE, --pairs pairs of a data file instead (evenly spaced lines;
the bundled samples by name, e.g. pairs.jsonl or pairs_hh.jsonl), max_length --length.

What is timed, one optimizer step each (forward, backward, clipping at 1.0, AdamW at lr 5e-7 -- torch's fused
kernel for every method, transformers' own default and alignlab's -- schedule):

- trl_dpo: TRL DPOTrainer (batch --pairs, accumulation 1, beta 0.1, reference = a second copy of the model, no
  precomputed reference, no eval/saving/logging, no gradient checkpointing); the time from on_step_begin to
  on_step_end (trl_dpo_loop: from one step's end to the next, batch fetch and logging hooks included);
- alignlab_dpo, alignlab_tdpo2: alignlab.train.Trainer.train_step (collation included), the default layout
  (prefix sharing on, no packing); the suffix _padded turns prefix sharing off, _packed turns packing on;
- minimal_full_logits: a hand-written loop: concatenated chosen + rejected forward of the policy, the reference
  forward under no_grad, log_softmax + gather on the full logits, the DPO loss, backward, clip, AdamW;
- minimal_chunked: the same loop with log-probs from the final hidden states through
  alignlab.ops.chunked_sequence_stats (the computation alignlab's trainer does on padded rows).

Each method runs in its own fresh process (a worker) for the whole cell; the workers wait in turn, and the driver
runs one step at a time, every method's step k before any method's step k + 1, in an order that rotates with k, so
machine noise falls on every method alike. Medians over --steps timed steps per method after --warmup untimed ones,
of the wall time and of the CPU time (process time of all the worker's threads: the work done, which other jobs on
a shared machine change less than the wall time).

Memory, per worker: "extra peak" is the growth of the peak resident set size over all the cell's steps from just
before the first step. Before that baseline every weight and buffer of the policy and the reference is read once
(from_pretrained maps safetensors lazily: a weight becomes resident when first touched, so without this TRL's two
freshly loaded models would be charged to its first step, while alignlab's reference is a copy and resident
already). The peak counter VmHWM is reset to the current RSS through /proc/self/clear_refs after returning freed
heap with malloc_trim; where that is not possible, the growth of ru_maxrss. "state" is the optimizer state and
gradients every method creates in its first step (3 fp32 copies of the trainable weights: gradient, AdamW's two
moments), included in the extra peak; "activation peak" = extra peak - state.

Several values of --vocab, --length or --width make a grid: one cell per combination, each with fresh workers;
the table then lists every cell, and the exponents of time and of extra (and activation) peak memory in each
varied quantity are fitted by least squares on the logs. A method whose estimated peak exceeds --max-gib is not
run in that cell and is listed with the estimate (estimate_peak_mib; the three workers of a cell are alive at
once). --report FILE... prints the tables and fits of the cells of earlier --json files together.

    python benchmarks/bench_trainer.py [--steps 20 --warmup 3 --threads 2 --json times.json]
    python benchmarks/bench_trainer.py --methods trl_dpo alignlab_dpo alignlab_tdpo2 --pairs 2 \
        --vocab 8192 32768 131072 151936 --length 512 --steps 2 --warmup 1 --json vocab.json
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import itertools
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

N_PAIRS = 8  # pairs per step; set from --pairs
LR = 5e-7
BETA = 0.1
MAX_GRAD_NORM = 1.0
LAYERS, HEADS, KV_HEADS = 4, 4, 2
ALIGNLAB_LAYOUTS = {"": {}, "_padded": {"prefix_sharing": False}, "_packed": {"prefix_sharing": True, "packing": True}}
METHODS = ("trl_dpo", *(f"alignlab_{m}{s}" for m in ("dpo", "tdpo2") for s in ALIGNLAB_LAYOUTS),
           "minimal_full_logits", "minimal_chunked")
DEFAULT_METHODS = ("trl_dpo", "alignlab_dpo", "alignlab_tdpo2", "minimal_full_logits", "minimal_chunked")
LABELS = {
    "trl_dpo": "TRL DPOTrainer step",
    "trl_dpo_loop": "TRL DPOTrainer loop step",
    "minimal_full_logits": "(d) minimal DPO, full logits",
    "minimal_chunked": "(e) minimal DPO, chunked stats",
    **{f"alignlab_{m}{s}": f"alignlab {m.upper()}{' ' + s[1:] if s else ''} train_step"
       for m in ("dpo", "tdpo2") for s in ALIGNLAB_LAYOUTS},
}
PREFIX = "@@bench "  # worker -> driver messages on the worker's stdout; any other line is a library's and ignored
MIB = 2**20


def _status_mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def _start_peak() -> tuple[float, bool]:
    """Reset the peak-RSS counter to the current RSS; (baseline MiB, whether the reset worked)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back, so reuse of it counts as growth
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # Linux >= 4.0: VmHWM := VmRSS
        return _status_mib("VmRSS"), True
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, False  # Linux reports KiB


def _peak_growth(before: tuple[float, bool]) -> float:
    base, reset = before
    peak = _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak - base


def touch(*modules) -> tuple[float, float]:
    """Read every parameter and buffer once, so lazily mapped weights are resident before the baseline; returns
    (MiB read, MiB of trainable parameters of the first module)."""
    import torch

    seen: set[int] = set()
    read = 0
    with torch.no_grad():
        for module in modules:
            if module is None:
                continue
            for t in itertools.chain(module.parameters(), module.buffers()):
                if id(t) in seen or t.numel() == 0:
                    continue
                seen.add(id(t))
                float(t.detach().float().sum())
                read += t.numel() * t.element_size()
    trainable = sum(p.numel() * p.element_size() for p in modules[0].parameters() if p.requires_grad)
    return read / MIB, trainable / MIB


# ------------------------------------------------------------------------------------------------ assets
def _words() -> list[str]:
    from alignlab.assets.tokenizer import corpus_bytes

    words = {w.strip(".,!?;:'\"()").lower() for w in corpus_bytes().decode("utf-8").split()}
    return sorted(w for w in words if w.isalpha() and 2 <= len(w) <= 10)


def _sentence(rng: random.Random, words: list[str], encode: Callable[[str], list[int]], n_tokens: int,
              lead: str, end: str) -> str:
    parts: list[str] = []
    while True:
        parts.append(rng.choice(words))
        text = lead + " ".join(parts) + end
        if len(encode(text)) >= n_tokens:
            return text


def bench_model(workdir: Path, vocab: int, width: int, max_positions: int, seed: int = 0) -> Path:
    """Save the benchmark Llama (seeded, untied head) and the offline tokenizer to workdir/model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignlab.assets import load_tokenizer

    tokenizer = load_tokenizer()
    model_dir = workdir / "model"
    config = LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=width * 688 // 256,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                         max_position_embeddings=max(1024, max_positions), tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def synthetic_pairs(path: Path, length: int, seed: int = 0) -> None:
    """N_PAIRS pairs sized for max_length `length` (at 128: prompts of 28-34 tokens, responses of 48-86)."""
    from alignlab.assets import load_tokenizer

    tokenizer = load_tokenizer()

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    s = length / 128
    rng, words, records = random.Random(seed), _words(), []
    while len(records) < N_PAIRS:
        prompt = _sentence(rng, words, encode, rng.randint(round(28 * s), round(34 * s)), "", "?")
        chosen = _sentence(rng, words, encode, rng.randint(round(48 * s), round(86 * s)), " ", ".")
        rejected = _sentence(rng, words, encode, rng.randint(round(48 * s), round(86 * s)), " ", ".")
        p, c, r = encode(prompt), encode(chosen), encode(rejected)
        joint_ok = encode(prompt + chosen) == p + c and encode(prompt + rejected) == p + r
        if joint_ok and len(p) + max(len(c), len(r)) + 1 <= length:  # + 1: the EOS both frameworks append
            records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def data_subset(path: Path, source: str) -> None:
    """N_PAIRS lines of a data file, evenly spaced (a bundled sample by name, or a path)."""
    from alignlab.data import SAMPLES_DIR

    src = Path(source) if Path(source).exists() else SAMPLES_DIR / source
    lines = [line for line in src.read_text(encoding="utf-8").splitlines() if line.strip()]
    step = max(1, len(lines) // N_PAIRS)
    path.write_text("".join(line + "\n" for line in lines[::step][:N_PAIRS]), encoding="utf-8")


def make_assets(workdir: Path, vocab: int, length: int = 128, width: int = 256, data: str | None = None,
                seed: int = 0) -> tuple[Path, Path]:
    """Save the benchmark model + tokenizer to workdir/model and the pairs to workdir/pairs.jsonl."""
    model_dir = bench_model(workdir, vocab, width, length, seed)
    data_path = workdir / "pairs.jsonl"
    if data is None:
        synthetic_pairs(data_path, length, seed)
    else:
        data_subset(data_path, data)
    return model_dir, data_path


# ----------------------------------------------------------------------------------------------- runners
def alignlab_runner(name: str, model_dir: Path, data_path: Path, run_dir: Path, length: int) -> Callable[[], None]:
    """A train_step closure for alignlab_{method}{layout suffix}."""
    from alignlab.train import Trainer, load_config

    rest = name.split("_", 1)[1]
    method, layout = next((rest[: -len(s)] if s else rest, opts) for s, opts in reversed(ALIGNLAB_LAYOUTS.items())
                          if rest.endswith(s))
    cfg = load_config(base={
        "method": method, "model": str(model_dir), "train_data": str(data_path), "micro_batch_size": N_PAIRS,
        "gradient_accumulation_steps": 1, "max_length": length, "max_prompt_length": length // 2,
        "learning_rate": LR, "optimizer": "adamw", "max_grad_norm": MAX_GRAD_NORM, "lr_scheduler": "constant",
        "max_steps": 100_000, "eval_fraction": 0.0, "run_dir": str(run_dir), "tensorboard": False,
        "progress": False, "chunked_ops": True, "beta": BETA, **layout})
    trainer = Trainer(cfg)
    if layout.get("packing") and not trainer.packed_rows:
        raise SystemExit(f"{name}: the trainer fell back to padded batches")
    state = {"step": 0}

    def step() -> None:
        trainer.train_step(state["step"])
        state["step"] += 1

    step.models = (trainer.policy, trainer.ref_model)  # type: ignore[attr-defined]
    return step


def preference_batch(model_dir: Path, data_path: Path, length: int):
    """alignlab's padded collated batch of the N_PAIRS pairs: input_ids, attention_mask, labels [2B, T]."""
    from alignlab.assets import load_tokenizer
    from alignlab.data import collate_preference, load_preference_data

    tokenizer = load_tokenizer(str(model_dir))
    examples, report = load_preference_data(str(data_path), tokenizer, max_length=length,
                                            max_prompt_length=length // 2)
    return collate_preference(examples[:N_PAIRS], tokenizer.pad_token_id), report


def minimal_runner(kind: str, model_dir: Path, data_path: Path, length: int) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from alignlab.ops import chunked_sequence_stats

    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    policy.train()
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)
    batch, _ = preference_batch(model_dir, data_path, length)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    b = ids.shape[0] // 2
    targets, scored = labels[:, 1:].clamp(min=0), labels[:, 1:] != -100

    def full_logits_logps(model) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return (lp * scored).sum(-1)

    def logps_pair() -> tuple[torch.Tensor, torch.Tensor]:
        if kind == "full_logits":
            with torch.no_grad():
                ref_lp = full_logits_logps(ref)
            return full_logits_logps(policy), ref_lp
        hidden = policy.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        with torch.no_grad():
            ref_hidden = ref.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        stats = chunked_sequence_stats(hidden, policy.lm_head.weight, labels, ref_hidden=ref_hidden,
                                       ref_weight=ref.lm_head.weight, chunk_size=1024)
        return stats.logps, stats.ref_logps

    def step() -> None:
        lp, ref_lp = logps_pair()
        margin = (lp[:b] - ref_lp[:b]) - (lp[b:] - ref_lp[b:])
        loss = -F.logsigmoid(BETA * margin).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step.models = (policy, ref)  # type: ignore[attr-defined]
    return step


def trl_trainer(model_dir: Path, data_path: Path, out_dir: Path, max_steps: int, callbacks: list, length: int):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    records = [json.loads(line) for line in data_path.read_text(encoding="utf-8").splitlines()]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=N_PAIRS, gradient_accumulation_steps=1,
        max_length=length, beta=BETA, learning_rate=LR, max_grad_norm=MAX_GRAD_NORM, optim="adamw_torch_fused",
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, lr_scheduler_type="constant",
        max_steps=max_steps, logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none",
        dataloader_num_workers=0, bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False,
        precompute_ref_log_probs=False, disable_tqdm=True, seed=0)
    return DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(records),
                      processing_class=AutoTokenizer.from_pretrained(model_dir), callbacks=callbacks)


def check_same_tokens(trainer, model_dir: Path, data_path: Path, length: int) -> bool:
    """Whether TRL's collated rows (ids + scored positions) equal alignlab's, as multisets of rows."""
    ours, _ = preference_batch(model_dir, data_path, length)
    theirs = trainer.data_collator([trainer.train_dataset[i] for i in range(N_PAIRS)])

    def rows(ids, mask, scored) -> list[tuple]:
        return sorted((tuple(i[m.bool()].tolist()), tuple(s[m.bool()].tolist())) for i, m, s in zip(ids, mask, scored))

    mine = rows(ours["input_ids"], ours["attention_mask"], (ours["labels"] != -100).long())
    trl = rows(theirs["input_ids"], theirs["attention_mask"], theirs["completion_mask"])
    return mine == trl and ours["input_ids"].shape == theirs["input_ids"].shape


# ----------------------------------------------------------------------------------------------- worker
def _send(message: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def _command() -> str:
    return sys.stdin.readline().strip()


def worker(args: argparse.Namespace) -> None:
    """One method in its own process: build, touch every weight, baseline; then one step per 'step' line on stdin
    (its seconds back on stdout), and the peak growth at 'end'."""
    import datasets
    import torch

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    workdir, name, length = Path(args.workdir), args.worker, args.length[0]
    model_dir, data_path = workdir / "model", workdir / "pairs.jsonl"

    def check_threads() -> None:
        assert torch.get_num_threads() == args.threads, "a library changed the thread count"

    with tempfile.TemporaryDirectory() as tmp:
        if name == "trl_dpo":
            from transformers import TrainerCallback

            class Lockstep(TrainerCallback):
                begin = begin_cpu = resume = None
                before: tuple[float, bool] = (0.0, False)

                def on_step_begin(self, a, state, control, **kw):
                    self.begin, self.begin_cpu = time.perf_counter(), time.process_time()

                def on_step_end(self, a, state, control, **kw):
                    end, end_cpu = time.perf_counter(), time.process_time()
                    check_threads()
                    loop = end - self.resume if self.resume is not None else None
                    _send({"time": end - self.begin, "cpu": end_cpu - self.begin_cpu, "loop": loop})
                    if _command() != "step":
                        _send({"extra_peak_mib": _peak_growth(self.before)})
                        control.should_training_stop = True
                    self.resume = time.perf_counter()

            lockstep = Lockstep()
            trainer = trl_trainer(model_dir, data_path, Path(tmp), args.max_steps, [lockstep], length)
            same = check_same_tokens(trainer, model_dir, data_path, length)
            read, trainable = touch(trainer.model, trainer.ref_model)
            lockstep.before = _start_peak()
            _send({"ready": True, "same_tokens": same, "touched_mib": read, "trainable_mib": trainable,
                   "baseline_mib": lockstep.before[0]})
            if _command() == "step":
                trainer.train()
            return
        if name.startswith("alignlab_"):
            step = alignlab_runner(name, model_dir, data_path, Path(tmp) / "run", length)
        else:
            step = minimal_runner(name.split("_", 1)[1], model_dir, data_path, length)
        read, trainable = touch(*step.models)
        before = _start_peak()
        _send({"ready": True, "touched_mib": read, "trainable_mib": trainable, "baseline_mib": before[0]})
        while _command() == "step":
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            check_threads()
            _send({"time": seconds, "cpu": cpu})
        _send({"extra_peak_mib": _peak_growth(before)})


class Worker:
    """The driver's handle on one worker process."""

    def __init__(self, args: argparse.Namespace, name: str, workdir: Path, length: int):
        self.name = name
        self.log = open(workdir / f"{name}.log", "w+", encoding="utf-8")  # noqa: SIM115 (closed in close())
        cmd = [sys.executable, __file__, "--worker", name, "--workdir", str(workdir), "--threads", str(args.threads),
               "--length", str(length), "--max-steps", str(args.warmup + args.steps), "--pairs", str(N_PAIRS)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1)

    def receive(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        self.proc.wait()
        self.log.seek(0)
        tail = self.log.read()[-3000:]
        raise RuntimeError(f"{self.name} exited with {self.proc.returncode} (killed: {self.proc.returncode < 0}):\n"
                           f"{tail}")

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_cell(args: argparse.Namespace, names: list[str], vocab: int, length: int, width: int) -> dict:
    """One cell: fresh assets, one worker per method, steps in lockstep; times, peaks and the setup facts."""
    cell: dict = {"vocab": vocab, "length": length, "width": width, "data": args.data, "times": {}, "memory": {},
                  "skipped": {}, "failed": {}, "steps": args.steps, "warmup": args.warmup, "pairs": N_PAIRS,
                  "load_before": os.getloadavg()[0]}
    runnable = []
    for name in names:
        estimate = estimate_peak_mib(name, vocab, length, width)
        if estimate > args.max_gib * 1024:
            cell["skipped"][name] = estimate
        else:
            runnable.append(name)
    if not runnable:
        cell["data_report"] = "-"
        return cell
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        workdir = Path(tmp)
        model_dir, data_path = make_assets(workdir, vocab, length, width, args.data)
        _, data_report = preference_batch(model_dir, data_path, length)
        cell["data_report"] = str(data_report).replace("\n", "; ")
        workers: dict[str, Worker] = {}
        try:
            for name in runnable:  # one at a time, so set-up never competes with another set-up
                w = Worker(args, name, workdir, length)
                try:
                    ready = w.receive()
                except RuntimeError as exc:
                    cell["failed"][name] = str(exc).splitlines()[0]
                    print(f"{name}: {exc}", file=sys.stderr)
                    w.close()
                    continue
                workers[name] = w
                cell["setup"] = cell.get("setup", {})
                cell["setup"][name] = ready
                if "same_tokens" in ready:
                    cell["same_tokens"] = ready["same_tokens"]
            times: dict[str, list[float]] = {name: [] for name in workers}
            cpu: dict[str, list[float]] = {name: [] for name in workers}
            loop: list[float] = []
            for k in range(args.warmup + args.steps):
                if not workers:  # every method skipped or failed
                    break
                order = list(workers)
                order = order[k % len(order):] + order[:k % len(order)]
                for name in order:
                    w = workers.get(name)
                    if w is None:
                        continue
                    try:
                        w.send("step")
                        out = w.receive()
                    except (RuntimeError, OSError) as exc:
                        cell["failed"][name] = str(exc).splitlines()[0]
                        print(f"{name}: {exc}", file=sys.stderr)
                        w.close()
                        del workers[name]
                        continue
                    print(f"V {vocab} T {length} width {width}: step {k} {name} {out['time']:.3f} s "
                          f"(CPU {out['cpu']:.3f} s)", file=sys.stderr, flush=True)
                    if k >= args.warmup:
                        times[name].append(out["time"])
                        cpu[name].append(out["cpu"])
                        if out.get("loop") is not None and k > args.warmup:
                            loop.append(out["loop"])
            for name, w in workers.items():
                w.send("end")
                cell["memory"][name] = w.receive()["extra_peak_mib"]
            cell["times"] = {name: v for name, v in times.items() if v}
            cell["cpu"] = {name: v for name, v in cpu.items() if v}
            cell["load_after"] = os.getloadavg()[0]
            if loop:
                cell["times"]["trl_dpo_loop"] = loop
        finally:
            for w in workers.values():
                w.close()
    return cell


# ----------------------------------------------------------------------------------------------- estimates
def n_params(vocab: int, width: int) -> int:
    """Parameters of the benchmark Llama (embedding and untied head included)."""
    inter, kv = width * 688 // 256, width * KV_HEADS // HEADS
    layer = width * (width + 2 * kv + width) + 3 * width * inter + 2 * width
    return 2 * vocab * width + LAYERS * layer + width


def estimate_peak_mib(name: str, vocab: int, length: int, width: int) -> float:
    """A worker's resident peak, MiB, estimated before running it: the interpreter and libraries, the weights of
    policy and reference, gradients and AdamW moments, AdamW's two [V, H] temporaries, the policy's saved
    activations (24 floats per token, layer and hidden unit, over 2 x pairs rows of `length` tokens) and the
    vocabulary tiles (TRL: 8 buffers of up to 4096 tokens x 32768 entries; alignlab: 4 of its 8 MiB budget; full
    logits: 4 [rows, length, V] tensors). The constants come from the 131072 x 1024 cell measured on a CPU."""
    tokens = 2 * N_PAIRS * length
    weights = 5 * 4 * n_params(vocab, width) + 2 * 4 * vocab * width
    trunk = 24 * tokens * LAYERS * width * 4
    if name.startswith("trl"):
        head = 8 * min(tokens, 4096) * min(vocab, 32768) * 4
    elif name == "minimal_full_logits":
        head = 4 * tokens * vocab * 4
    else:
        head = 4 * 8 * MIB
    return (weights + trunk + head) / MIB + 450


# ----------------------------------------------------------------------------------------------- report
def _fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a and b else "-"


def _time_ratio(cell: dict, a: str, b: str) -> str:
    """Ratios of the median wall times, of the minimum wall times (the least disturbed steps) and of the median
    CPU times (process time of all threads: the work done, which other jobs on the machine barely change)."""
    ta, tb = cell["times"].get(a), cell["times"].get(b)
    if not ta or not tb:
        return "-"
    out = f"{statistics.median(ta) / statistics.median(tb):.3f} / {min(ta) / min(tb):.3f}"
    ca, cb = cell.get("cpu", {}).get(a), cell.get("cpu", {}).get(b)
    return out + (f" / {statistics.median(ca) / statistics.median(cb):.3f}" if ca and cb else " / -")


def _state_mib(cell: dict, name: str) -> float | None:
    setup = cell.get("setup", {}).get(name)
    return 3 * setup["trainable_mib"] if setup else None


def report_cell(args: argparse.Namespace, cell: dict) -> None:
    times, mem = cell["times"], cell["memory"]
    med = {k: statistics.median(v) for k, v in times.items() if v}
    what = f"{cell['pairs']} pairs of {cell['data']}" if cell["data"] else f"{cell['pairs']} synthetic pairs"
    print(f"DPO optimizer step on CPU, fp32, {args.threads} threads: Llama {LAYERS} layers, hidden {cell['width']}, "
          f"vocab {cell['vocab']}; {what}/step, max_length {cell['length']}; {args.steps} timed steps per method "
          f"after {args.warmup} warm-up, each method in its own process, interleaved step by step")
    if "same_tokens" in cell:
        print(f"TRL and alignlab batches hold identical token ids and scored positions: {cell['same_tokens']}")
    print(f"alignlab data report: {cell['data_report']}")
    trl, d, e = med.get("trl_dpo"), med.get("minimal_full_logits"), med.get("minimal_chunked")
    cpu = {k: statistics.median(v) for k, v in cell.get("cpu", {}).items() if v}
    head = (f"{'what':<36}{'median s/step':>14}{'IQR s':>8}{'min s':>8}{'CPU s':>8}{'/ TRL':>8}{'/ (d)':>8}"
            f"{'/ (e)':>8}{'extra peak MiB':>16}{'state MiB':>11}")
    print(head)
    print("-" * len(head))
    for name in ("trl_dpo", "trl_dpo_loop", *(n for n in METHODS if n != "trl_dpo")):
        if name not in med:
            continue
        v = times[name]
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
        m = f"{mem[name]:.0f}" if name in mem else "-"
        s = _state_mib(cell, name)
        c = f"{cpu[name]:.3f}" if name in cpu else "-"
        state = "-" if s is None else f"{s:.0f}"
        print(f"{LABELS[name]:<36}{med[name]:>14.3f}{q[2] - q[0]:>8.3f}{min(v):>8.3f}{c:>8}"
              f"{_fmt_ratio(med[name], trl):>8}{_fmt_ratio(med[name], d):>8}{_fmt_ratio(med[name], e):>8}{m:>16}"
              f"{state:>11}")
    for name, est in cell["skipped"].items():
        print(f"{LABELS[name]:<36}  not run: estimated peak {est / 1024:.1f} GiB > --max-gib {args.max_gib:g}")
    for name, why in cell["failed"].items():
        print(f"{LABELS[name]:<36}  failed: {why}")
    a_dpo, a_tdpo = med.get("alignlab_dpo"), med.get("alignlab_tdpo2")

    def target(label: str, a: float | None, b: float | None, limit: float) -> None:
        if a and b:
            print(f"{label:<52}{a / b:>7.3f}   target <= {limit:<5} {'met' if a / b <= limit else 'MISSED'}")

    print("ratios of medians:")
    if a_dpo and trl:  # the issues' targets differ by cell (<= 0.55 at V 8192, T 128; <= 0.4 at V 131072, T 1024)
        print(f"{'alignlab DPO / TRL DPO':<52}{a_dpo / trl:>7.3f}")
    target("alignlab TDPO2 / alignlab DPO", a_tdpo, a_dpo, 1.15)
    target("alignlab DPO / (e) minimal loop, same computation", a_dpo, e, 1.10)
    if a_dpo and d:
        print(f"{'alignlab DPO / (d) minimal loop, full logits':<52}{a_dpo / d:>7.3f}")
    low = {k: min(v) for k, v in times.items() if v}
    if all(low.get(k) for k in ("alignlab_dpo", "trl_dpo", "alignlab_tdpo2")):
        print(f"same ratios of minima (least disturbed step): DPO/TRL {low['alignlab_dpo'] / low['trl_dpo']:.3f}, "
              f"TDPO2/DPO {low['alignlab_tdpo2'] / low['alignlab_dpo']:.3f}"
              + (f", DPO/(e) {low['alignlab_dpo'] / low['minimal_chunked']:.3f}" if low.get("minimal_chunked") else ""))
    if all(cpu.get(k) for k in ("alignlab_dpo", "trl_dpo", "alignlab_tdpo2")):
        print(f"same ratios of median CPU times (work done): DPO/TRL {cpu['alignlab_dpo'] / cpu['trl_dpo']:.3f}, "
              f"TDPO2/DPO {cpu['alignlab_tdpo2'] / cpu['alignlab_dpo']:.3f}"
              + (f", DPO/(e) {cpu['alignlab_dpo'] / cpu['minimal_chunked']:.3f}" if cpu.get("minimal_chunked") else ""))
    if mem.get("alignlab_dpo") and mem.get("trl_dpo"):
        print(f"{'extra peak memory alignlab DPO / TRL DPO':<52}{mem['alignlab_dpo'] / mem['trl_dpo']:>7.3f}")
        s = _state_mib(cell, "alignlab_dpo")
        if s is not None and mem["trl_dpo"] > s:
            print(f"{'activation peak (extra - state) alignlab DPO / TRL':<52}"
                  f"{(mem['alignlab_dpo'] - s) / (mem['trl_dpo'] - s):>7.3f}")


def _fit(cells: list[dict], key: str, value: Callable[[dict], float | None]) -> float:
    """Exponent of value ~ key^a by least squares on the logs, the other quantities fixed per group (nan: fewer
    than two cells)."""
    pts = [(math.log(c[key]), math.log(v)) for c in cells if (v := value(c)) is not None and v > 0]
    if len({x for x, _ in pts}) < 2:
        return math.nan
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def _cell_time(cell: dict, name: str) -> str:
    if cell["times"].get(name):
        return f"{statistics.median(cell['times'][name]):.3f}"
    if name in cell["skipped"]:
        return f"does not fit (est. {cell['skipped'][name] / 1024:.1f} GiB)"
    return "failed" if name in cell["failed"] else "-"


def _cell_memory(cell: dict, name: str) -> str:
    if name in cell["memory"]:
        return f"{cell['memory'][name]:.0f}"
    return f"est. {cell['skipped'][name]:.0f} total" if name in cell["skipped"] else "-"


def report_grid(args: argparse.Namespace, cells: list[dict], names: list[str]) -> None:
    print(f"DPO optimizer step on CPU, fp32, {args.threads} threads: Llama {LAYERS} layers; "
          f"{'pairs of ' + args.data if args.data else 'synthetic pairs'}/step as listed; timed steps (warm-up) per "
          "method as listed, each method in its own process, interleaved step by step; "
          "extra peak = peak RSS growth over the steps above the touched weights; state = gradients + AdamW moments")
    short = {"trl_dpo": "TRL", "alignlab_dpo": "DPO", "alignlab_tdpo2": "TDPO2"}
    cols = list(names)
    print("| V | T | width | pairs | same ids | " + " | ".join(f"{short.get(n, n)} s/step" for n in cols)
          + " | DPO/TRL time: median / min / CPU | TDPO2/DPO time: median / min / CPU | "
          + " | ".join(f"{short.get(n, n)} extra peak MiB" for n in cols)
          + " | state MiB | DPO/TRL extra peak | DPO/TRL activation peak | steps (warm-up) | load |")
    print("|" + "---|" * (10 + 2 * len(cols) + 2))
    for c in cells:
        mem = c["memory"]
        state = _state_mib(c, "alignlab_dpo") or _state_mib(c, "trl_dpo")
        act = "-"
        if state is not None and mem.get("alignlab_dpo") and mem.get("trl_dpo") and mem["trl_dpo"] > state:
            act = f"{(mem['alignlab_dpo'] - state) / (mem['trl_dpo'] - state):.3f}"
        print(f"| {c['vocab']} | {c['length']} | {c['width']} | {c.get('pairs', 8)} | {c.get('same_tokens', '-')} | "
              + " | ".join(_cell_time(c, n) for n in cols)
              + f" | {_time_ratio(c, 'alignlab_dpo', 'trl_dpo')}"
              + f" | {_time_ratio(c, 'alignlab_tdpo2', 'alignlab_dpo')} | "
              + " | ".join(_cell_memory(c, n) for n in cols)
              + f" | {'-' if state is None else f'{state:.0f}'}"
              + f" | {_fmt_ratio(mem.get('alignlab_dpo'), mem.get('trl_dpo'))} | {act}"
              + f" | {c.get('steps', '-')} ({c.get('warmup', '-')})"
              + f" | {c.get('load_before', 0):.1f}-{c.get('load_after', 0):.1f} |")
    for c in cells:
        c.setdefault("pairs", 8)
    keys = ("vocab", "length", "width", "pairs")
    for key, label in zip(keys, ("V", "T", "width", "pairs")):
        groups: dict[tuple, list[dict]] = {}
        for c in cells:  # cells that differ in this quantity only
            groups.setdefault(tuple(c[k] for k in keys if k != key), []).append(c)
        for fixed, group in groups.items():
            if len({c[key] for c in group}) < 2:
                continue
            where = ", ".join(f"{k} {v}" for k, v in zip((k for k in keys if k != key), fixed))
            print(f"fitted exponents in {label} ({where}; least squares on the logs over {len(group)} cells): "
                  f"time ~ {label}^a (CPU time ~ {label}^a'), extra peak ~ {label}^b, "
                  f"activation peak (extra - state) ~ {label}^c")
            for n in cols:
                a = _fit(group, key, lambda c, n=n: statistics.median(c["times"][n]) if c["times"].get(n) else None)
                a_cpu = _fit(group, key,
                             lambda c, n=n: statistics.median(c["cpu"][n]) if c.get("cpu", {}).get(n) else None)
                b = _fit(group, key, lambda c, n=n: c["memory"].get(n))

                def act(c: dict, n: str = n) -> float | None:
                    s, v = _state_mib(c, n), c["memory"].get(n)
                    return v - s if s is not None and v is not None else None

                print(f"  {LABELS[n]:<36} a {a:.2f}   a' {a_cpu:.2f}   b {b:.2f}   c {_fit(group, key, act):.2f}")


def main() -> None:
    global N_PAIRS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every method")
    p.add_argument("--vocab", type=int, nargs="+", default=[8192], help="model vocabulary rows (several: a grid)")
    p.add_argument("--length", type=int, nargs="+", default=[128],
                   help="max_length; the synthetic pairs scale with it (several: a grid)")
    p.add_argument("--width", type=int, nargs="+", default=[256], help="hidden size (several: a grid)")
    p.add_argument("--pairs", type=int, default=N_PAIRS, help="pairs per step (one micro-batch)")
    p.add_argument("--data", help="8 evenly spaced pairs of this data file instead of the synthetic pairs "
                   "(a bundled sample by name, e.g. pairs_hh.jsonl)")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS)
    p.add_argument("--max-gib", type=float, default=22.0,
                   help="a method whose estimated peak exceeds this is not run in that cell")
    p.add_argument("--json", help="also write every step time and the memory results to this file")
    p.add_argument("--skip-trl", action="store_true", help="leave TRL out (e.g. when it is not installed)")
    p.add_argument("--report", nargs="+", metavar="JSON",
                   help="run nothing: print the tables and fits of the cells in these --json files together (a cell "
                   "in a later file replaces the same cell in an earlier one)")
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    p.add_argument("--max-steps", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--steps and --threads must be >= 1, --warmup >= 0")
    N_PAIRS = args.pairs
    if args.worker:
        worker(args)
        return
    names = [n for n in args.methods if not (args.skip_trl and n == "trl_dpo")]
    if args.report:
        files = [json.loads(Path(f).read_text(encoding="utf-8")) for f in args.report]
        latest = {}  # a cell measured again in a later file replaces the earlier measurement
        for c in (c for f in files for c in f["cells"]):
            latest[(c["vocab"], c["length"], c["width"], c.get("pairs", 8), c["data"])] = c
        cells = list(latest.values())
        for key in ("steps", "warmup", "threads", "data"):
            setattr(args, key, files[0]["settings"][key])
        names = [n for n in METHODS if any(n in c["times"] or n in c["skipped"] for c in cells)]
        report_grid(args, cells, names)
        print("command: python benchmarks/bench_trainer.py " + " ".join(sys.argv[1:]))
        return
    if "trl_dpo" in names:
        try:
            import trl  # noqa: F401
        except ImportError:
            p.error("TRL is not installed: pip install trl, or pass --skip-trl")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cells = []
    for vocab, length, width in itertools.product(args.vocab, args.length, args.width):
        cell = run_cell(args, names, vocab, length, width)
        cells.append(cell)
        if args.json:  # after every cell, so a long grid's finished cells survive an interruption
            settings = {k: getattr(args, k) for k in ("steps", "warmup", "threads", "data")}
            Path(args.json).write_text(json.dumps({"command": sys.argv[1:], "settings": settings, "cells": cells},
                                                  indent=1), encoding="utf-8")
        report_cell(args, cell)
        print(flush=True)
    if len(cells) > 1:
        report_grid(args, cells, names)
    print("command: python benchmarks/bench_trainer.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
