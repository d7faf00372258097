"""Precomputed reference log-probs for the DPO family: one no-grad pass before training, cached on disk.

The DPO-family losses see the reference only through S_ref(chosen) and S_ref(rejected), two floats per pair, so
the reference model need not be resident during training. The cache file is keyed by a fingerprint of the
reference model (alignlab.cache.model_fingerprint: its resolved location, config and weight files, and for a LoRA
adapter its base model), the dtype and the tokenized examples (alignlab.cache.data_fingerprint: ids and labels,
which capture the data, the tokenizer and the truncation settings), so it is reused across epochs,
resumes and runs, and never reused for anything else. TDPO needs the reference's full distribution at every
token and cannot use this cache (config validation rejects the combination).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from alignlab.assets import model_fingerprint
from alignlab.cache import content_key, write_atomically, write_json_atomically

# Bump when the reference's log-probs or the cache key change for the same model and examples, so older cache
# files are not reused (2: the output head's transform, e.g. Gemma-2's soft-cap, is applied; 3: keys use
# alignlab.cache's model and data fingerprints, LoRA-aware; 4: safetensors, never a pickle — ref_cache_dir is a
# path a user names).
REF_CACHE_VERSION = "4"


def reference_fingerprint(name_or_path: str, *, seed: int = 0) -> str:
    """alignlab.cache.model_fingerprint of the resolved reference model (LoRA adapters include their base).

    A hub id with no local files hashes as its name: loading downloads it, and later runs key by its snapshot.
    """
    return model_fingerprint(name_or_path, seed=seed) or content_key({"hub": name_or_path})


def cached_reference_logps(
    cache_dir: Path,
    fingerprint: str,
    examples: Sequence[dict[str, Any]],
    compute: Callable[[list[int]], torch.Tensor],
    *,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[list], list] = lambda x: x,
    barrier: Callable[[], None] = lambda: None,
) -> tuple[torch.Tensor, bool]:
    """[N, 2] float64 reference (chosen, rejected) sums for `examples`, from the cache or computed.

    `compute(positions) -> [len(positions), 2]` scores a list of example positions; each process scores a
    strided shard, the shards are gathered and the main process writes the file atomically.
    Returns (table, was_cached).
    """
    path = cache_dir / f"{fingerprint}.safetensors"
    if path.is_file():
        try:
            table = load_file(str(path))["logps"]
        except (OSError, KeyError, SafetensorError):  # damaged or foreign: computed again and rewritten
            table = None
        if table is not None and table.shape == (len(examples), 2) and table.dtype == torch.float64:
            return table, True
    positions = list(range(rank, len(examples), world))
    local = compute(positions) if positions else torch.zeros(0, 2, dtype=torch.float64)
    gathered = gather([(positions, local.tolist())])
    table = torch.zeros(len(examples), 2, dtype=torch.float64)
    for pos, values in gathered:
        if pos:
            table[torch.tensor(pos)] = torch.tensor(values, dtype=torch.float64)
    if rank == 0:
        write_atomically(path, lambda tmp: save_file({"logps": table}, str(tmp)))
        write_json_atomically(cache_dir / f"{fingerprint}.json", {"n_examples": len(examples)})
    barrier()
    return table, False


__all__ = ["REF_CACHE_VERSION", "cached_reference_logps", "reference_fingerprint"]
