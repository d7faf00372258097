"""Scoring throughput vs a bare forward pass of the same model over the same tokens.

"bare forward" is `model(input_ids, attention_mask).logits` under no_grad in eval mode over the very batches the
engine forms (pairs sorted by length, `--batch-size` pairs = 2x rows per forward, right padding), pre-collated, so
it pays neither sorting, collation nor any log-prob work. "scoring engine" is
`alignlab.diagnostics.scoring.compute_pair_scores` end to end (sort, collate, forward through the base model,
chunked log-probs of the response tokens from the hidden states and the lm_head weight, results in input order);
"scoring, logits path" is the same engine with `path="logits"` (full logits + ops.sequence_logps). Repeats are
interleaved (bare, engine, logits, bare, ...) so machine load hits each alike; the table reports medians.
Tokens are the real (unpadded) tokens of chosen and rejected sequences.

    python benchmarks/bench_scoring.py [--hidden 1024 --layers 8] [--pairs 96 --batch-size 16 --repeats 3 --threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        help="hidden size of a Llama built from scratch (default: the built-in alignlab/tiny-llama)",
    )
    p.add_argument("--layers", type=int, default=None, help="layers of that Llama (default 4)")
    p.add_argument(
        "--pairs", type=int, default=96, help="pairs from the bundled pairs.jsonl (repeated if more)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="pairs per forward")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16", action="store_true", help="bfloat16 weights for both")
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from alignlab.assets import load_model, load_tokenizer
    from alignlab.data import SAMPLES_DIR, collate_preference, load_preference_data
    from alignlab.diagnostics.scoring import compute_pair_scores

    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer()
    if args.hidden is None and args.layers is None:
        model = load_model()
        what = "alignlab/tiny-llama"
    else:
        hidden, layers = args.hidden or 256, args.layers or 4
        heads = max(1, hidden // 64)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden,
            intermediate_size=int(hidden * 8 / 3),
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=1024,
            tie_word_embeddings=False,
            pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        what = f"Llama hidden {hidden}, {layers} layers, {heads} heads"
    if args.bf16:
        model = model.to(torch.bfloat16)
    model.eval()
    examples, _ = load_preference_data(str(SAMPLES_DIR / "pairs.jsonl"), tokenizer)
    examples = [dict(examples[i % len(examples)], index=i) for i in range(args.pairs)]
    tokens = sum(len(e["chosen_input_ids"]) + len(e["rejected_input_ids"]) for e in examples)
    order = sorted(
        range(len(examples)),
        key=lambda i: -max(len(examples[i]["chosen_input_ids"]), len(examples[i]["rejected_input_ids"])),
    )
    batches = [
        collate_preference([examples[i] for i in order[s : s + args.batch_size]], tokenizer.pad_token_id)
        for s in range(0, len(order), args.batch_size)
    ]

    @torch.no_grad()
    def bare() -> None:
        for batch in batches:
            _ = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
            ).logits

    def engine() -> None:
        compute_pair_scores(model, examples, batch_size=args.batch_size)

    def logits_path() -> None:
        compute_pair_scores(model, examples, batch_size=args.batch_size, path="logits")

    runs = {
        "bare forward (logits)": bare,
        "scoring engine (chunked)": engine,
        "scoring, logits path": logits_path,
    }
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    base = medians["bare forward (logits)"]
    dtype = "bf16" if args.bf16 else "fp32"
    print(
        f"scoring throughput: {what}, vocab {len(tokenizer)}, {dtype}, {args.pairs} pairs = {tokens} tokens, "
        f"batch {args.batch_size} pairs, {args.threads} threads, {args.repeats} repeats"
    )
    print(f"{'what':<27}{'median s':>10}{'tokens/s':>12}{'throughput ratio':>18}")
    for name, median in medians.items():
        print(f"{name:<27}{median:>10.3f}{tokens / median:>12.0f}{base / median:>18.3f}")
    print("command: python benchmarks/bench_scoring.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
