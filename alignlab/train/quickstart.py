"""The quickstart: the offline tiny Llama, a short SFT on the bundled SFT data, then TDPO2 on the bundled pairs.

It is what a bare `alignlab train` (no --config, no key=value overrides) runs. The two stages are the recipes
recipes/quickstart_sft.yaml and recipes/quickstart_tdpo2.yaml, embedded here so an installed package needs no
checkout.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError
from alignlab.train.config import load_config
from alignlab.train.trainer import TrainResult, train

SFT_STAGE: dict[str, Any] = {
    "method": "sft", "model": "alignlab/tiny-llama", "micro_batch_size": 16, "epochs": 1.5,
    "learning_rate": 2e-3, "lr_scheduler": "cosine", "warmup_steps": 5, "max_length": 128,
    "max_prompt_length": 64, "eval_fraction": 0.1,
}
PREFERENCE_STAGE: dict[str, Any] = {
    "method": "tdpo2", "beta": 0.1, "tdpo_alpha": 0.5, "micro_batch_size": 8, "max_steps": 30,
    "optimizer": "rmsprop", "learning_rate": 1e-4, "lr_scheduler": "constant", "warmup_steps": 5,
    "max_length": 128, "max_prompt_length": 64, "eval_fraction": 0.1,
}


def run_quickstart(run_root: str | Path | None = None, overrides: list[str] | None = None,
                   console: Any = None) -> tuple[TrainResult, TrainResult]:
    """Run both stages under run_root (default runs/quickstart-<time>); `overrides` apply to both stages."""
    # checked before the SFT stage trains: one run_dir for both stages would make the second one fail
    if any(item.split("=", 1)[0].strip() == "run_dir" for item in overrides or []):
        raise ConfigError("quickstart: run_dir= would apply to both stages; pass run_root (the stages write "
                          "<run_root>/sft and <run_root>/tdpo2)")
    root = Path(run_root) if run_root else Path(f"runs/quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    sft_cfg = load_config(overrides=overrides, base={**SFT_STAGE, "run_dir": str(root / "sft")})
    sft = train(sft_cfg, console=console)
    pref_cfg = load_config(overrides=overrides, base={**PREFERENCE_STAGE, "model": str(sft.run_dir / "final"),
                                                      "run_dir": str(root / "tdpo2")})
    return sft, train(pref_cfg, console=console)


__all__ = ["PREFERENCE_STAGE", "SFT_STAGE", "run_quickstart"]
