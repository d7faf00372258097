"""Time and memory of one DPO optimizer step: TRL's DPOTrainer, alignlab's Trainer, and hand-written loops.

Everything runs on CPU in fp32 with the same weights, the same 8 synthetic pairs every step and the same thread
count. The model is a Llama with 4 layers, hidden 256, intermediate 688, 4 heads (2 key/value heads, as
alignlab/tiny-llama), and a vocabulary of 8192 rows; the text comes from the offline tokenizer (4096 ids, so only
the first 4096 rows are ever looked up, which changes no cost). Prompts are about 32 tokens and responses 48 to 90
tokens, so every sequence fits in max_length 128 and nothing is truncated; each prompt ends and each response
starts on a token boundary, so TRL (joint prompt + response encoding) and alignlab (separate encoding) train on
identical token ids, which the benchmark checks.

What is timed, one optimizer step each (forward, backward, clipping at 1.0, AdamW at lr 5e-7, schedule):

- trl_dpo: TRL DPOTrainer (batch 8, accumulation 1, beta 0.1, reference = a copy of the model, no
  precomputed reference, no eval/saving/logging, no gradient checkpointing); the time from on_step_begin to
  on_step_end (trl_dpo_loop: from one step's end to the next, batch fetch and logging hooks included);
- alignlab_dpo, alignlab_tdpo2: alignlab.train.Trainer.train_step (collation included);
- minimal_full_logits: a hand-written loop: concatenated chosen + rejected forward of the policy, the reference
  forward under no_grad, log_softmax + gather on the full logits, the DPO loss, backward, clip, AdamW;
- minimal_chunked: the same loop with log-probs from the final hidden states through
  alignlab.ops.chunked_sequence_stats (the computation alignlab's trainer does), so trainer overhead is measured
  against a loop doing the same work.

The measurements are interleaved: TRL's own training loop runs a block of steps, then a callback runs a block of
every other method (in rotating order), for --rounds rounds, after a warm-up of --warmup steps each; medians over
--steps steps per method. Peak memory: each method again in its own fresh process; "extra peak" is the growth of
the peak resident set size over --memory-steps steps from just before the first (the peak counter VmHWM is reset
to the current RSS through /proc/self/clear_refs after returning freed heap with malloc_trim; where that is not
possible, the growth of ru_maxrss).

    python benchmarks/bench_trainer.py [--steps 20 --rounds 10 --warmup 3 --threads 2 --json times.json]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import math
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

N_PAIRS = 8
MAX_LENGTH = 128
MAX_PROMPT_LENGTH = 64
LR = 5e-7
BETA = 0.1
MAX_GRAD_NORM = 1.0
METHODS = ("trl_dpo", "alignlab_dpo", "alignlab_tdpo2", "minimal_full_logits", "minimal_chunked")
LABELS = {
    "trl_dpo": "TRL DPOTrainer step",
    "trl_dpo_loop": "TRL DPOTrainer loop step",
    "alignlab_dpo": "alignlab DPO train_step",
    "alignlab_tdpo2": "alignlab TDPO2 train_step",
    "minimal_full_logits": "(d) minimal DPO, full logits",
    "minimal_chunked": "(e) minimal DPO, chunked stats",
}


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


def make_assets(workdir: Path, vocab: int, seed: int = 0) -> tuple[Path, Path]:
    """Save the benchmark model + tokenizer to workdir/model and the pairs to workdir/pairs.jsonl."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignlab.assets import load_tokenizer

    tokenizer = load_tokenizer()
    model_dir, data_path = workdir / "model", workdir / "pairs.jsonl"
    config = LlamaConfig(vocab_size=vocab, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    rng, words, records = random.Random(seed), _words(), []
    while len(records) < N_PAIRS:
        prompt = _sentence(rng, words, encode, rng.randint(28, 34), "", "?")
        chosen = _sentence(rng, words, encode, rng.randint(48, 86), " ", ".")
        rejected = _sentence(rng, words, encode, rng.randint(48, 86), " ", ".")
        p, c, r = encode(prompt), encode(chosen), encode(rejected)
        joint_ok = encode(prompt + chosen) == p + c and encode(prompt + rejected) == p + r
        if joint_ok and len(p) + max(len(c), len(r)) + 1 <= MAX_LENGTH:  # + 1: the EOS both frameworks append
            records.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    data_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return model_dir, data_path


# ----------------------------------------------------------------------------------------------- runners
def alignlab_runner(method: str, model_dir: Path, data_path: Path, run_dir: Path) -> Callable[[], None]:
    from alignlab.train import Trainer, load_config

    cfg = load_config(base={
        "method": method, "model": str(model_dir), "train_data": str(data_path), "micro_batch_size": N_PAIRS,
        "gradient_accumulation_steps": 1, "max_length": MAX_LENGTH, "max_prompt_length": MAX_PROMPT_LENGTH,
        "learning_rate": LR, "optimizer": "adamw", "max_grad_norm": MAX_GRAD_NORM, "lr_scheduler": "constant",
        "max_steps": 100_000, "eval_fraction": 0.0, "run_dir": str(run_dir), "tensorboard": False,
        "progress": False, "chunked_ops": True, "beta": BETA})
    trainer = Trainer(cfg)
    state = {"step": 0}

    def step() -> None:
        trainer.train_step(state["step"])
        state["step"] += 1

    step.trainer = trainer  # type: ignore[attr-defined]
    return step


def preference_batch(model_dir: Path, data_path: Path):
    """alignlab's collated batch of the N_PAIRS pairs: input_ids, attention_mask, labels [2B, T]."""
    from alignlab.assets import load_tokenizer
    from alignlab.data import collate_preference, load_preference_data

    tokenizer = load_tokenizer(str(model_dir))
    examples, report = load_preference_data(str(data_path), tokenizer, max_length=MAX_LENGTH,
                                            max_prompt_length=MAX_PROMPT_LENGTH)
    return collate_preference(examples[:N_PAIRS], tokenizer.pad_token_id), report


def minimal_runner(kind: str, model_dir: Path, data_path: Path) -> Callable[[], None]:
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from alignlab.ops import chunked_sequence_stats

    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    policy.train()
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    batch, _ = preference_batch(model_dir, data_path)
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

    return step


def trl_trainer(model_dir: Path, data_path: Path, out_dir: Path, max_steps: int, callbacks: list):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    records = [json.loads(line) for line in data_path.read_text(encoding="utf-8").splitlines()]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=N_PAIRS, gradient_accumulation_steps=1,
        max_length=MAX_LENGTH, beta=BETA, learning_rate=LR, max_grad_norm=MAX_GRAD_NORM, optim="adamw_torch",
        weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, lr_scheduler_type="constant",
        max_steps=max_steps, logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none",
        dataloader_num_workers=0, bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False,
        precompute_ref_log_probs=False, disable_tqdm=True, seed=0)
    return DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(records),
                      processing_class=AutoTokenizer.from_pretrained(model_dir), callbacks=callbacks)


