"""Checkpoint reliability: checksum manifests and the fallback past a damaged checkpoint, a disk that fills during
a checkpoint, leftovers of a killed write, safetensors-only loading and the modes of written files."""

import errno
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from alignlab.assets.loading import load_model
from alignlab.cache import build_dir_atomically
from alignlab.errors import AlignlabError, ConfigError
from alignlab.train import Trainer, load_config, train
from alignlab.train import checkpoint as ckpt


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _fake_checkpoint(run: Path, step: int, *, manifest: bool = True, stamped: bool = True) -> Path:
    """A checkpoint directory as the trainer lays it out, with small stand-in files."""
    directory = run / f"checkpoint-{step}"
    (directory / "state").mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    (directory / "state" / "optimizer.safetensors").write_bytes(b"\1" * 456)
    state = {"step": step, "epoch": 0.5, "global_batch": 4, "config": {"method": "sft"}, "scheduler": {}}
    if stamped:
        ckpt.write_state(directory, state)
    else:  # as versions before manifests wrote it
        (directory / ckpt.STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    if manifest:
        ckpt.write_manifest(directory)
    return directory


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


# ---------------------------------------------------------------------------------------------- manifests
def test_manifest_catches_truncation_alteration_and_loss(tmp_path):
    directory = _fake_checkpoint(tmp_path, 10)
    listed = json.loads((directory / "manifest.json").read_text())["files"]
    assert sorted(listed) == ["model.safetensors", "state/optimizer.safetensors", "trainer_state.json"]
    assert listed["state/optimizer.safetensors"]["size"] == 456
    assert ckpt.manifest_problem(directory) is None

    _truncate(directory / "state" / "optimizer.safetensors", 123)
    assert ckpt.manifest_problem(directory) == "state/optimizer.safetensors: size 123 != 456"
    (directory / "state" / "optimizer.safetensors").write_bytes(b"\2" * 456)  # same size, other bytes
    assert ckpt.manifest_problem(directory) == "state/optimizer.safetensors: sha256 differs from manifest.json"
    assert ckpt.manifest_problem(directory, checksums=False) is None  # sizes only
    (directory / "state" / "optimizer.safetensors").unlink()
    assert ckpt.manifest_problem(directory) == "state/optimizer.safetensors is missing"
    _truncate(directory / "manifest.json", 20)
    assert ckpt.manifest_problem(directory) == "manifest.json is unreadable"


def test_resume_falls_back_past_a_damaged_checkpoint(tmp_path):
    run = tmp_path / "run"
    _fake_checkpoint(run, 10)
    newest = _fake_checkpoint(run, 20)
    _truncate(newest / "state" / "optimizer.safetensors", 123)
    found, notes = ckpt.latest_valid_checkpoint(run)
    assert found == run / "checkpoint-10"
    assert notes == ["checkpoint-20 is damaged (state/optimizer.safetensors: size 123 != 456); resuming from checkpoint-10"]

    _truncate(newest / ckpt.STATE_FILE, 7)  # a truncated trainer_state.json, too
    assert ckpt.latest_valid_checkpoint(run)[0] == run / "checkpoint-10"
    (newest / "manifest.json").unlink()  # written by this version, so a missing manifest is damage
    assert ckpt.latest_valid_checkpoint(run)[0] == run / "checkpoint-10"


def test_no_usable_checkpoint_is_one_line(tmp_path):
    run = tmp_path / "run"
    for step in (1, 2):
        _truncate(_fake_checkpoint(run, step) / "model.safetensors", 3)
    with pytest.raises(ConfigError) as err:
        ckpt.latest_valid_checkpoint(run)
    message = str(err.value)
    assert "\n" not in message and str(run) in message
    assert "checkpoint-2 is damaged (model.safetensors: size 3 != 2048)" in message
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        ckpt.latest_valid_checkpoint(tmp_path / "empty")


def test_checkpoints_of_older_versions_are_used_only_when_their_state_is_complete(tmp_path):
    run = tmp_path / "run"
    _fake_checkpoint(run, 1, manifest=False, stamped=False)
    legacy = _fake_checkpoint(run, 2, manifest=False, stamped=False)
    found, notes = ckpt.latest_valid_checkpoint(run)
    assert found == legacy and len(notes) == 1 and "unverified" in notes[0]
    _truncate(legacy / ckpt.STATE_FILE, 10)
    found, notes = ckpt.latest_valid_checkpoint(run)
    assert found == run / "checkpoint-1"
    assert notes[0] == ("checkpoint-2 is damaged (trainer_state.json is unreadable and there is no manifest.json); "
                        "resuming from checkpoint-1")


def test_exported_model_directory_is_verified(tmp_path):
    final = tmp_path / "final"
    final.mkdir()
    (final / "model.safetensors").write_bytes(b"\0" * 64)
    (final / "config.json").write_text("{}")
    assert ckpt.verify_model_dir(final) is False  # no manifest (not exported by alignlab): nothing to check
    ckpt.write_manifest(final)
    assert ckpt.verify_model_dir(final) is True
    _truncate(final / "model.safetensors", 32)
    with pytest.raises(ConfigError, match=r"model.safetensors: size 32 != 64\); export or copy it again"):
        ckpt.verify_model_dir(final)


# ------------------------------------------------------------------------------------------------ full disk
def _free_bytes(monkeypatch, free: int) -> None:
    usage = type(shutil.disk_usage("/"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(total=10**9, used=10**9 - free, free=free))


def test_a_full_disk_reported_by_a_library_is_one_line(tmp_path, monkeypatch):
    """safetensors and torch.save report ENOSPC as their own exceptions (seen on a full tmpfs); both become one
    line, the partial directory goes and the previous checkpoint stays valid."""
    from safetensors import SafetensorError

    run = tmp_path / "run"
    previous = ckpt.build_checkpoint(run / "checkpoint-1", lambda tmp: shutil.copytree(
        _fake_checkpoint(tmp_path / "src", 1, manifest=False), tmp, dirs_exist_ok=True))

    def safetensors_full(tmp: Path) -> None:
        (tmp / "model.safetensors").write_bytes(b"\0" * 10)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    def torch_full(tmp: Path) -> None:
        (tmp / "state").mkdir()
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    _free_bytes(monkeypatch, 1000)
    for write, reason in ((safetensors_full, "No space left on device;"),
                          (torch_full, "No space left on device (reported as RuntimeError);")):
        with pytest.raises(ConfigError) as err:
            ckpt.build_checkpoint(run / "checkpoint-2", write)
        assert str(err.value).startswith(f"cannot write {run / 'checkpoint-2'}: {reason} 1000 bytes free")
        assert "\n" not in str(err.value)
        assert sorted(p.name for p in run.iterdir()) == ["checkpoint-1"]
    _free_bytes(monkeypatch, 10**9)  # plenty of space: a library error is a bug to see, not a full disk
    with pytest.raises(RuntimeError, match="unexpected pos"):
        ckpt.build_checkpoint(run / "checkpoint-2", torch_full)
    assert ckpt.latest_valid_checkpoint(run) == (previous, [])


# ------------------------------------------------------------------------------------------------ leftovers
def test_stale_temporaries_are_removed(tmp_path):
    keep = _fake_checkpoint(tmp_path, 3)
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    half = tmp_path / ".tmp-checkpoint-4"
    (half / "state").mkdir(parents=True)
    (half / "model.safetensors").write_bytes(b"\0")
    partial_file = tmp_path / ".metrics.jsonl.0123456789ab.tmp"  # write_atomically's temporary
    partial_file.write_text("{")
    assert ckpt.remove_stale_temporaries(tmp_path) == [partial_file, half]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3", "metrics.jsonl"]
    assert ckpt.manifest_problem(keep) is None
    assert ckpt.remove_stale_temporaries(tmp_path / "missing") == []


# ------------------------------------------------------------------------------------------------ modes
def test_built_directories_get_the_umask_modes(tmp_path, umask_022):
    def build(tmp: Path) -> None:
        (tmp / "config.json").write_text("{}")
        fd, name = tempfile.mkstemp(dir=tmp)  # how transformers writes model.safetensors: mode 0o600
        os.close(fd)
        os.replace(name, tmp / "model.safetensors")
        (tmp / "state").mkdir(mode=0o700)
        (tmp / "state" / "run.sh").write_text("")
        os.chmod(tmp / "state" / "run.sh", 0o700)

    for barrier in (None, lambda: None):
        target = build_dir_atomically(tmp_path / f"out-{barrier is None}", build, replace=True, barrier=barrier)
        modes = {p.relative_to(target).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in target.rglob("*")}
        assert stat.S_IMODE(target.stat().st_mode) == 0o755
        assert modes == {"config.json": 0o644, "model.safetensors": 0o644, "state": 0o755, "state/run.sh": 0o755}


# ----------------------------------------------------------------------------------------- safetensors only
def _tiny_gpt2(directory: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_layer=1, n_head=2, n_positions=32))
    model.config.save_pretrained(directory)
    return model.state_dict()


def test_pickled_weights_are_refused_unless_allowed(tmp_path):
    directory = tmp_path / "pickled"
    state = _tiny_gpt2(directory)
    torch.save(state, directory / "pytorch_model.bin")  # the format of safe_serialization=False
    with pytest.raises(ConfigError) as err:
        load_model(str(directory))
    message = str(err.value)
    assert "\n" not in message and str(directory) in message
    assert "pytorch_model.bin, a pickle" in message and "allow_pickle=True" in message
    model = load_model(str(directory), allow_pickle=True)
    assert torch.equal(model.state_dict()["transformer.wte.weight"], state["transformer.wte.weight"])

    model.save_pretrained(directory)  # the suggested conversion: safetensors beside the pickle now
    assert (directory / "model.safetensors").is_file()
    assert torch.equal(load_model(str(directory)).state_dict()["transformer.wte.weight"],
                       state["transformer.wte.weight"])


def test_config_pointing_at_a_pickle_is_refused(tmp_path):
    directory = tmp_path / "explicit"
    torch.save(_tiny_gpt2(directory), directory / "adapter_model.bin")
    config = json.loads((directory / "config.json").read_text())
    # transformers loads the file config.json names even with use_safetensors=True
    (directory / "config.json").write_text(json.dumps({**config, "transformers_weights": "adapter_model.bin"}))
    with pytest.raises(ConfigError, match="transformers_weights is 'adapter_model.bin'"):
        load_model(str(directory))


# --------------------------------------------------------------------------------------------- the trainer
def test_trainer_checkpoints_verify_and_survive_a_full_disk(small, tmp_path, monkeypatch, umask_022):
    trainer = Trainer(load_config(base=small("sft", max_steps=2, save_steps=1)))
    first = trainer.save(1)
    assert ckpt.manifest_problem(first) is None
    listed = json.loads((first / "manifest.json").read_text())["files"]
    assert "model.safetensors" in listed and any(name.startswith("state/") for name in listed)
    assert stat.S_IMODE((first / "model.safetensors").stat().st_mode) == 0o644  # like config.json
    assert stat.S_IMODE((first / "config.json").stat().st_mode) == 0o644

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(trainer.policy), "save_pretrained", full)
    _free_bytes(monkeypatch, 4321)
    with pytest.raises(AlignlabError) as err:
        trainer.save(2)
    message = str(err.value)
    assert "\n" not in message
    assert str(trainer.run_dir / "checkpoint-2") in message and "4321 bytes free" in message
    assert "No space left on device" in message
    assert isinstance(err.value, OSError)  # callers that catch a failed write as OSError still do
    assert sorted(p.name for p in trainer.run_dir.iterdir()) == ["checkpoint-1"]  # no .tmp-* left
    assert ckpt.latest_valid_checkpoint(trainer.run_dir) == (first, [])

    monkeypatch.undo()
    final = trainer.save(2, final=True)
    assert ckpt.verify_model_dir(final) is True
    assert stat.S_IMODE((final / "model.safetensors").stat().st_mode) == 0o644


