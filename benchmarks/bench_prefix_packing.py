"""Prefix sharing and packing: seconds per optimizer step and padded positions, against today's padded layout.

Three trainers per data file, identical but for the batch layout: `padded` (today: [chosen; rejected] rows
right-padded to the batch's longest), `shared` (prefix_sharing: one row [prompt; chosen tail; rejected tail] per
pair, rejected masked from chosen) and `shared+packed` (prefix sharing and packing: pairs packed into rows of at
most N tokens, one layout per N in --packing-tokens; 0 is the trainer's default, max_length). The same model (alignlab/tiny-llama unless
--model), the same data, the same steps (step k is the same batch for every layout), the method DPO with its
reference online (--method), micro-batches of --micro-batch pairs, fp32, --threads threads.

Timed: `Trainer.train_step` (collation, policy and reference forwards, backward, AdamW), --steps steps per
layout after --warmup each, interleaved step by step in rotating order, so machine noise falls on every layout
alike; the ratio is the median over steps of the per-step ratio to the padded layout's time for the same batch.
Positions: what the model runs per step (rows x row length, policy and reference each), the share of them that
is padding, and the share of real tokens that are a prompt run a second time.

    python benchmarks/bench_prefix_packing.py [--steps 20 --warmup 2 --threads 2 --micro-batch 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

LAYOUTS = {
    "padded": {"prefix_sharing": False, "packing": False},
    "shared": {"prefix_sharing": True, "packing": False},
}
DATA = ("pairs.jsonl", "pairs_hh.jsonl")


def wide_llama(width: int, directory: Path) -> str:
    """alignlab/tiny-llama's shape (4 layers, 4 heads, 2 key/value heads, untied head, the offline tokenizer) at
    another width, seeded, saved to `directory`: the vocabulary projection is then a smaller share of a step."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignlab.assets import load_tokenizer

    tokenizer = load_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=width * 688 // 256,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=False,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def make_trainer(args: argparse.Namespace, data: Path, layout: dict, run_dir: Path):
    from alignlab.train import Trainer, load_config

    cfg = load_config(base={
        "method": args.method, "model": args.model, "train_data": str(data), "micro_batch_size": args.micro_batch,
        "gradient_accumulation_steps": 1, "max_length": args.max_length, "max_prompt_length": args.max_length // 2,
        "max_steps": 100_000, "eval_fraction": 0.0, "run_dir": str(run_dir), "tensorboard": False,
        "progress": False, **layout})
    options = dict(layout)
    lines: list[str] = []
    trainer = Trainer(cfg, console=type("Console", (), {"print": staticmethod(lines.append)})())
    if any(options.values()) and not trainer.packed_rows:
        sys.exit(f"{layout}: the trainer fell back to padded batches: {lines}")
    return trainer


def positions(trainer, step: int) -> tuple[int, int, int]:
    """(positions the model runs, real tokens among them, prompt tokens run twice) over a step's micro-batches."""
    run = real = repeated = 0
    for micro in trainer.step_positions(step):
        examples = [trainer.train_examples[i] for i in micro]
        batch = trainer.collate(examples, trainer.pad_id)
        ids = batch.get("packed_input_ids", batch["input_ids"])
        run += ids.numel()
        if "packed_gather_index" in batch:
            real += int(batch["packed_gather_index"][batch["attention_mask"].bool()].unique().numel())
        else:
            real += int(batch["attention_mask"].sum())
            repeated += sum(len(e["prompt_input_ids"]) for e in examples)
    return run, real, repeated


def measure(args: argparse.Namespace, data: Path, workdir: Path) -> dict[str, dict]:
    import torch

    torch.set_num_threads(args.threads)
    layouts = dict(LAYOUTS)
    for budget in args.packing_tokens:
        layouts[f"shared+packed@{budget or args.max_length}"] = {"prefix_sharing": True, "packing": True,
                                                                "packing_tokens": budget or None}
    trainers = {name: make_trainer(args, data, layout, workdir / f"{data.stem}-{name}")
                for name, layout in layouts.items()}
    names = list(trainers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for step in range(args.warmup + args.steps):
        order = names[step % len(names):] + names[:step % len(names)]
        for name in order:
            start = time.perf_counter()
            trainers[name].train_step(step)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    out = {}
    for name in names:
        counts = [positions(trainers[name], step) for step in range(args.warmup, args.warmup + args.steps)]
        run, real, repeated = (sum(c[i] for c in counts) / len(counts) for i in range(3))
        ratios = [t / p for t, p in zip(times[name], times["padded"])]
        out[name] = {"median": statistics.median(times[name]), "ratio": statistics.median(ratios),
                     "positions": run, "padding": 1 - real / run, "repeated": repeated / real}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--packing-tokens", type=int, nargs="+", default=[0, 256],
                        help="row budgets of the shared+packed layouts (0: the trainer's default, max_length)")
    parser.add_argument("--method", default="dpo")
    parser.add_argument("--model", default="alignlab/tiny-llama")
    parser.add_argument("--width", type=int, default=None,
                        help="instead of --model, tiny-llama's shape at this hidden size (random, seeded)")
    parser.add_argument("--data", nargs="+", default=list(DATA))
    args = parser.parse_args(argv)

    from alignlab.data import SAMPLES_DIR

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-prefix-packing-") as tmp:
        if args.width is not None:
            args.model = wide_llama(args.width, Path(tmp) / f"llama-{args.width}")
        for name in args.data:
            results[name] = measure(args, SAMPLES_DIR / name, Path(tmp))
    model = f"tiny-llama's shape at width {args.width}" if args.width is not None else args.model
    print(f"{args.method.upper()} optimizer step on CPU, fp32, {args.threads} threads, {model}, "
          f"{args.micro_batch} pairs per step; {args.steps} steps per layout after {args.warmup} warm-up, "
          f"interleaved; shared+packed@N: rows of at most N tokens (the default N is max_length, {args.max_length})")
    head = (f"| {'data':<15} | {'layout':<22} | median s/step | throughput x padded | positions run/step "
            f"| padded share | prompt run twice / real |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for data, rows in results.items():
        for name, r in rows.items():
            print(f"| {data:<15} | {name:<22} | {r['median']:13.3f} | {1 / r['ratio']:19.2f} | "
                  f"{r['positions']:18.0f} | {r['padding']:12.1%} | {r['repeated']:23.1%} |")
    print("\ncommand: python benchmarks/bench_prefix_packing.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
