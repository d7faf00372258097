"""Training: config sections, the accelerate-based loop for every method, checkpoints, metrics and callbacks.

The loop (torch, accelerate) is imported on first use of `Trainer`, `TrainResult` or `train`, so that loading
and checking a config stays light.
"""

from alignlab.train.config import TrainConfig, describe_keys, load_config

_LOOP = ("Trainer", "TrainResult", "train")


def __getattr__(name: str):
    if name in _LOOP:
        from alignlab.train import trainer

        return getattr(trainer, name)
    if name == "TrainerCallback":
        from alignlab.train.callbacks import TrainerCallback

        return TrainerCallback
    raise AttributeError(f"module 'alignlab.train' has no attribute '{name}'")


__all__ = ["TrainConfig", "TrainResult", "Trainer", "TrainerCallback", "describe_keys", "load_config", "train"]
