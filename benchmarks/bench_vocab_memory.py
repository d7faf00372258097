"""Peak memory and time of DPO's and TDPO's statistics as the vocabulary V and the sequence length T grow.

Compares the chunked path (`chunked_sequence_stats`: tiles sized by the `chunk_bytes` budget) with the plain
full-logit path (`plain_sequence_stats`, i.e. chunked_ops: false) on the output head alone: random final hidden
states stand in for a model's (P pairs = 2P sequences x T tokens, the first T/4 prompt; hidden 256), a [V, H] head
for the policy and a copy for the reference. Statistics, forward and backward to the hidden states and the head:

    dpo   policy and reference log-probs per sequence, the DPO loss (beta 0.1)
    tdpo  the same plus the forward KL(pi_ref || pi_theta) per sequence, the TDPO2 loss

Each cell (path, statistics, V, T) runs in a fresh process, after one tiny warm-up step. "Growth" is the peak memory of one step above the
model state: peak minus the memory held just before the step (weights, inputs) minus the head's gradient, which
the step leaves behind. On a CPU the peak is the process's peak resident set size (getrusage; on Linux the
high-water mark is first reset to the current size through /proc/self/clear_refs), on a GPU torch's
max_memory_allocated. Time is the median of `--repeats` steps after the measured one (CUDA events on a GPU).

The fitted exponents are least squares of log(growth) and log(time) on log V and log T over the grid, per path.
`--paths tokens` adds the chunked path with token-count tiles only (chunk_bytes=None, `--chunk-size` tokens).

    python benchmarks/bench_vocab_memory.py [--vocab 8192 32768 131072 --seq 128 256 512 --pairs 2 --hidden 256]
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import resource
import statistics
import subprocess
import sys
import time

MIB = 2**20
PATHS = {"plain": "full logits (plain)", "chunked": "chunked, byte budget", "tokens": "chunked, token tiles only"}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_rss_peak() -> bool:
    try:  # Linux >= 4.0: "5" resets the peak RSS to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _worker(args: argparse.Namespace) -> dict:
    import torch

    from alignlab.losses import dpo_loss, tdpo_loss
    from alignlab.ops import chunked_sequence_stats, plain_sequence_stats

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    n_seq, t, h, v = 2 * args.pairs, args.cell_seq, args.hidden, args.cell_vocab
    # built in place, so nothing larger than one input was ever freed before the measurement
    hidden = torch.randn(n_seq, t, h, device=device).mul_(0.5).requires_grad_()
    weight = torch.randn(v, h, device=device).mul_(0.02).requires_grad_()
    ref_hidden = torch.randn(n_seq, t, h, device=device).mul_(0.01).add_(hidden.detach())
    ref_weight = weight.detach().clone()
    labels = torch.randint(0, v, (n_seq, t), device=device)
    labels[:, : t // 4] = -100
    tdpo = args.stat == "tdpo"
    if args.path == "plain":
        fn, extra = plain_sequence_stats, {}
    else:
        fn, extra = chunked_sequence_stats, {"chunk_size": args.chunk_size}
        if args.path == "chunked":
            extra["chunk_bytes"] = round(args.chunk_mib * MIB)
        elif "chunk_bytes" in inspect.signature(fn).parameters:  # versions before the budget had token tiles only
            extra["chunk_bytes"] = None
    b = args.pairs

    def step(hidden: torch.Tensor = hidden, weight: torch.Tensor = weight, ref_hidden: torch.Tensor = ref_hidden,
             ref_weight: torch.Tensor = ref_weight, labels: torch.Tensor = labels) -> None:
        stats = fn(hidden, weight, labels, ref_hidden=ref_hidden, ref_weight=ref_weight, kl=tdpo, **extra)
        if tdpo:
            margin = stats.logps - stats.ref_logps
            losses, _, _ = tdpo_loss(margin[:b], margin[b:], stats.kl[:b], stats.kl[b:], variant="tdpo2")
        else:
            losses, _, _ = dpo_loss(stats.logps[:b], stats.logps[b:], stats.ref_logps[:b], stats.ref_logps[b:])
        losses.mean().backward()

    # one tiny step first: thread pools and lazy initialisation are the process's, not the step's
    small = torch.randn(n_seq, 8, h, device=device).requires_grad_()
    step(small, weight[:64].detach().requires_grad_(), small.detach(), ref_weight[:64], labels[:, :8] % 64)
    del small
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes() if _reset_rss_peak() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()  # the measured step, also the timed steps' warm-up
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    growth = peak - before - weight.grad.nbytes  # the head's gradient is model state
    times = []
    for _ in range(args.repeats):
        hidden.grad = weight.grad = None
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            start_s = time.perf_counter()
            step()
            times.append(time.perf_counter() - start_s)
    scored = int((labels[:, 1:] != -100).sum())
    return {"path": args.path, "stat": args.stat, "vocab": v, "seq": t, "scored": scored,
            "growth_mib": growth / MIB, "median_s": statistics.median(times) if times else math.nan}


def _fit(rows: list[dict], key: str) -> tuple[float, float]:
    """Exponents (a, b) of y ~ V^a T^b by least squares in logs (the T exponent is nan with one T)."""
    import numpy as np

    x = np.array([[1.0, math.log(r["vocab"]), math.log(r["seq"])] for r in rows])
    y = np.array([math.log(max(r[key], 1e-9)) for r in rows])
    cols = [0, 1] + ([2] if len({r["seq"] for r in rows}) > 1 else [])
    if len({r["vocab"] for r in rows}) < 2:
        cols.remove(1)
    coef, *_ = np.linalg.lstsq(x[:, cols], y, rcond=None)
    named = dict(zip(cols, coef))
    return named.get(1, math.nan), named.get(2, math.nan)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, nargs="+", default=[8192, 32768, 131072])
    p.add_argument("--seq", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--stats", nargs="+", choices=["dpo", "tdpo"], default=["dpo", "tdpo"])
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=["plain", "chunked"])
    p.add_argument("--pairs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--chunk-mib", type=float, default=8.0, help="the chunked path's budget, MiB (alignlab's default)")
    p.add_argument("--chunk-size", type=int, default=1024, help="the chunked path's cap on tokens per tile")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--path", choices=list(PATHS), help=argparse.SUPPRESS)
    p.add_argument("--stat", choices=["dpo", "tdpo"], help=argparse.SUPPRESS)
    p.add_argument("--cell-vocab", type=int, help=argparse.SUPPRESS)
    p.add_argument("--cell-seq", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.path:
        print(json.dumps(_worker(args)))
        return
    rows = []
    for stat in args.stats:
        for vocab in args.vocab:
            for seq in args.seq:
                for path in args.paths:
                    cell = ["--path", path, "--stat", stat, "--cell-vocab", str(vocab), "--cell-seq", str(seq)]
                    out = subprocess.run([sys.executable, __file__, *sys.argv[1:], *cell], check=True,
                                         capture_output=True, text=True).stdout
                    rows.append(json.loads(out.strip().splitlines()[-1]))
    first = args.paths[0]
    print(f"head only: {args.pairs} pairs x T tokens (T/4 prompt), hidden {args.hidden}, fwd+bwd, {args.device}, "
          f"{args.threads} threads; chunked budget {args.chunk_mib:g} MiB, at most {args.chunk_size} tokens a tile; "
          f"growth = peak above model state; ratios to '{first}'")
    print(f"{'stat':<6}{'V':>8}{'T':>6}{'scored':>8}" + "".join(f"{n + ' MiB':>15}{n + ' s':>13}" for n in args.paths)
          + "".join(f"{n + ' mem':>13}{n + ' time':>13}" for n in args.paths[1:]))
    for i in range(0, len(rows), len(args.paths)):
        cell = rows[i : i + len(args.paths)]
        base = cell[0]
        line = f"{base['stat']:<6}{base['vocab']:>8}{base['seq']:>6}{base['scored']:>8}"
        line += "".join(f"{r['growth_mib']:>15.1f}{r['median_s']:>13.3f}" for r in cell)
        line += "".join(f"{r['growth_mib'] / base['growth_mib']:>13.3f}{r['median_s'] / base['median_s']:>13.3f}"
                        for r in cell[1:])
        print(line)
    if len(set(args.vocab)) > 1 or len(set(args.seq)) > 1:
        print("fitted exponents, growth ~ V^a T^b and time ~ V^c T^d (nan: not varied):")
        for stat in args.stats:
            for path in args.paths:
                sel = [r for r in rows if r["stat"] == stat and r["path"] == path]
                a, b = _fit(sel, "growth_mib")
                c, d = _fit(sel, "median_s")
                print(f"  {stat:<5}{PATHS[path]:<28} memory V^{a:.2f} T^{b:.2f}   time V^{c:.2f} T^{d:.2f}")
    print("command: python benchmarks/bench_vocab_memory.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
