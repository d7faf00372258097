"""The trainer's callback protocol: diagnostics (a higher layer) plug in here without the trainer importing them."""

from __future__ import annotations

from typing import Any


class TrainerCallback:
    """Hooks the trainer calls. `trainer.train_examples` holds the tokenized training examples and
    `trainer.score_pairs(examples)` scores pairs under the current policy and the reference."""

    def on_train_begin(self, trainer: Any) -> None:
        """Called once, after data and models are ready and before the first step."""

    def on_evaluate(self, trainer: Any, step: int) -> dict[str, float]:
        """Called at every evaluation; the returned metrics are logged with the step."""
        return {}
