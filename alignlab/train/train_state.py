"""What `--resume` needs besides the weights: a checkpoint's `state/` directory, as safetensors and JSON only.

Nothing in it is pickled, so resuming reads a run directory without running code from it (accelerate's
`save_state` pickles the optimizer, the RNG states and fp16's loss scaler, and `load_state` unpickles them).
One layout serves a single process, DDP and FSDP2:

  state.json                            format, process count, sharded or not, the optimizer's param_groups and
                                        its non-tensor state, fp16's loss-scaler state (main process)
  model.safetensors                     the trunk's parameters and buffers (main process; every DDP replica
  optimizer.safetensors                 holds the same), and the optimizer's tensors, keyed "<param index>.<name>"
  model-rank<r>-of-<w>.safetensors      FSDP2 instead: each process's own shards of both
  optimizer-rank<r>-of-<w>.safetensors
  rng-rank<r>.safetensors               each process's RNG states: torch CPU (and CUDA) as tensors, Python's
                                        `random` and numpy's legacy generator in the file's metadata

Restoring the RNG states makes a resumed run draw what the uninterrupted one would have drawn (dropout masks,
sampling), so --resume is bitwise-identical. A sharded state needs the same process count to resume. DeepSpeed
keeps its optimizer inside its engine and checkpoints it in its own pickled format, so a DeepSpeed checkpoint
holds the weights and trainer state only and is refused by --resume (`resume_problem` says so).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from alignlab.train.fsdp import local_tensor

FORMAT = "alignlab-train-state-1"
META = "state.json"
# accelerate's pickled files, written by alignlab before this module existed: refused, never loaded
_PICKLED = ("optimizer.bin", "optimizer_*.bin", "random_states_*.pkl", "scaler.pt", "custom_checkpoint_*")


def _names(rank: int, world: int, sharded: bool) -> tuple[str, str]:
    tag = f"-rank{rank}-of-{world}" if sharded else ""
    return f"model{tag}.safetensors", f"optimizer{tag}.safetensors"


# ----------------------------------------------------------------------------------------------------- RNG
def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{index}"] = state
    meta = {"python": json.dumps([version, list(internal), gauss]),
            "numpy": json.dumps([kind, int(pos), int(has_gauss), float(cached)])}
    return tensors, meta


def _set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    version, internal, gauss = json.loads(meta["python"])
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = json.loads(meta["numpy"])
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k.split(".")[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])


# ----------------------------------------------------------------------------------------------- optimizer
def _split_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any], list]:
    """The optimizer's state_dict as (tensors keyed "<param index>.<name>", JSON scalars, param_groups)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = local_tensor(value).detach().contiguous().clone()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, scalars, state["param_groups"]


