"""Precomputed reference log-probs for the DPO family: one no-grad pass before training, cached on disk.

The DPO-family losses see the reference only through S_ref(chosen) and S_ref(rejected), two floats per pair, so
the reference model need not be resident during training. The cache file is keyed by a fingerprint of the
reference model (its resolved location, config and weight files), the dtype and the tokenized examples (ids and
labels, which capture the data, the tokenizer and the truncation settings), so it is reused across epochs,
resumes and runs, and never reused for anything else. TDPO needs the reference's full distribution at every
token and cannot use this cache (config validation rejects the combination).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignlab.assets import resolve

# Bump when the reference's log-probs change for the same model and examples (2: the output head's transform,
# e.g. Gemma-2's soft-cap, is applied), so older cache files are not reused.
REF_CACHE_VERSION = "2"


def model_fingerprint(name_or_path: str, *, seed: int = 0) -> str:
    """Resolved location + config.json + (name, size, mtime) of weight files; hub ids hash as their name."""
    location = resolve(name_or_path, seed=seed)
    h = hashlib.sha256(location.encode())
    path = Path(location)
    if path.is_dir():
        for f in sorted(path.iterdir()):
            if f.name == "config.json":
                h.update(f.read_bytes())
            elif f.suffix in (".safetensors", ".bin"):
                st = f.stat()
                h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def examples_fingerprint(examples: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        for key in ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"):
            h.update(np.asarray(ex[key], dtype=np.int64).tobytes())
            h.update(b"|")
    return h.hexdigest()


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
    path = cache_dir / f"{fingerprint}.pt"
    if path.is_file():
        table = torch.load(path, map_location="cpu", weights_only=True)
        if table.shape == (len(examples), 2):
            return table, True
    positions = list(range(rank, len(examples), world))
    local = compute(positions) if positions else torch.zeros(0, 2, dtype=torch.float64)
    gathered = gather([(positions, local.tolist())])
    table = torch.zeros(len(examples), 2, dtype=torch.float64)
    for pos, values in gathered:
        if pos:
            table[torch.tensor(pos)] = torch.tensor(values, dtype=torch.float64)
    if rank == 0:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(table, tmp)
        os.replace(tmp, path)
        (cache_dir / f"{fingerprint}.json").write_text(json.dumps({"n_examples": len(examples)}), encoding="utf-8")
    barrier()
    return table, False


__all__ = ["REF_CACHE_VERSION", "cached_reference_logps", "examples_fingerprint", "model_fingerprint"]
