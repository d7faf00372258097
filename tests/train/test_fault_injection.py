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


def _tmp_dirs(run: Path) -> set[tuple[str, int]]:
    return {(p.name, p.stat().st_ino) for p in run.glob(".tmp-checkpoint*") if p.exists()}


def _kill_when(proc: subprocess.Popen, run: Path, *, when: str, delay: float = 0.0) -> str | None:
    """SIGKILL the run: `when` is "start" (training begun, no checkpoint yet: metrics.jsonl exists and no
    checkpoint-*), "write" (a checkpoint's temporary directory appeared that was not there at launch: inside a
    write) or "time" (after `delay` seconds). Returns where the run was when killed, or None when it finished
    first."""
    start, stale = time.monotonic(), _tmp_dirs(run) if run.exists() else set()
    while proc.poll() is None:
        elapsed = time.monotonic() - start
        fired = elapsed > 300
        try:
            if when == "start":
                fired |= (run / "metrics.jsonl").exists() and not list(run.glob("checkpoint-*"))
            elif when == "write":
                fired |= bool(_tmp_dirs(run) - stale)
            else:
                fired |= elapsed >= delay
            writing = bool(_tmp_dirs(run) - stale) if run.exists() else False
        except FileNotFoundError:  # a directory renamed while we looked
            continue
        if fired:
            where = ("writing a checkpoint" if writing else "between checkpoints" if list(run.glob("checkpoint-*"))
                     else "no checkpoint yet")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return where
        time.sleep(0.002)
    return None


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
    places: dict[str, int] = {}
    while kills < KILLS:
        run = tmp_path / f"killed-{cycle}"
        cycle += 1
        history: list[tuple[str, list[str]]] = []
        while True:
            proc = _launch(run)
            # each run is first killed before its first checkpoint; then at a random time over the whole run
            # (start-up included) or inside a checkpoint write, alternately
            when = "start" if not history else "time" if kills % 2 else "write"
            delay = rng.uniform(0.0, duration)
            where = None if kills >= KILLS else _kill_when(proc, run, when=when, delay=delay)
            if where is None:
                _, err = proc.communicate(timeout=600)
                assert proc.returncode == 0, f"cycle {cycle}, after {kills} kills: {err}"
                break
            kills += 1
            places[where] = places.get(where, 0) + 1
            history.append((where, sorted(p.name for p in run.glob("checkpoint-*"))))
        got = _final(run)
        assert got.keys() == want.keys()
        losses = [(r["step"], r["loss"]) for r in read_metrics(run) if "loss" in r]
        assert losses == want_losses, (cycle, history, losses, want_losses)
        assert all(got[k].equal(want[k]) for k in want), f"cycle {cycle}: weights differ after kills {history}"
        assert not list(run.glob(".tmp-*"))
    # the kills hit start-up and checkpoint writes, not only the quiet time between them
    assert places.get("no checkpoint yet", 0) >= 2 and places.get("writing a checkpoint", 0) >= 5, places
