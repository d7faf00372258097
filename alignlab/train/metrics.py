"""Metrics sinks: `<run_dir>/metrics.jsonl` (one JSON object per logged step) and TensorBoard event files.

A run killed mid-write can leave a cut-off last line in metrics.jsonl: readers skip it, and a resumed run
trims the file (and TensorBoard, with its `purge_step`) to the checkpoint's step, so both read as one run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alignlab.cache import write_text_atomically


class MetricsWriter:
    """Appends {"step": s, **metrics} lines; mirrors scalars to TensorBoard when enabled.

    ``resume_step``: the checkpoint step a resumed run continues from; lines and TensorBoard events logged after
    it (by the run that was interrupted) are dropped. None for a fresh run.
    """

    def __init__(self, run_dir: Path, *, tensorboard: bool, enabled: bool = True, resume_step: int | None = None):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and resume_step is not None:
            self._truncate_after(resume_step)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from alignlab.errors import ConfigError

                raise ConfigError("tensorboard: true needs the tensorboard package (pip install tensorboard), "
                                  "or set tensorboard=false") from None
            # purge_step: events at or after it, written before the interruption, are discarded by readers
            purge = None if resume_step is None else resume_step + 1
            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.tb is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.tb.add_scalar(key, value, step)

    def _truncate_after(self, step: int) -> None:
        """Keep the lines logged up to `step`; a crash while rewriting keeps the old file (atomic write)."""
        if not self.path.exists():
            return
        kept = [line for line, record in _records(self.path) if record.get("step", 0) <= step]
        write_text_atomically(self.path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, record) of every complete line; a line cut off by a kill (not valid JSON) is skipped."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append((line, record))
    return out


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The logged records of a run, in order (a cut-off line left by a kill is skipped)."""
    return [record for _, record in _records(Path(run_dir) / "metrics.jsonl")]


__all__ = ["MetricsWriter", "read_metrics"]
