"""Faults at the edges of a run: the run-directory lock, a run killed before its first checkpoint, SIGTERM and
SIGINT, a cut-off metrics line, a refused resume, non-finite steps and the divergence warning."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from alignlab.assets import load_model, load_tokenizer
from alignlab.errors import AlignlabError, ConfigError
from alignlab.train import Trainer, load_config, train
from alignlab.train import checkpoint as ckpt
from alignlab.train.metrics import MetricsWriter, read_metrics
from alignlab.train.run_lock import LOCK_FILE, RunLock

ROOT = Path(__file__).resolve().parents[2]


def _printed(base, **kwargs):
    lines: list[str] = []
    result = Trainer(load_config(base=base), console=SimpleNamespace(print=lines.append), **kwargs).train()
    return result, lines


# ------------------------------------------------------------------------------------------------ the lock
def test_a_second_run_on_a_locked_directory_is_refused(small):
    base = small("sft", max_steps=1)
    run = Path(base["run_dir"])
    holder = RunLock(run).acquire()  # another run (flock conflicts across open files, even in one process)
    try:
        with pytest.raises(ConfigError, match=rf"run_dir '{run}' is in use by another alignlab run \(pid {os.getpid()}\)"):
            train(load_config(base=base))
    finally:
        holder.release()
    assert not (run / "metrics.jsonl").exists()  # the refused run wrote nothing
    train(load_config(base=base))  # released: the run goes ahead


def test_a_lock_file_of_a_dead_process_is_not_a_lock(small):
    base = small("sft", max_steps=1)
    run = Path(base["run_dir"])
    run.mkdir(parents=True)
    (run / LOCK_FILE).write_text("999999\n")  # left by a killed run: the kernel released its flock
    assert train(load_config(base=base)).steps == 1


# ------------------------------------------------------------------------------------- killed before a checkpoint
@pytest.mark.parametrize("resume", [False, True])
def test_a_run_killed_before_its_first_checkpoint_restarts(small, resume):
    base = small("sft", max_steps=2, save_steps=1)
    run = Path(base["run_dir"])
    (run / "tensorboard").mkdir(parents=True)
    (run / "config.yaml").write_text("method: sft\n")
    (run / "metrics.jsonl").write_text('{"step": 0, "eval/loss": 1.0}\n{"step": 1, "lo')
    (run / ".tmp-checkpoint-1").mkdir()  # the first checkpoint's write, cut by SIGKILL
    (run / "config.yaml").write_text(yaml.safe_dump(load_config(base=base).to_dict()))  # what the run wrote
    _, lines = _printed(base, resume=resume)
    (aside,) = run.glob(".stopped-*")
    assert (f"run_dir '{run}' holds a run stopped before its first checkpoint: starting it again from step 0 "
            f"(its files are in {aside.name}/)") in lines
    assert "removed .tmp-checkpoint-1, left by an interrupted write" in lines
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [1]
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2]  # one run, from step 0
    assert not (run / ".tmp-checkpoint-1").exists()
    assert (aside / "metrics.jsonl").read_text().startswith('{"step": 0')  # moved aside, never deleted
    assert (aside / "tensorboard").is_dir() and (aside / "config.yaml").is_file()


def test_files_that_are_not_an_alignlab_run_are_never_moved(small):
    base = small("sft", max_steps=1)
    run = Path(base["run_dir"])
    (run / "tensorboard" / "old-experiment").mkdir(parents=True)
    (run / "config.yaml").write_text("project: mine\n")
    with pytest.raises(ConfigError, match=r"holds tensorboard, config.yaml that are not an alignlab run's"):
        train(load_config(base=base))
    assert (run / "tensorboard" / "old-experiment").is_dir() and (run / "config.yaml").read_text() == "project: mine\n"


def test_resume_of_a_finished_run_without_checkpoints_is_refused(small):
    base = small("sft", max_steps=2)  # save_steps null: final/ only
    run = train(load_config(base=base)).run_dir
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="holds a finished run \\(final/\\) and no checkpoint-<step> to continue"):
        Trainer(load_config(base={**base, "max_steps": 3}), resume=True).train()
    assert (run / "metrics.jsonl").read_text() == before


def test_a_directory_with_a_run_is_still_refused_without_resume(small):
    base = small("sft", max_steps=2, save_steps=1)
    train(load_config(base=base))
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        train(load_config(base=base))


# ---------------------------------------------------------------------------------------------- resume checks
def test_a_refused_resume_leaves_config_yaml_alone(small):
    base = small("dpo", max_steps=3, save_steps=1)
    run = Path(base["run_dir"])
    train(load_config(base={**base, "max_steps": 2}))
    before = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match="config key 'beta' is 0.3 but the run was started with 0.1"):
        Trainer(load_config(base={**base, "beta": 0.3}), resume=True).train()
    assert (run / "config.yaml").read_text() == before
    with pytest.raises(ConfigError, match="checkpoint-1 is at step 1, and this run has 1 steps: nothing to train"):
        Trainer(load_config(base={**base, "max_steps": 1}), resume=True).train()
    assert (run / "config.yaml").read_text() == before


def test_a_cut_off_metrics_line_is_trimmed_on_resume(small):
    base = small("sft", max_steps=3, save_steps=1, save_total_limit=None)
    run = Path(base["run_dir"])
    train(load_config(base=base))
    shutil.rmtree(run / "final")  # as if killed while logging step 3
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "loss": 0.5, "lr"')  # a kill mid-write
    assert [r["step"] for r in read_metrics(run)][-1] == 3  # readers skip the cut line
    Trainer(load_config(base=base), resume=True).train()
    text = (run / "metrics.jsonl").read_text()
    assert '"lr"\n' not in text and all(json.loads(line) for line in text.splitlines())
    steps = [r["step"] for r in read_metrics(run) if "loss" in r]
    assert steps == [1, 2, 3]  # nothing past checkpoint-2 from the interrupted run, then the resumed steps


def test_metrics_writer_trims_past_the_resumed_step(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x"')
    writer = MetricsWriter(tmp_path, tensorboard=False, resume_step=2)
    writer.log(3, {"loss": 1.0})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]


# ----------------------------------------------------------------------------------------- SIGTERM, SIGINT
def _launch(run: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "alignlab", "train", "method=sft", "max_steps=400", "micro_batch_size=2",
            "max_length=32", "max_prompt_length=16", "eval_fraction=0", "tensorboard=false", "progress=false",
            "learning_rate=1e-4", f"run_dir={run}", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "400"}
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_steps(proc: subprocess.Popen, run: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.communicate()}")
        if any("loss" in r for r in read_metrics(run)) if (run / "metrics.jsonl").exists() else False:
            return
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no training step logged in time")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_checkpoints_and_exits(tmp_path, sig, code):
    run = tmp_path / "run"
    proc = _launch(run)
    _wait_for_steps(proc, run)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"alignlab: stopped by {sig.name} after step "), err
    step = int(lines[0].split("after step ")[1].split(";")[0])
    assert f"saved {run / f'checkpoint-{step}'}: continue with the same command and --resume" in lines[0]
    assert ckpt.latest_valid_checkpoint(run) == (run / f"checkpoint-{step}", [])
    if sig == signal.SIGTERM:  # the resumed run goes on from that step
        resumed = _launch(run, "max_steps=" + str(step + 1), "--resume")
        out, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        assert f"resumed from {run / f'checkpoint-{step}'} at step {step}" in out
        assert (run / "final" / "model.safetensors").is_file()


# -------------------------------------------------------------------------------------------- bad numbers
POISON = "☕"  # its bytes appear in no other record


def _poisoned_model(tmp_path: Path) -> str:
    """The tiny model with +inf in the embedding rows of POISON's tokens: any batch holding them overflows to a
    NaN loss (RMSNorm of an infinite row is inf * 0)."""
    model = load_model("alignlab/tiny-llama")
    tok = load_tokenizer("alignlab/tiny-llama")
    with torch.no_grad():
        for text in (POISON, " " + POISON):  # alone, and merged with the space before it
            for i in tok(text, add_special_tokens=False)["input_ids"]:
                model.get_input_embeddings().weight[i] = float("inf")
    path = tmp_path / "inf-embedding"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _texts(tmp_path: Path, poison_at: set[int], n: int = 16) -> str:
    path = tmp_path / "sft.jsonl"
    rows = [{"text": f"record {i} " + (POISON if i in poison_at else "plain words here")} for i in range(n)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_a_non_finite_step_is_skipped_and_logged(tmp_path, small):
    base = small("sft", model=_poisoned_model(tmp_path), tokenizer="alignlab/tiny-llama",
                 train_data=_texts(tmp_path, {5}), micro_batch_size=2, max_steps=8, limit=None,
                 dtype="bfloat16")
    result, _ = _printed(base)
    logged = [r for r in read_metrics(result.run_dir) if "loss" in r]
    skipped = [r for r in logged if r.get("skipped_nonfinite")]
    assert len(skipped) == 1 and any("line 6" in w for w in skipped[0]["nonfinite_records"]), skipped
    assert all(r["loss"] is not None for r in logged if not r.get("skipped_nonfinite"))
    final = load_model(str(result.run_dir / "final"))
    assert all(torch.isfinite(p).all() for n, p in final.named_parameters() if "embed" not in n)


def test_consecutive_non_finite_steps_stop_the_run(tmp_path, small):
    base = small("sft", model=_poisoned_model(tmp_path), tokenizer="alignlab/tiny-llama",
                 train_data=_texts(tmp_path, set(range(16))), micro_batch_size=2, max_steps=8, limit=None,
                 max_nonfinite_steps=2)
    with pytest.raises(AlignlabError, match=r"stopped at step 2: the loss or gradient norm was NaN/inf for 2 "
                                            r"consecutive steps \(max_nonfinite_steps; last batch: .*sft.jsonl line"):
        train(load_config(base=base))


def test_diverging_weights_are_flagged(small):
    result, lines = _printed(small("sft", max_steps=3, learning_rate=1.0))
    assert result.warnings and result.warnings[0].startswith("the weights diverged")
    assert f"warning: {result.warnings[0]}" in lines
    assert any(r.get("diverged") == 1 for r in read_metrics(result.run_dir))
    calm = train(load_config(base=small("sft", max_steps=3, run_dir=str(Path(result.run_dir).parent / "calm"))))
    assert calm.warnings == [] and all(r.get("diverged", 0) == 0 for r in read_metrics(calm.run_dir))


def test_config_yaml_records_the_new_keys(small):
    result = train(load_config(base=small("dpo", max_steps=1)))
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["max_nonfinite_steps"] == 3 and saved["drop_identical_pairs"] is True
