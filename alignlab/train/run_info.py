"""What a run directory says about itself: its config (config.yaml), its final metrics and its timing.

Read by the model card (final/README.md), `alignlab report` and `alignlab diagnose --run`, so the three agree on
what a run was. Nothing here loads a model.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alignlab.errors import AlignlabError
from alignlab.train.config import TrainConfig, load_config, run_config_values

CONFIG_FILE = "config.yaml"


def stage_dirs(run_dir: str | Path) -> list[Path]:
    """The run directories directly inside `run_dir` (each with a config.yaml): the quickstart's sft/ and
    tdpo2/ stages, say. Empty when `run_dir` is not a directory."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if (p / CONFIG_FILE).is_file())


def check_run_dir(run_dir: str | Path) -> Path:
    """`run_dir`/config.yaml, or an AlignlabError saying what is missing (for a directory of runs, such as the
    quickstart's, naming the runs inside it). Reads no file: cheap enough for a command's first checks."""
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise AlignlabError(f"run directory '{run_dir}' does not exist")
    if not path.is_file():
        stages = stage_dirs(run_dir)
        if stages:
            names = ", ".join(f"{p.name}/" for p in stages)
            raise AlignlabError(f"'{run_dir}' holds the runs {names}, not one run: pass one of them "
                                f"(e.g. {stages[-1]})")
        raise AlignlabError(f"run directory '{run_dir}' has no {CONFIG_FILE} (the trainer writes the resolved "
                            "config there)")
    return path


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The validated config a run was trained with, from `run_dir`/config.yaml (through today's rules, as
    `--resume` reads it). A missing or malformed file is an AlignlabError naming it (check_run_dir)."""
    path = check_run_dir(run_dir)
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AlignlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(saved, dict):
        raise AlignlabError(f"{path}: not a mapping of config keys")
    return load_config(base=run_config_values(saved))


def resolve_run_path(run_dir: str | Path, config: TrainConfig, name: str | None) -> str | None:
    """A model path the run's config names (model, ref_model, tokenizer), as seen from here.

    Relative paths in a config are relative to where training ran. When `name` does not exist from here but the
    run directory has moved together with it (the quickstart's tdpo2 stage names `<root>/sft/final`), it is
    found at the same place relative to the run directory. Hub ids and built-in names are returned unchanged."""
    if name is None or Path(name).exists() or Path(name).is_absolute():
        return name
    recorded = config.run.run_dir
    if recorded is None or Path(recorded).is_absolute():
        return name
    # both relative to the directory training ran in: keep name's place relative to the run directory
    moved = Path(os.path.normpath(Path(run_dir) / os.path.relpath(name, recorded)))
    return str(moved) if moved.exists() else name


def final_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The last logged value of every numeric metric (the held-out `eval/` ones at the last evaluation, the
    training ones at the last logged step); `step` and `epoch` excluded."""
    out: dict[str, float] = {}
    for record in records:
        for key, value in record.items():
            if key in ("step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                out[key] = float(value)
    return out


@dataclass(frozen=True)
class RunTiming:
    """How long a run took and how fast it went.

    duration_s: from config.yaml (written at the start) to the last file the run wrote (final/ or the
    newest metrics line), from file times; None when neither can be read. A resumed run counts its pause.
    tokens_per_s: the median over logged steps of the trainer's per-step tokens/s; steps: the last logged step.
    """

    duration_s: float | None
    tokens_per_s: float | None
    steps: int | None
    epochs: float | None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return {"duration_s": self.duration_s, "tokens_per_s": self.tokens_per_s, "steps": self.steps,
                "epochs": self.epochs}


def run_timing(run_dir: str | Path, records: Sequence[Mapping[str, Any]]) -> RunTiming:
    """RunTiming of the run in `run_dir` whose metrics.jsonl records are `records`."""
    run_dir = Path(run_dir)
    ends = [p.stat().st_mtime for p in (run_dir / "final" / "manifest.json", run_dir / "final",
                                        run_dir / "metrics.jsonl") if p.exists()]
    start = (run_dir / CONFIG_FILE).stat().st_mtime if (run_dir / CONFIG_FILE).exists() else None
    duration = max(0.0, max(ends) - start) if ends and start is not None else None
    rates = [float(r["tokens_per_s"]) for r in records if isinstance(r.get("tokens_per_s"), (int, float))]
    steps = [int(r["step"]) for r in records if isinstance(r.get("step"), int) and not isinstance(r["step"], bool)]
    epochs = [float(r["epoch"]) for r in records if isinstance(r.get("epoch"), (int, float))]
    return RunTiming(duration_s=duration, tokens_per_s=statistics.median(rates) if rates else None,
                     steps=max(steps) if steps else None, epochs=max(epochs) if epochs else None)


__all__ = ["CONFIG_FILE", "RunTiming", "check_run_dir", "final_metrics", "load_run_config", "resolve_run_path", "run_timing",
           "stage_dirs"]
