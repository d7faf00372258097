"""FSDP2 (`torch.distributed.fsdp.fully_shard`) for the policy and the reference, and their checkpoint state.

`accelerate launch --config_file recipes/accelerate/fsdp2.yaml` asks for it (the launcher sets
ACCELERATE_USE_FSDP=true and FSDP_VERSION=2 in every process). alignlab shards the models itself rather than
through `accelerator.prepare`, for two reasons found in accelerate 1.15's source:
- accelerate switches to FSDP only for GPU-type process groups (state.py, `AcceleratorState.__init__`: the
  `DistributedType.FSDP` assignment sits in the branch for MULTI_GPU / MULTI_XPU / ...); a CPU group stays
  MULTI_CPU and the launcher's ACCELERATE_USE_FSDP is ignored, so on a CPU-only machine every process would hold
  a full replica under DDP;
- its FSDP2 checkpoints are torch.distributed.checkpoint directories, whose `.metadata` file is a pickle
  (torch/distributed/checkpoint/filesystem.py); alignlab reads no pickle from a run directory, so it writes the
  sharded state itself as safetensors and JSON (train_state.py).
One code path therefore serves CPU (gloo) and GPU (NCCL): accelerate still provides the process group, the
device and reductions.

Layout. Each decoder layer (the model's `_no_split_modules`, or the config's
`fsdp_transformer_layer_cls_to_wrap`) is one FSDP unit, resharded after its forward as the config says. The
Trunk is the root unit: it holds what lies outside the layers — the input embeddings, the final norm and the
output layer (tied or not) — and is sharded with `reshard_after_forward=False`. The output layer's weight is read
outside any module's forward (the chunked ops project hidden states one token tile at a time, in forward and
again in backward), so it must be the full matrix from the head's first use until the backward has used it:
`Trunk.head()` / `Trunk.embed()` call the root's `unshard()` (an all-gather the root's forward would do anyway;
a no-op once it has), and the root's post-backward reduce-scatters the head's gradient and reshards it. The
reference is sharded the same way, after it was copied from the unsharded policy, and its root stays gathered
once used (it has no backward to reshard it; the chunked backward reads its head too). Exact: the head's weight
is the same full matrix a single process would use, and its gradient is reduced like every other one.

Checkpoints: alignlab.train.train_state writes each process's shards of the weights and of the optimizer state as
safetensors (nothing pickled); a resume needs the same number of processes. `final/` and each checkpoint's model
directory hold the full state dict, gathered to the main process (`full_state_dict`), so they load with
`AutoModelForCausalLM`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from alignlab.errors import ConfigError
from alignlab.models import Trunk, base_model

_PREFIX = "fsdp2"


def requested() -> bool:
    """Whether the launch asks for FSDP2 (accelerate's launcher exports the config file's fsdp keys). FSDP1 is
    refused: alignlab reads the output layer's weight outside its forward, which FSDP1 hides in a flat parameter."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        raise ConfigError(f"the accelerate config asks for FSDP version {version}; alignlab runs FSDP2 only: set "
                          "fsdp_version: 2 (recipes/accelerate/fsdp2.yaml)")
    return True


def _plugin():
    from accelerate.utils import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin()  # the launcher's FSDP_* variables, parsed as accelerate parses them


def _layer_classes(lm: nn.Module, names: list[str] | None) -> tuple[type, ...]:
    wanted = set(names or getattr(base_model(lm), "_no_split_modules", None) or ())
    found = {type(m) for m in lm.modules() if type(m).__name__ in wanted}
    if not found:
        raise ConfigError(f"FSDP2: no module of {base_model(lm).__class__.__name__} is a "
                          f"{', '.join(sorted(wanted)) or 'decoder layer class'}; name the layer class in the "
                          "accelerate config's fsdp_transformer_layer_cls_to_wrap")
    return tuple(found)


def shard(trunk: Trunk) -> Trunk:
    """Shard a Trunk in place with fully_shard over the default process group (module docstring) and return it.
    Call it before an optimizer is built: its parameters become DTensor shards."""
    from torch.distributed.fsdp import fully_shard

    plugin = _plugin()
    names = plugin.transformer_cls_names_to_wrap
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    kwargs: dict[str, Any] = {}
    if plugin.cpu_offload is not None and type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy":
        kwargs["offload_policy"] = plugin.cpu_offload
    layers = _layer_classes(trunk.lm, names)
    for module in list(trunk.lm.modules()):
        if isinstance(module, layers):
            fully_shard(module, reshard_after_forward=bool(plugin.reshard_after_forward), **kwargs)
    fully_shard(trunk, reshard_after_forward=False, **kwargs)
    return trunk


# ------------------------------------------------------------------------------------------------ norms
def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This process's shard of an FSDP2 DTensor; a plain tensor as it is."""
    return t.to_local() if hasattr(t, "to_local") else t


def global_norm(tensors: list[torch.Tensor]) -> float:
    """L2 norm over a list of (sharded or plain) tensors: the local sums of squares (accumulated in float64),
    summed over processes."""
    import torch.distributed as dist

    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return 0.0
    local = torch.stack([torch.linalg.vector_norm(local_tensor(t).detach(), dtype=torch.float64) ** 2
                         for t in tensors]).sum()
    if dist.is_initialized():
        dist.all_reduce(local)
    return float(local.sqrt())


# -------------------------------------------------------------------------------------------- state dicts
def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of a module holding FSDP units, on the CPU of the main process (an
    empty dict elsewhere). A collective: every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


__all__ = ["full_state_dict", "global_norm", "local_tensor", "requested", "shard"]
