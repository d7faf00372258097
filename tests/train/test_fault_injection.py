"""Fault injection (slow suite): SIGKILL a training run at 20 points — at random times, which include start-up
before the first checkpoint, and the moment a checkpoint's temporary directory appears, which is inside a
checkpoint write — and restart it with the same command each time. Every run ends bitwise equal to an
uninterrupted one, with no manual step in between.

    pytest -m slow tests/train/test_fault_injection.py
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from alignlab.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
KILLS = 20
KEYS = ["method=dpo", "max_steps=10", "save_steps=2", "save_total_limit=2", "micro_batch_size=2", "max_length=48",
        "max_prompt_length=24", "limit=40", "eval_fraction=0", "tensorboard=false", "progress=false",
        "learning_rate=1e-4"]


def _launch(run: Path) -> subprocess.Popen:
    # the same command every time: --resume starts from step 0 when there is no checkpoint yet
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "alignlab", "train", *KEYS, f"run_dir={run}", "--resume"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_when(proc: subprocess.Popen, run: Path, *, delay: float | None) -> bool:
    """SIGKILL after `delay` seconds, or (delay None) as soon as a checkpoint write's temporary directory exists.
    Returns whether the process was killed (False: it finished first)."""
    start = time.monotonic()
    while proc.poll() is None:
        writing = delay is None and any(p.name.startswith(".tmp-checkpoint") for p in run.glob(".tmp-*"))
        if writing or (delay is not None and time.monotonic() - start >= delay) or time.monotonic() - start > 300:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.002)
    return False


def _final(run: Path) -> dict:
    return load_file(run / "final" / "model.safetensors")


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_is_bitwise_exact(tmp_path):
    reference = tmp_path / "uninterrupted"
    started = time.monotonic()
    proc = _launch(reference)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    duration = time.monotonic() - started
    want = _final(reference)
    want_losses = [(r["step"], r["loss"]) for r in read_metrics(reference) if "loss" in r]

    rng = random.Random(0)
    kills, cycle = 0, 0
    while kills < KILLS:
        run = tmp_path / f"killed-{cycle}"
        cycle += 1
        while True:
            proc = _launch(run)
            # alternate: a random time over the whole run (start-up included), or inside a checkpoint write
            delay = rng.uniform(0.0, duration) if kills % 2 == 0 else None
            if kills >= KILLS or not _kill_when(proc, run, delay=delay):
                _, err = proc.communicate(timeout=600)
                assert proc.returncode == 0, f"cycle {cycle}, after {kills} kills: {err}"
                break
            kills += 1
        got = _final(run)
        assert got.keys() == want.keys()
        assert all(got[k].equal(want[k]) for k in want), f"cycle {cycle}: weights differ"
        assert [(r["step"], r["loss"]) for r in read_metrics(run) if "loss" in r] == want_losses
        assert not list(run.glob(".tmp-*"))