# ------------------------------------------------------------------------------------------------- public
def save(directory: Path, trunk: nn.Module, optimizer: torch.optim.Optimizer | None, *, rank: int, world: int,
         is_main: bool, sharded: bool, scaler: Any = None) -> None:
    """Write this process's part of the training state into `directory` (module docstring). `trunk` is the
    unwrapped trained module; `optimizer` None (DeepSpeed) writes the weights and RNG states only."""
    from safetensors.torch import save_file, save_model

    directory.mkdir(parents=True, exist_ok=True)
    model_name, optim_name = _names(rank, world, sharded)
    rng, rng_meta = _rng_state()
    save_file(rng, str(directory / f"rng-rank{rank}.safetensors"), metadata=rng_meta)
    tensors, scalars, groups = _split_optimizer(optimizer) if optimizer is not None else ({}, {}, [])
    if sharded:
        save_file({name: local_tensor(t).detach().contiguous().clone() for name, t in trunk.state_dict().items()},
                  str(directory / model_name))
        save_file(tensors, str(directory / optim_name))
    elif is_main:
        save_model(trunk, str(directory / model_name))  # tied weights stored once
        save_file(tensors, str(directory / optim_name))
    if is_main:
        meta = {"format": FORMAT, "world": world, "sharded": sharded, "optimizer": optimizer is not None,
                "param_groups": groups, "optimizer_scalars": scalars,
                "scaler": scaler.state_dict() if scaler is not None else None}
        (directory / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")


def resume_problem(directory: Path, *, world: int, sharded: bool, scaler: Any = None) -> str | None:
    """Why this run cannot resume from the state in `directory`, or None. Reads JSON only."""
    pickled = sorted({p.name for pattern in _PICKLED for p in directory.glob(pattern)})
    meta_file = directory / META
    if not meta_file.is_file():
        if pickled:
            return (f"its state/ holds {', '.join(pickled)}, pickled by an older alignlab; alignlab never unpickles "
                    "a run directory (a pickle can run code): start the run again in a new run_dir")
        return f"{meta_file} is missing"
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        return f"{meta_file} is of format {meta.get('format')!r}, not {FORMAT!r}"
    if not meta["optimizer"]:
        return ("it was written under DeepSpeed, whose optimizer state lives in DeepSpeed's own pickled "
                "checkpoint format, which alignlab never loads: --resume works for single-process, DDP and FSDP2 runs")
    if meta["sharded"] and not sharded:
        return "it holds FSDP2 shards; resume it under FSDP2 (accelerate launch --config_file ... fsdp2.yaml)"
    if sharded and not meta["sharded"]:
        return "it was written without FSDP2; resume it with the launch that wrote it (not FSDP2)"
    if meta["sharded"] and meta["world"] != world:
        return f"its FSDP2 shards are for {meta['world']} processes and this run has {world}; resume with {meta['world']}"
    if (meta["scaler"] is None) != (scaler is None):
        return "its fp16 loss-scaler state does not match this run's mixed_precision; resume with the same value"
    return None


def load(directory: Path, trunk: nn.Module, optimizer: torch.optim.Optimizer, *, rank: int, world: int,
         scaler: Any = None) -> None:
    """Load what `save` wrote into the (unwrapped, possibly FSDP2-sharded) trunk, its optimizer, the loss scaler
    and this process's RNG states. Call `resume_problem` first."""
    from safetensors import safe_open
    from safetensors.torch import load_file, load_model

    meta = json.loads((directory / META).read_text(encoding="utf-8"))
    sharded = meta["sharded"]
    model_name, optim_name = _names(rank, world, sharded)
    DTensor = None
    if sharded:
        from torch.distributed.tensor import DTensor

    def like(reference: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        if DTensor is not None and isinstance(reference, DTensor):
            return DTensor.from_local(local.to(reference.device), reference.device_mesh, reference.placements,
                                      shape=reference.shape, stride=reference.stride())
        return local.to(reference.device)

    if sharded:
        current = trunk.state_dict()
        saved = load_file(str(directory / model_name))
        trunk.load_state_dict({name: like(current[name], saved[name]) for name in current})
    else:
        load_model(trunk, str(directory / model_name), strict=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict[str, Any]] = {}
    for key, value in load_file(str(directory / optim_name)).items():
        index, name = key.split(".", 1)
        param = params[int(index)]
        # per-element state (moments) is sharded like its parameter under FSDP2; the rest (`step`) is left where
        # load_state_dict puts it (it moves moments to the parameter's device, and keeps `step` on the CPU)
        shaped = DTensor is not None and isinstance(param, DTensor) and value.shape == param.to_local().shape
        state.setdefault(int(index), {})[name] = like(param, value) if shaped else value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    # which kernel steps (fused / foreach) is this run's choice, not the saved one's: a checkpoint written by the
    # per-tensor loop resumes on the fused kernel (load_state_dict would otherwise take the saved flags)
    kernel = ("fused", "foreach")
    groups = [{**saved, **{k: live[k] for k in kernel if k in live}}
              for saved, live in zip(meta["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if scaler is not None:
        scaler.load_state_dict(meta["scaler"])
    with safe_open(str(directory / f"rng-rank{rank}.safetensors"), framework="pt") as f:
        rng_meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safe_open handle, not a dict)
    _set_rng_state(tensors, rng_meta)


__all__ = ["FORMAT", "load", "resume_problem", "save"]