def check_same_tokens(trainer, model_dir: Path, data_path: Path) -> bool:
    """Whether TRL's collated rows (ids + scored positions) equal alignlab's, as multisets of rows."""
    ours, _ = preference_batch(model_dir, data_path)
    theirs = trainer.data_collator([trainer.train_dataset[i] for i in range(N_PAIRS)])

    def rows(ids, mask, scored) -> list[tuple]:
        return sorted((tuple(i[m.bool()].tolist()), tuple(s[m.bool()].tolist())) for i, m, s in zip(ids, mask, scored))

    mine = rows(ours["input_ids"], ours["attention_mask"], (ours["labels"] != -100).long())
    trl = rows(theirs["input_ids"], theirs["attention_mask"], theirs["completion_mask"])
    return mine == trl and ours["input_ids"].shape == theirs["input_ids"].shape


# ----------------------------------------------------------------------------------------------- timing
THREADS = 2  # set from --threads; checked after every block


def run_block(runners: dict[str, Callable[[], None]], times: dict[str, list[float]], n: int, rotate: int) -> None:
    import torch

    names = list(runners)
    names = names[rotate % len(names):] + names[:rotate % len(names)]
    for name in names:
        for _ in range(n):
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
        assert torch.get_num_threads() == THREADS, "a library changed the thread count"


