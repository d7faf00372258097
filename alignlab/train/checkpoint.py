"""Checkpoints: `<run_dir>/checkpoint-<step>/` and `<run_dir>/final/`, written to a temporary directory and renamed.

A checkpoint holds the model in Hugging Face format (a peft adapter for LoRA runs unless merged weights are
asked for), the tokenizer, `trainer_state.json` (step, epoch, data position, config) and `state/` (optimizer,
scheduler and RNG states through accelerate's save_state, which also handles FSDP and DeepSpeed shards). The
rename is the commit point: a crash mid-write leaves only a `.tmp-*` directory, never a half-written
`checkpoint-<step>` for `--resume` to pick up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
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


def write_atomically(target: Path, write: Callable[[Path], None], *, is_main: bool = True,
                     barrier: Callable[[], None] = lambda: None) -> Path:
    """Call write(tmp_dir) on every process, then (main process) rename tmp_dir to target."""
    tmp = target.parent / f".tmp-{target.name}"
    if is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    barrier()
    write(tmp)
    barrier()
    if is_main:
        if target.exists():  # e.g. final/ of an earlier attempt: replace it only once the new one is complete
            old = target.parent / f".old-{target.name}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    barrier()
    return target


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


__all__ = ["latest_checkpoint", "list_checkpoints", "prune_checkpoints", "read_state", "write_atomically",
           "write_state"]
