"""Training: config, the accelerate-based loop for every method, checkpoints, metrics and callbacks."""

from alignlab.train.callbacks import TrainerCallback
from alignlab.train.config import METHODS, TrainConfig, describe_keys, load_config
from alignlab.train.trainer import Trainer, TrainResult, train

__all__ = ["METHODS", "TrainConfig", "TrainResult", "Trainer", "TrainerCallback", "describe_keys", "load_config",
           "train"]
