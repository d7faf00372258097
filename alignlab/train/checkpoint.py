"""Checkpoints: `<run_dir>/checkpoint-<step>/` and `<run_dir>/final/`, written to a temporary directory and renamed.

A checkpoint holds the model in Hugging Face format (a peft adapter for LoRA runs unless merged weights are
asked for), the tokenizer, `trainer_state.json` (step, epoch, data position, config, the LR scheduler's state)
and `state/` (optimizer and RNG states through accelerate's save_state, which also handles FSDP and DeepSpeed
shards and loads them with weights_only=True): nothing in a run directory is unpickled unrestricted. It is
built by every process in one temporary directory and renamed into place (alignlab.cache.build_dir_atomically
with the accelerator's barrier); the rename is the commit point: a crash mid-write leaves at most a `.tmp-*`
directory, never a half-written `checkpoint-<step>` for `--resume` to pick up.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "trainer_state.json"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in a run directory, oldest first."""
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        m = _CHECKPOINT.match(child.name)
        if m and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: Path, keep: int | None) -> None:
    """Delete all but the newest `keep` checkpoints (None keeps all)."""
    if keep is None:
        return
    for _, path in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(path)


def write_state(directory: Path, state: dict[str, Any]) -> None:
    (directory / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")


def read_state(directory: Path) -> dict[str, Any]:
    return json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))


__all__ = ["latest_checkpoint", "list_checkpoints", "prune_checkpoints", "read_state", "write_state"]
