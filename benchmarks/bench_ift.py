"""Time of one IFT optimizer step against one SFT step on the tiny model (alignlab's Trainer, CPU, fp32).

Both methods train alignlab/tiny-llama on the bundled SFT samples with micro_batch_size 8, max_length 128,
AdamW and a constant schedule, through `Trainer.train_step` (collation, forward, backward, clipping, optimizer).
IFT adds the no-grad greedy pass from the gold prefix (chunked argmax over the vocabulary), the mixing of
input embeddings and the discounted loss weights (arXiv 2405.11870, as its official code does). Step k of both methods sees the
same batch (the data order is a pure function of seed and step). The steps are interleaved in blocks, SFT and
IFT alternating which goes first, after a warm-up; the table gives medians and the median of the per-step ratios.

    python benchmarks/bench_ift.py [--steps 20 --rounds 10 --warmup 3 --threads 2 --ift-lambda 0.2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TARGET = 1.5


def runner(method: str, args: argparse.Namespace, run_dir: Path) -> Callable[[], None]:
    from alignlab.data import SAMPLES_DIR
    from alignlab.train import Trainer, load_config

    base = {"method": method, "model": args.model, "train_data": str(SAMPLES_DIR / "sft.jsonl"),
            "micro_batch_size": args.batch, "gradient_accumulation_steps": 1, "max_length": 128,
            "max_prompt_length": 64, "learning_rate": 5e-6, "optimizer": "adamw", "lr_scheduler": "constant",
            "max_steps": 100_000, "eval_fraction": 0.0, "run_dir": str(run_dir), "tensorboard": False,
            "progress": False}
    if method == "ift":
        base["ift_lambda"] = args.ift_lambda
    trainer = Trainer(load_config(base=base))
    state = {"step": 0}

    def step() -> None:
        trainer.train_step(state["step"])
        state["step"] += 1

    return step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds the timed steps are split into")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per method first")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--batch", type=int, default=8, help="micro_batch_size (sequences per step)")
    p.add_argument("--model", default="alignlab/tiny-llama", help="model name or directory")
    p.add_argument("--ift-lambda", type=float, default=0.2, help="IFT lambda (0 skips the greedy pass)")
    args = p.parse_args()
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--steps, --rounds and --threads must be >= 1, --warmup >= 0")
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        runners = {m: runner(m, args, Path(tmp) / m) for m in ("sft", "ift")}
        for step in runners.values():
            for _ in range(args.warmup):
                step()
        times: dict[str, list[float]] = {name: [] for name in runners}
        block = math.ceil(args.steps / args.rounds)
        done = 0
        r = 0
        while done < args.steps:
            n = min(block, args.steps - done)
            order = ("sft", "ift") if r % 2 == 0 else ("ift", "sft")
            for name in order:
                for _ in range(n):
                    start = time.perf_counter()
                    runners[name]()
                    times[name].append(time.perf_counter() - start)
            if torch.get_num_threads() != args.threads:
                raise RuntimeError("a library changed the thread count")
            done += n
            r += 1
    sft, ift = statistics.median(times["sft"]), statistics.median(times["ift"])
    paired = statistics.median(i / s for i, s in zip(times["ift"], times["sft"]))
    print(f"IFT vs SFT optimizer step on CPU, fp32, {args.threads} threads: {args.model}, {args.batch} sequences/step, "
          f"max_length 128, IFT lambda {args.ift_lambda}; {args.steps} timed steps per method after {args.warmup} "
          f"warm-up, interleaved in {r} rounds")
    head = f"{'what':<22}{'median s/step':>14}{'IQR s':>9}{'/ SFT':>8}"
    print(head)
    print("-" * len(head))
    for name, label in (("sft", "alignlab SFT step"), ("ift", "alignlab IFT step")):
        q = statistics.quantiles(times[name], n=4) if len(times[name]) >= 2 else [times[name][0]] * 3
        print(f"{label:<22}{statistics.median(times[name]):>14.3f}{q[2] - q[0]:>9.3f}"
              f"{statistics.median(times[name]) / sft:>8.3f}")
    verdict = "met" if ift / sft <= TARGET else "MISSED"
    print(f"IFT / SFT (ratio of medians) {ift / sft:.3f}, median per-step ratio {paired:.3f}; "
          f"target <= {TARGET} {verdict}")
    print("command: python benchmarks/bench_ift.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
