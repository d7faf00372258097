"""Checkpoints: `<run_dir>/checkpoint-<step>/` and `<run_dir>/final/`, written to a temporary directory and renamed.

A checkpoint holds the model in Hugging Face format (a peft adapter for LoRA runs unless merged weights are
asked for), the tokenizer, `trainer_state.json` (step, epoch, data position, config, the LR scheduler's state)
and `state/` (the optimizer, loss-scaler and RNG states as safetensors and JSON, alignlab.train.train_state):
nothing in a run directory is pickled or unpickled. It is
built by every process in one temporary directory and renamed into place (`build_checkpoint`, through
alignlab.cache.build_dir_atomically with the accelerator's barrier); the rename is the commit point: a crash
mid-write leaves at most a `.tmp-*` directory (`remove_stale_temporaries` deletes it when the run restarts),
never a half-written `checkpoint-<step>` for `--resume` to pick up.

Files can still be damaged after the commit (a disk error, a copy cut short), so the last file written into the
temporary directory is `manifest.json`: every other file's relative path, size and sha256. `--resume` takes the
newest checkpoint that matches its manifest (`latest_valid_checkpoint`) and says which newer ones it skipped;
`verify_model_dir` checks an exported `final/` the same way for tools that load it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alignlab.cache import build_dir_atomically, remove_temporaries, write_json_atomically
from alignlab.errors import ConfigError

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"
MANIFEST = "manifest.json"
# Stamped into trainer_state.json: a checkpoint of this format without a manifest lost it (damage), while one
# without the stamp was written before manifests existed.
_FORMAT = 2
# Keys every version of trainer_state.json holds; a manifest-less checkpoint is usable only with all of them.
_STATE_KEYS = ("step", "epoch", "global_batch", "config")
_CHUNK = 1 << 20
# Less free space than this after a failed checkpoint write: the disk filled up (a write fails when the next
# buffer does not fit, so at most a buffer's worth is left).
_FULL_BYTES = 16 << 20


class CheckpointWriteError(ConfigError, OSError):
    """A checkpoint could not be written (disk full, permissions): one line naming the directory and the free
    space. Also an OSError, so callers that catch write failures as such keep doing so."""


# ------------------------------------------------------------------------------------------------ discovery
def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """`(step, directory)` of every committed `checkpoint-<step>` holding trainer_state.json, oldest first.

    Structure only, nothing is read: use `latest_valid_checkpoint` to pick one to resume from.
    """
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        m = _CHECKPOINT.match(child.name)
        if m and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest entry of `list_checkpoints`, unverified, or None."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def latest_valid_checkpoint(run_dir: Path) -> tuple[Path, list[str]]:
    """The newest checkpoint of `run_dir` to resume from, and one line per newer checkpoint skipped or per
    caveat, for the caller to print.

    A checkpoint with a manifest is used when every file it lists has its size and sha256 (files added later are
    not checked; the trainer refuses the dangerous ones itself). One without a manifest was written before
    alignlab wrote manifests (no format stamp in trainer_state.json) and is used, unverified, only when its
    trainer_state.json parses, holds step, epoch, global_batch and config, and `state/` exists; with the stamp,
    a missing manifest is damage. Raises ConfigError (one line) when no checkpoint is usable.
    """
    skipped: list[tuple[str, str]] = []
    for _, directory in reversed(list_checkpoints(run_dir)):
        problem, caveat = _checkpoint_problem(directory)
        if problem is None:
            notes = [f"{name} is damaged ({why}); resuming from {directory.name}" for name, why in skipped]
            return directory, notes + ([f"{directory.name}: {caveat}"] if caveat else [])
        skipped.append((directory.name, problem))
    if not skipped:
        raise ConfigError(f"--resume: no complete checkpoint-<step> in run_dir '{run_dir}'; start the run "
                          "without --resume in a new run_dir")
    name, why = skipped[0]
    more = f" and {len(skipped) - 1} older checkpoint(s) damaged too" if len(skipped) > 1 else ""
    raise ConfigError(f"--resume: no usable checkpoint in run_dir '{run_dir}': {name} is damaged ({why}){more}; "
                      "start the run without --resume in a new run_dir")


def _checkpoint_problem(directory: Path) -> tuple[str | None, str | None]:
    """(why `directory` cannot be resumed from or None, a caveat about using it or None)."""
    if (directory / MANIFEST).is_file():
        return manifest_problem(directory), None
    try:
        state = read_state(directory)
    except (OSError, ValueError):  # ValueError: truncated JSON or bytes that are not UTF-8
        return f"{STATE_FILE} is unreadable and there is no {MANIFEST}", None
    if not isinstance(state, dict):
        return f"{STATE_FILE} is not a JSON object", None
    if state.get("checkpoint_format", 0) >= _FORMAT:
        return f"{MANIFEST} is missing", None
    missing = [key for key in _STATE_KEYS if key not in state]
    if missing:
        return f"{STATE_FILE} lacks {', '.join(missing)}", None
    if not (directory / "state").is_dir():
        return "state/ is missing", None
    return None, f"written by an older alignlab without {MANIFEST}: its weights and optimizer state are unverified"


def prune_checkpoints(run_dir: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` checkpoints (None keeps all)."""
    if keep is None:
        return
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path)


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary directories and files an interrupted run left in `run_dir` (a checkpoint write cut by
    SIGKILL leaves `.tmp-checkpoint-<step>`) and return their paths.

    Call it from the main process only, when the run starts or resumes and before any process writes into
    `run_dir`: every temporary there is then a leftover.
    """
    return remove_temporaries(run_dir)


# ------------------------------------------------------------------------------------------------- writing
def build_checkpoint(target: Path, write: Callable[[Path], None], *, is_main: bool = True,
                     barrier: Callable[[], None] | None = None,
                     any_failed: Callable[[bool], bool] | None = None) -> Path:
    """Build the checkpoint or export directory `target` atomically: every process runs `write(tmp)`, then the
    main process adds `manifest.json` and renames `tmp` onto `target` (replacing an older one).

    An OSError while writing (ENOSPC, EACCES, ...) removes the temporary directory, leaves every committed
    checkpoint as it was and raises CheckpointWriteError naming `target` and the free space on its disk.
    any_failed (several processes): a collective returning, on every process, whether any process passed True;
    it replaces the barrier after `write`, so a write that fails on one process fails on all of them instead of
    leaving the others waiting.
    """

    def build(tmp: Path) -> None:
        error: BaseException | None = None
        try:
            write(tmp)
        except OSError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - raised below, once every process knows
            # safetensors and torch.save report a full disk as their own errors, without an errno
            error = _disk_error(tmp, exc) or exc
            if error is not exc:
                error.__cause__ = exc
        if any_failed is not None:
            if any_failed(error is not None) and error is None:
                error = OSError(f"another process could not write its part of {target.name}")
        elif barrier is not None and error is None:
            barrier()  # every process's shards are in place before the manifest lists them
        if error is not None:
            raise error
        if is_main:
            write_manifest(tmp)

    try:
        return build_dir_atomically(target, build, replace=True, is_main=is_main, barrier=barrier)
    except OSError as exc:
        raise CheckpointWriteError(_write_error(target, exc)) from exc


def _disk_error(tmp: Path, exc: Exception) -> OSError | None:
    """`exc` as the OSError it stands for, or None: safetensors' errors carry "os error <errno>"; an error without
    one while the disk is (all but) full is taken for ENOSPC (torch.save's "unexpected pos ...")."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    m = re.search(r"os error (\d+)", first)
    if m:
        code = int(m.group(1))
        return OSError(code, os.strerror(code))
    try:
        full = shutil.disk_usage(tmp).free < _FULL_BYTES
    except OSError:
        return None
    return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (reported as {type(exc).__name__})") if full else None


def _write_error(target: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename:
        reason = f"{reason} ({Path(exc.filename).name})"
    try:
        free = f"{shutil.disk_usage(target.parent).free} bytes free on its file system"
    except OSError:
        free = "free space unknown"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        previous = list_checkpoints(target.parent)[-1:]
        need = sum(f.stat().st_size for _, d in previous for f in d.rglob("*") if f.is_file())
        fix = f"free disk space (the last checkpoint takes {need} bytes)" if need else "free disk space"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {target.parent} writable"
    else:
        fix = f"check the disk holding {target.parent}"
    return (f"cannot write {target}: {reason}; {free}; earlier checkpoints are intact: "
            f"{fix}, then continue with --resume")


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write trainer_state.json (stamped with the checkpoint format) into `directory`."""
    payload = {**state, "checkpoint_format": _FORMAT}
    (directory / STATE_FILE).write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")


def read_state(directory: Path) -> dict[str, Any]:
    """The trainer_state.json of a checkpoint."""
    return json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ manifests
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path) -> Path:
    """Write `directory/manifest.json`: the relative path, size and sha256 of every other file below
    `directory` (symlinks followed). Call it after the last file is written."""
    files = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if relative != MANIFEST and path.is_file():
            files[relative] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    return write_json_atomically(directory / MANIFEST, {"format": 1, "files": files}, indent=1)


def manifest_problem(directory: Path, *, checksums: bool = True) -> str | None:
    """What is wrong with `directory` against its manifest.json (e.g. "state/optimizer.safetensors: size 123 != 456"),
    or None when every listed file matches.

    Sizes are compared first for every file (cheap), then sha256 unless `checksums` is false. A missing or
    unreadable manifest is a problem; files the manifest does not list are not.
    """
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        entries = [(name, int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()]
    except FileNotFoundError:
        return f"{MANIFEST} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST} is unreadable"
    for name, size, _ in entries:
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{name}: size {actual} != {size}"
    if checksums:
        for name, _, sha256 in entries:
            if _sha256(directory / name) != sha256:
                return f"{name}: sha256 differs from {MANIFEST}"
    return None


def verify_model_dir(directory: Path) -> bool:
    """Check an exported model directory (`final/`, a checkpoint) against its manifest.json before loading it.

    Returns True when it was verified and False when it has no manifest (a model not exported by alignlab, or
    by a version before manifests): nothing to check. Raises ConfigError (one line) when a file is missing,
    truncated or altered.
    """
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        return False
    problem = manifest_problem(directory)
    if problem is not None:
        raise ConfigError(f"model directory '{directory}' is damaged ({problem}); export or copy it again")
    return True


__all__ = [
    "MANIFEST",
    "CheckpointWriteError",
    "build_checkpoint",
    "latest_checkpoint",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "manifest_problem",
    "prune_checkpoints",
    "read_state",
    "remove_stale_temporaries",
    "verify_model_dir",
    "write_manifest",
    "write_state",
]
