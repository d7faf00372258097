"""Metrics sinks: `<run_dir>/metrics.jsonl` (one JSON object per logged step) and TensorBoard event files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from alignlab.cache import write_text_atomically


class MetricsWriter:
    """Appends {"step": s, **metrics} lines; mirrors scalars to TensorBoard when enabled."""

    def __init__(self, run_dir: Path, *, tensorboard: bool, enabled: bool = True):
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from alignlab.errors import ConfigError

                raise ConfigError("tensorboard: true needs the tensorboard package (pip install tensorboard), "
                                  "or set tensorboard=false") from None
            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

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

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint's step so the file reads as one run."""
        if not self.enabled or not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
        write_text_atomically(self.path, "".join(line + "\n" for line in kept))  # a crash keeps the old file

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["MetricsWriter", "read_metrics"]
