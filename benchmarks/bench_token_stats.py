"""Peak memory and time of TDPO's per-sequence statistics, chunked vs plain, forward + backward.

Statistics: policy log-probs, reference log-probs and forward KL(pi_ref || pi_theta) summed per sequence, then a
TDPO2 loss and its backward to the policy hidden states and lm_head weight. Inputs stand in for a model's final
hidden states (8 pairs = 16 sequences x 512 tokens, hidden 1024, vocabulary 32000; the first 128 tokens of each
sequence are prompt). Each path runs in its own fresh process; "extra peak" is the growth of the process's peak
resident set size (ru_maxrss) from just before the first call, i.e. memory above the inputs and the model's own
activations. Time is the median of the repeats after a warm-up.

`--softcap C` gives both models a soft-capped head (Gemma-2/3: logits = C tanh(z / C)) and adds a third run, the
chunked path with the plain linear head, so the transform's own cost shows beside the two soft-capped paths.

    python benchmarks/bench_token_stats.py [--pairs 8 --seq 512 --vocab 32000 --hidden 1024 --threads 2]
    python benchmarks/bench_token_stats.py --softcap 30
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _worker(args: argparse.Namespace) -> dict:
    import torch

    from alignlab.losses import tdpo_loss
    from alignlab.ops import chunked_sequence_stats, plain_sequence_stats

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n_seq, t, h, v = 2 * args.pairs, args.seq, args.hidden, args.vocab
    hidden = (torch.randn(n_seq, t, h) * 0.5).requires_grad_()
    weight = (torch.randn(v, h) * 0.02).requires_grad_()
    ref_hidden = hidden.detach() + 0.01 * torch.randn(n_seq, t, h)
    ref_weight = weight.detach().clone()
    labels = torch.randint(0, v, (n_seq, t))
    labels[:, : args.prompt] = -100
    fn = chunked_sequence_stats if args.path == "chunked" else plain_sequence_stats

    def step() -> None:
        stats = fn(hidden, weight, labels, ref_hidden=ref_hidden, ref_weight=ref_weight, kl=True,
                   chunk_size=args.chunk, softcap=args.cap, ref_softcap=args.cap)
        margin = stats.logps - stats.ref_logps
        b = args.pairs
        losses, _, _ = tdpo_loss(margin[:b], margin[b:], stats.kl[:b], stats.kl[b:], variant="tdpo2")
        losses.mean().backward()
        hidden.grad = None
        weight.grad = None

    before = _rss_peak_mib()
    step()  # the first call also measures memory
    extra = _rss_peak_mib() - before
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    name = args.path + (f" softcap {args.cap:g}" if args.cap else " linear head")
    return {"path": name, "extra_peak_mib": extra, "median_s": statistics.median(times), "times": times}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--prompt", type=int, default=128)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--softcap", type=float, default=None, help="soft-cap both heads at this value")
    p.add_argument("--path", choices=["plain", "chunked"], help=argparse.SUPPRESS)
    p.add_argument("--cap", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.path:
        print(json.dumps(_worker(args)))
        return
    runs = [("plain", args.softcap), ("chunked", args.softcap)] + ([("chunked", None)] if args.softcap else [])
    results = []
    for path, cap in runs:
        extra = ["--cap", str(cap)] if cap else []
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--path", path, *extra], check=True,
                             capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    plain, chunked = results[0], results[1]
    print(f"TDPO statistics fwd+bwd: {args.pairs} pairs x {args.seq} tokens (prompt {args.prompt}), V={args.vocab}, "
          f"H={args.hidden}, chunk {args.chunk}, {args.threads} threads")
    print(f"{'path':<24}{'extra peak MiB':>16}{'median s':>11}")
    for r in results:
        print(f"{r['path']:<24}{r['extra_peak_mib']:>16.0f}{r['median_s']:>11.3f}")
    print(f"chunked / plain: memory {chunked['extra_peak_mib'] / plain['extra_peak_mib']:.3f}, "
          f"time {chunked['median_s'] / plain['median_s']:.3f}")
    if len(results) == 3:
        linear = results[2]
        print(f"chunked soft-capped / chunked linear: memory {chunked['extra_peak_mib'] / linear['extra_peak_mib']:.3f},"
              f" time {chunked['median_s'] / linear['median_s']:.3f}")
    print("command: python benchmarks/bench_token_stats.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