def test_resume_skips_a_damaged_checkpoint_and_removes_leftovers(small):
    base = small("sft", max_steps=3, save_steps=1)
    run = train(load_config(base=base)).run_dir
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [1, 2]
    optimizer = run / "checkpoint-2" / "state" / "optimizer.safetensors"
    size = optimizer.stat().st_size
    _truncate(optimizer, size // 2)
    leftover = run / ".tmp-checkpoint-3"  # a checkpoint write killed by SIGKILL
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"\0")

    printed: list[str] = []
    Trainer(load_config(base=base), resume=True, console=SimpleNamespace(print=printed.append)).train()
    expected = [
        f"checkpoint-2 is damaged (state/optimizer.safetensors: size {size // 2} != {size}); resuming from checkpoint-1",
        "removed .tmp-checkpoint-3, left by an interrupted write",
        f"resumed from {run / 'checkpoint-1'} at step 1",
    ]
    assert [line for line in printed if line in expected] == expected  # in this order, among other lines
    assert not leftover.exists()
    assert ckpt.latest_valid_checkpoint(run) == (run / "checkpoint-2", [])  # rewritten whole by the resumed run
    assert ckpt.verify_model_dir(run / "final") is True


def test_a_write_that_fails_on_another_process_fails_here_too(tmp_path):
    """Several processes: a failure on one must not leave the others at a barrier (any_failed is collective)."""
    votes: list[bool] = []

    def any_failed(failed: bool) -> bool:  # as if the other process's write had failed
        votes.append(failed)
        return True

    with pytest.raises(ckpt.CheckpointWriteError, match="another process could not write its part of checkpoint-4"):
        ckpt.build_checkpoint(tmp_path / "checkpoint-4", lambda tmp: (tmp / "model.safetensors").write_bytes(b"x"),
                              barrier=lambda: None, any_failed=any_failed)
    assert votes == [False] and not list(tmp_path.iterdir())  # this process wrote fine; nothing is left behind


def test_the_reference_cache_is_safetensors_and_a_damaged_file_is_recomputed(tmp_path):
    """ref_cache_dir is a path a user names: the cache is never unpickled; a file that does not read is redone."""
    from safetensors.torch import load_file

    from alignlab.train.ref_cache import cached_reference_logps

    calls: list[list[int]] = []

    def compute(positions: list[int]) -> torch.Tensor:
        calls.append(positions)
        return torch.tensor([[float(-p), float(-2 * p)] for p in positions], dtype=torch.float64)

    examples = [{}] * 3
    table, cached = cached_reference_logps(tmp_path, "key", examples, compute)
    assert not cached and torch.equal(load_file(str(tmp_path / "key.safetensors"))["logps"], table)
    again, cached = cached_reference_logps(tmp_path, "key", examples, compute)
    assert cached and torch.equal(again, table) and len(calls) == 1
    (tmp_path / "key.safetensors").write_bytes(b"\x80\x04not a safetensors file")  # e.g. a pickle put there
    redone, cached = cached_reference_logps(tmp_path, "key", examples, compute)
    assert not cached and torch.equal(redone, table) and len(calls) == 2
