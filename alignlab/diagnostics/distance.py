"""Parameter distance from the reference model (Chen et al. 2024, arXiv 2405.19534, Sec. 5):
||theta - theta_ref||_2 over all parameters, the x-axis of the paper's ranking-accuracy / win-rate plots (whose
axis glyph suggests the squared norm, so both are reported). Streamed one parameter at a time, in float64.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignlab.errors import AlignlabError


@dataclass(frozen=True)
class WeightDistance:
    """total = ||theta - theta_ref||_2; squared = its square; per_parameter[name] = ||theta_name - ref_name||_2."""

    total: float
    squared: float
    per_parameter: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"total": self.total, "squared": self.squared, "per_parameter": dict(self.per_parameter)}


def _named_tensors(source: nn.Module | Mapping[str, Tensor], name: str) -> dict[str, Tensor]:
    if isinstance(source, nn.Module):
        return dict(source.named_parameters())  # tied weights appear once
    if isinstance(source, Mapping):
        return dict(source)
    raise AlignlabError(
        f"{name} must be a torch.nn.Module or a state dict, got {type(source).__name__}"
    )


def _pairs(model: dict[str, Tensor], ref: dict[str, Tensor]) -> Iterator[tuple[str, Tensor, Tensor]]:
    only_model, only_ref = sorted(model.keys() - ref.keys()), sorted(ref.keys() - model.keys())
    if only_model or only_ref:
        detail = f"only in model: {only_model[:3]}" if only_model else f"only in ref_model: {only_ref[:3]}"
        raise AlignlabError(
            f"model and ref_model have different parameter names ({detail}); compare models of one "
            f"architecture (merge adapters first)"
        )
    for name, tensor in model.items():
        if tensor.shape != ref[name].shape:
            raise AlignlabError(
                f"parameter '{name}' has shape {list(tensor.shape)} in model but "
                f"{list(ref[name].shape)} in ref_model"
            )
        yield name, tensor, ref[name]


@torch.no_grad()
def weight_distance(
    model: nn.Module | Mapping[str, Tensor], ref_model: nn.Module | Mapping[str, Tensor]
) -> WeightDistance:
    """L2 distance between the parameters of `model` and `ref_model` (modules or name -> tensor state dicts).

    Names and shapes must match exactly (AlignlabError otherwise). For modules, all named parameters count,
    trainable or frozen; for state dicts, every entry. Each difference is taken on the model's device in float64.
    """
    model_tensors = _named_tensors(model, "model")
    ref_tensors = _named_tensors(ref_model, "ref_model")
    if not model_tensors:
        raise AlignlabError("model has no parameters to compare")
    per_parameter: dict[str, float] = {}
    squared = 0.0
    for name, tensor, ref in _pairs(model_tensors, ref_tensors):
        diff = tensor.detach().to(torch.float64) - ref.detach().to(device=tensor.device, dtype=torch.float64)
        value = float(diff.square().sum())
        per_parameter[name] = math.sqrt(value)
        squared += value
    return WeightDistance(math.sqrt(squared), squared, per_parameter)


__all__ = ["WeightDistance", "weight_distance"]
