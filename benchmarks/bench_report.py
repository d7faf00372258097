"""Build time and size of `alignlab report` on a 1,000-step run with 20 checkpoints (issue target: < 30 s, < 5 MB).

The run is synthesised: a DPO run of alignlab/tiny-llama whose metrics.jsonl has 1,000 training lines and an
evaluation every 50 steps, and whose final/ and 20 checkpoint-<step>/ directories are hard links to one saved
model (a perturbed tiny Llama; scoring costs the same whatever the weights). Two cases:
- tracked: the evaluations carry FlipTracker's flips/* metrics (a `--track-flips` run), so the flip groups come
  from metrics.jsonl;
- checkpoints: no tracked flips, so the reference and 8 of the 20 checkpoints (evenly spaced, the last included:
  the report's default; or 4) are scored on 32 pairs each (score cache off: cold).
Each case is the whole command, `alignlab report RUN` in a fresh interpreter (imports included), on the bundled
pairs with the report's defaults (32 pairs scored under the final model and the reference, 2 most and 2 least
improved pairs per token). The table gives the median wall time over --repeats and the page's and the JSON's size.

    python benchmarks/bench_report.py [--repeats 3 --threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 30.0
TARGET_BYTES = 5 * 2**20
FLIP_KEYS = ("ref_correct_model_correct", "ref_correct_model_incorrect", "ref_incorrect_model_correct",
             "ref_incorrect_model_incorrect")


def metrics(steps: int, eval_every: int, flips: bool) -> list[dict]:
    out = []
    for step in range(steps + 1):
        if step:
            out.append({"step": step, "epoch": step / 100, "loss": 0.69 * 0.998 ** step, "lr": 1e-6,
                        "grad_norm": 1.0 + (step % 13) / 10, "tokens_per_s": 900.0 + step % 50,
                        "weight_norm": 70.0, "rewards/chosen": step / 900, "rewards/rejected": -step / 700,
                        "rewards/margins": step / 400, "rewards/accuracies": min(1.0, step / 300),
                        "rewards/dpo_accuracy": min(1.0, step / 300), "logps/chosen": -200.0, "logps/rejected": -210.0,
                        "ranking/accuracy": 0.55, "ranking/accuracy_normalized": 0.9})
        if step % eval_every == 0:
            line = {"step": step, "eval/loss": 0.69 * 0.998 ** step, "eval/rewards/margins": step / 400,
                    "eval/rewards/accuracies": min(1.0, step / 300), "eval/ranking/accuracy": 0.55,
                    "eval/ranking/accuracy_normalized": 0.9, "eval/kl/chosen": step / 150,
                    "eval/kl/rejected": step / 170, "eval/kl/margin": step / 1200, "eval/kl/sequence": step / 160,
                    "eval/kl_reverse/chosen": step / 155, "eval/kl_reverse/rejected": step / 175}
            if flips:
                share = 0.5 * step / steps * 0.4
                values = (0.5, 0.0, share, 0.5 - share)
                for key, value in zip(FLIP_KEYS, values):
                    line[f"flips/{key}"] = value
                    line[f"flips/{key}_count"] = value * 128
                line.update({"flips/n_pairs": 128.0, "flips/flipped_fraction": 2 * share,
                             "flips/ranking_accuracy": 0.5 + share, "flips/ref_ranking_accuracy": 0.5})
            out.append(line)
    return out


def make_run(root: Path, saved: Path, *, flips: bool) -> Path:
    import yaml

    from alignlab.train.config import TrainConfig

    run = root / ("tracked" if flips else "checkpoints")
    run.mkdir()
    config = TrainConfig.from_values({"method": "dpo", "model": "alignlab/tiny-llama", "run_dir": str(run),
                                      "max_length": 128, "max_prompt_length": 64, "max_steps": 1000,
                                      "save_steps": 50, "eval_steps": 50})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics(1000, 50, flips)))
    for step in range(50, 1001, 50):
        shutil.copytree(saved, run / f"checkpoint-{step}", copy_function=os.link)
    shutil.copytree(saved, run / "final", copy_function=os.link)
    return run


def save_model(directory: Path) -> Path:
    import torch

    from alignlab.assets import load_model, load_tokenizer

    model = load_model("alignlab/tiny-llama")
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(directory)
    load_tokenizer("alignlab/tiny-llama").save_pretrained(directory)
    return directory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="builds per case (median reported)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the report process")
    args = p.parse_args()
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        saved = save_model(root / "saved")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
               "ALIGNLAB_CACHE_DIR": os.environ.get("ALIGNLAB_CACHE_DIR", str(root / "cache"))}
        rows = []
        runs = {flips: make_run(root, saved, flips=flips) for flips in (True, False)}
        cases = (("tracked flips", runs[True], []),
                 ("no tracked flips: 8 checkpoints scored (default)", runs[False], []),
                 ("no tracked flips: --max-checkpoints 4", runs[False], ["--max-checkpoints", "4"]))
        for name, run, extra in cases:
            command = [sys.executable, "-m", "alignlab.cli", "report", str(run), "--no-cache", *extra]
            times, builds = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
                times.append(time.perf_counter() - start)
                if done.returncode:
                    sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
                builds.append(json.loads((run / "report.json").read_text())["build_seconds"])
            rows.append((name, statistics.median(times), statistics.median(builds), (run / "report.html").stat().st_size,
                         (run / "report.json").stat().st_size))
    print(f"| case | median wall s (whole command) | median build s (in process) | HTML MB | JSON MB | "
          f"within {TARGET_S:.0f} s and 5 MB |")
    print("|---|---|---|---|---|---|")
    for name, wall, build, html, js in rows:
        ok = wall < TARGET_S and html < TARGET_BYTES
        print(f"| {name} | {wall:.1f} | {build:.1f} | {html / 2**20:.2f} | {js / 2**20:.2f} | {'yes' if ok else 'no'} |")
    print(f"\ncommand: python benchmarks/bench_report.py --repeats {args.repeats} --threads {args.threads}")


if __name__ == "__main__":
    main()