def timing(args: argparse.Namespace, workdir: Path, model_dir: Path, data_path: Path) -> tuple[dict, dict]:
    import torch

    runners: dict[str, Callable[[], None]] = {
        "alignlab_dpo": alignlab_runner("dpo", model_dir, data_path, workdir / "run-dpo"),
        "alignlab_tdpo2": alignlab_runner("tdpo2", model_dir, data_path, workdir / "run-tdpo2"),
        "minimal_full_logits": minimal_runner("full_logits", model_dir, data_path),
        "minimal_chunked": minimal_runner("chunked", model_dir, data_path),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    warm: dict[str, list[float]] = {name: [] for name in runners}
    block = math.ceil(args.steps / args.rounds)
    info: dict = {"block": block}

    def blocks_after(done: int) -> None:
        """Run the others' warm-up, or their block matching the `done` timed steps of the lead method."""
        if done == 0:
            run_block(runners, warm, args.warmup, 0)
            return
        if done % block == 0 or done == args.steps:
            n = done - block * ((done - 1) // block)
            run_block(runners, times, n, (done - 1) // block)

    if args.skip_trl:
        done = 0
        blocks_after(0)
        while done < args.steps:
            n = min(block, args.steps - done)
            done += n
            blocks_after(done)
        return times, info

    from transformers import TrainerCallback

    trl_times: list[float] = []
    loop_times: list[float] = []

    class Interleave(TrainerCallback):
        begin = resume = None

        def on_step_begin(self, a, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            end = time.perf_counter()
            timed = state.global_step - args.warmup  # state.global_step counts this step
            if timed > 0:
                trl_times.append(end - self.begin)
                if self.resume is not None and timed > 1:
                    loop_times.append(end - self.resume)
            if timed >= 0:
                blocks_after(timed)
            assert torch.get_num_threads() == args.threads, "a library changed the thread count"
            self.resume = time.perf_counter()

    trainer = trl_trainer(model_dir, data_path, workdir / "trl", args.warmup + args.steps, [Interleave()])
    info["same_tokens"] = check_same_tokens(trainer, model_dir, data_path)
    trainer.train()
    times["trl_dpo"], times["trl_dpo_loop"] = trl_times, loop_times
    return times, info


# ----------------------------------------------------------------------------------------------- memory
def memory_worker(args: argparse.Namespace) -> dict:
    import datasets
    import torch

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    model_dir, data_path = workdir / "model", workdir / "pairs.jsonl"
    name = args.memory_worker
    with tempfile.TemporaryDirectory() as tmp:
        if name == "trl_dpo":
            trainer = trl_trainer(model_dir, data_path, Path(tmp), args.memory_steps, [])
            before = _start_peak()
            trainer.train()
        else:
            if name.startswith("alignlab_"):
                step = alignlab_runner(name.split("_", 1)[1], model_dir, data_path, Path(tmp) / "run")
            else:
                step = minimal_runner(name.split("_", 1)[1], model_dir, data_path)
            before = _start_peak()
            for _ in range(args.memory_steps):
                step()
        return {"method": name, "extra_peak_mib": _peak_growth(before)}


def memory(args: argparse.Namespace, workdir: Path, names: list[str]) -> dict[str, float]:
    out = {}
    for name in names:
        cmd = [sys.executable, __file__, "--threads", str(args.threads), "--memory-steps", str(args.memory_steps),
               "--workdir", str(workdir), "--memory-worker", name]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"memory run of {name} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])["extra_peak_mib"]
    return out


# ----------------------------------------------------------------------------------------------- report
def _fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a and b else "-"


def report(args: argparse.Namespace, times: dict, info: dict, mem: dict[str, float], report_text: str) -> None:
    med = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"DPO optimizer step on CPU, fp32, {args.threads} threads: Llama 4 layers, hidden 256, vocab {args.vocab}; "
          f"{N_PAIRS} pairs/step, max_length {MAX_LENGTH}; {args.steps} timed steps per method after "
          f"{args.warmup} warm-up, interleaved in {args.rounds} rounds (blocks of {info['block']})")
    if "same_tokens" in info:
        print(f"TRL and alignlab batches hold identical token ids and scored positions: {info['same_tokens']}")
    print(f"alignlab data report: {report_text}")
    trl, d, e = med.get("trl_dpo"), med.get("minimal_full_logits"), med.get("minimal_chunked")
    head = (f"{'what':<33}{'median s/step':>14}{'IQR s':>8}{'min s':>8}{'/ TRL':>8}{'/ (d)':>8}{'/ (e)':>8}"
            f"{'extra peak MiB':>16}")
    print(head)
    print("-" * len(head))
    for name in ("trl_dpo", "trl_dpo_loop", "alignlab_dpo", "alignlab_tdpo2", "minimal_full_logits",
                 "minimal_chunked"):
        if name not in med:
            continue
        v = times[name]
        q = statistics.quantiles(v, n=4) if len(v) >= 2 else [v[0], v[0], v[0]]
        m = f"{mem[name]:.0f}" if name in mem else "-"
        print(f"{LABELS[name]:<33}{med[name]:>14.3f}{q[2] - q[0]:>8.3f}{min(v):>8.3f}{_fmt_ratio(med[name], trl):>8}"
              f"{_fmt_ratio(med[name], d):>8}{_fmt_ratio(med[name], e):>8}{m:>16}")
    a_dpo, a_tdpo = med.get("alignlab_dpo"), med.get("alignlab_tdpo2")

    def target(label: str, a: float | None, b: float | None, limit: float) -> None:
        if a and b:
            print(f"{label:<52}{a / b:>7.3f}   target <= {limit:<5} {'met' if a / b <= limit else 'MISSED'}")

    print("ratios of medians:")
    target("alignlab DPO / TRL DPO", a_dpo, trl, 0.55)
    target("alignlab TDPO2 / alignlab DPO", a_tdpo, a_dpo, 1.15)
    target("alignlab DPO / (e) minimal loop, same computation", a_dpo, e, 1.10)
    if a_dpo and d:
        print(f"{'alignlab DPO / (d) minimal loop, full logits':<52}{a_dpo / d:>7.3f}")
    low = {k: min(v) for k, v in times.items() if v}
    if low.get("alignlab_dpo") and low.get("trl_dpo") and low.get("alignlab_tdpo2") and low.get("minimal_chunked"):
        print(f"same ratios of minima (least disturbed step): DPO/TRL {low['alignlab_dpo'] / low['trl_dpo']:.3f}, "
              f"TDPO2/DPO {low['alignlab_tdpo2'] / low['alignlab_dpo']:.3f}, "
              f"DPO/(e) {low['alignlab_dpo'] / low['minimal_chunked']:.3f}")
    if mem.get("alignlab_dpo") and mem.get("trl_dpo"):
        print(f"{'extra peak memory alignlab DPO / TRL DPO':<52}{mem['alignlab_dpo'] / mem['trl_dpo']:>7.3f}")
    print("command: python benchmarks/bench_trainer.py " + " ".join(sys.argv[1:]))


def main() -> None:
    global THREADS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the timed steps are split into")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every method")
    p.add_argument("--vocab", type=int, default=8192, help="model vocabulary rows")
    p.add_argument("--memory-steps", type=int, default=3, help="steps of each fresh-process memory run")
    p.add_argument("--memory", default=",".join(METHODS),
                   help="comma-separated methods to measure peak memory for ('' for none)")
    p.add_argument("--json", help="also write every step time and the memory results to this file")
    p.add_argument("--skip-trl", action="store_true", help="leave TRL out (e.g. when it is not installed)")
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--memory-worker", choices=METHODS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--steps, --rounds and --threads must be >= 1, --warmup >= 0")
    if args.memory_worker:
        print(json.dumps(memory_worker(args)))
        return
    import datasets
    import torch

    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    THREADS = args.threads
    names = [n for n in args.memory.split(",") if n]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        p.error(f"--memory: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if args.skip_trl:
        names = [n for n in names if n != "trl_dpo"]
    else:
        try:
            import trl  # noqa: F401
        except ImportError:
            p.error("TRL is not installed: pip install trl, or pass --skip-trl")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_dir, data_path = make_assets(workdir, args.vocab)
        _, data_report = preference_batch(model_dir, data_path)
        times, info = timing(args, workdir, model_dir, data_path)
        mem = memory(args, workdir, names)
    if args.json:
        Path(args.json).write_text(json.dumps({"times": times, "memory_mib": mem, **info}, indent=1), encoding="utf-8")
    report(args, times, info, mem, str(data_report).replace("\n", "; "))


if __name__ == "__main__":
    main()
