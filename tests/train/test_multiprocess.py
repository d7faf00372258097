"""`accelerate launch --num_processes 2` on CPU (gloo) trains with the same losses as one process with the same
global batch (4 pairs per process x 2 processes vs 8 pairs in one), to 1e-5."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignlab.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, name: str, processes: int, micro: int, method: str) -> list[dict]:
    run_dir = tmp_path / name
    keys = [f"micro_batch_size={micro}", "max_steps=3", "limit=48", "max_length=64",
            "max_prompt_length=32", "eval_fraction=0.2", "warmup_steps=0", "learning_rate=1e-3",
            f"run_dir={run_dir}", "tensorboard=false", "progress=false"]
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    # --multi_gpu selects accelerate's torchrun launcher; on a machine without CUDA the processes use gloo
    multi = ["--multi_gpu"] if processes > 1 else []
    cmd = [accelerate, "launch", *multi, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "alignlab.cli", "train",
           "--config", str(ROOT / "recipes" / f"{method}.yaml"), *keys]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return read_metrics(run_dir)


@pytest.mark.parametrize("method", ["dpo", pytest.param("ift", marks=pytest.mark.slow)])
def test_two_processes_match_one(method, tmp_path):
    if shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("accelerate CLI not installed next to this interpreter")
    one = _run(tmp_path, "one", 1, 8, method)
    two = _run(tmp_path, "two", 2, 4, method)
    losses_one = [line["loss"] for line in one if "loss" in line]
    losses_two = [line["loss"] for line in two if "loss" in line]
    assert len(losses_one) == 3 and losses_one[-1] < losses_one[0]
    assert losses_two == pytest.approx(losses_one, rel=0, abs=1e-5)  # fp32 all-reduce order: ~3e-6 seen
    eval_one = [line["eval/loss"] for line in one if "eval/loss" in line]
    eval_two = [line["eval/loss"] for line in two if "eval/loss" in line]
    assert eval_two == pytest.approx(eval_one, rel=0, abs=1e-5)


@pytest.mark.slow
def test_two_process_resume_is_bitwise_identical(tmp_path):
    """DDP on 2 processes, SFT with the model's dropout on (tiny-gpt2): a run resumed from its step-2 checkpoint
    to step 4 ends with the weights of the uninterrupted 4 steps, bitwise (each process's RNG state comes back
    from its rng-rank<r>.safetensors)."""
    if shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None:
        pytest.skip("accelerate CLI not installed next to this interpreter")
    from safetensors.torch import load_file

    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))

    def launch(run: str, steps: int, *extra: str) -> None:
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "alignlab.cli", "train", *extra,
               "method=sft", "model=alignlab/tiny-gpt2", "micro_batch_size=2", "limit=48", "max_length=64",
               "max_prompt_length=32", "eval_fraction=0", "lr_scheduler=constant", "warmup_steps=0",
               "learning_rate=1e-3", f"max_steps={steps}", "save_steps=2", f"run_dir={tmp_path / run}",
               "tensorboard=false", "progress=false"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path, check=False)
        assert out.returncode == 0, out.stderr[-3000:]

    launch("full", 4)
    launch("cut", 3)  # its checkpoint-2 is what a run stopped after step 2 leaves; final/ is replaced below
    shutil.rmtree(tmp_path / "cut" / "final")
    assert sorted(p.name for p in (tmp_path / "cut" / "checkpoint-2" / "state").glob("rng-*")) == [
        "rng-rank0.safetensors", "rng-rank1.safetensors"]
    launch("cut", 4, "--resume")
    want = load_file(str(tmp_path / "full" / "final" / "model.safetensors"))
    got = load_file(str(tmp_path / "cut" / "final" / "model.safetensors"))
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
