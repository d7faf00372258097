"""Input checks shared by the diagnostics: everything becomes a float64 CPU vector [B] or an AlignlabError."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from alignlab.errors import AlignlabError


def as_float64(values: Any, name: str) -> Tensor:
    """torch.as_tensor in float64 for non-tensors (lists of Python floats would default to float32); tensors are
    only detached. Booleans, strings and ragged lists raise AlignlabError."""
    if isinstance(values, Tensor):
        tensor = values.detach()
    else:
        try:
            array = np.asarray(values)
        except (TypeError, ValueError) as exc:
            raise AlignlabError(f"{name} must be a tensor or a list of numbers ({exc})") from None
        if array.dtype.kind not in "iuf":
            raise AlignlabError(f"{name} must hold real numbers, got {array.dtype} values")
        tensor = torch.as_tensor(array.astype(np.float64))
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise AlignlabError(f"{name} must hold real numbers, got dtype {tensor.dtype}")
    return tensor


def as_vector(values: Any, name: str) -> Tensor:
    """Return `values` (tensor, array, list) as a detached float64 CPU tensor of shape [B], B >= 1.

    NaN is rejected (a NaN comparison would silently count as a wrong ranking); +-inf is allowed.
    """
    tensor = as_float64(values, name)
    tensor = tensor.to(device="cpu", dtype=torch.float64)
    if tensor.dim() != 1:
        raise AlignlabError(f"{name} must have shape [B], got shape {list(tensor.shape)}")
    if tensor.numel() == 0:
        raise AlignlabError(f"{name} is empty; at least one pair is needed")
    if torch.isnan(tensor).any():
        first = int(torch.isnan(tensor).nonzero()[0])
        raise AlignlabError(f"{name}[{first}] is NaN")
    return tensor


def same_shape(*named: tuple[str, Tensor]) -> None:
    """Raise unless every (name, tensor) has the shape of the first."""
    first_name, first = named[0]
    for name, tensor in named[1:]:
        if tensor.shape != first.shape:
            raise AlignlabError(
                f"{name} has shape {list(tensor.shape)} but {first_name} has shape "
                f"{list(first.shape)}; pass one value per pair"
            )


def lengths_pair(
    chosen_lengths: Any,
    rejected_lengths: Any,
    batch: Tensor,
    *,
    first: str = "chosen",
    second: str = "rejected",
) -> tuple[Tensor, Tensor] | None:
    """Validate optional response lengths (both or neither, positive, shape of `batch`); None when absent."""
    if chosen_lengths is None and rejected_lengths is None:
        return None
    if chosen_lengths is None or rejected_lengths is None:
        missing = first if chosen_lengths is None else second
        raise AlignlabError(
            f"{missing}_lengths is missing; the length-normalised variant needs both "
            f"{first}_lengths and {second}_lengths"
        )
    lengths = (
        as_vector(chosen_lengths, f"{first}_lengths"),
        as_vector(rejected_lengths, f"{second}_lengths"),
    )
    same_shape((f"{first}_logps", batch), (f"{first}_lengths", lengths[0]), (f"{second}_lengths", lengths[1]))
    for name, value in zip((first, second), lengths):
        if not (value > 0).all() or not torch.isfinite(value).all():
            index = int((~((value > 0) & torch.isfinite(value))).nonzero()[0])
            raise AlignlabError(
                f"{name}_lengths[{index}] = {value[index].item()}; response lengths must be positive "
                f"token counts"
            )
    return lengths


def positive_float(value: Any, name: str) -> float:
    """A finite float > 0 (beta, tolerances), else AlignlabError."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AlignlabError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise AlignlabError(f"{name} must be a finite number > 0, got {value!r}")
    return number
