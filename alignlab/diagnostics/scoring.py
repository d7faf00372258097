"""Scoring engine: per-pair summed response log-probs and lengths of a model on tokenized preference pairs.

The ranking diagnostics (ranking.py, flips.py) consume [N] statistics; this module produces them from a model:

  chosen_logps[i]  = sum_t log pi(y_w,t | x, y_w,<t)      chosen_lengths[i]  = n(y_w)   (response tokens only)
  rejected_logps[i] = the same for y_l                   rejected_lengths[i] = n(y_l)

Batching: `alignlab.models.score_batches`, the one scoring loop: pairs sorted by length (longest first), cut
into batches of `batch_size` pairs, collated as training collates them (right padding) and scored under no_grad
in eval mode; results are written back in the input order. Right padding plus causal attention means padding
never reaches a scored position, so bucketing changes no value beyond float rounding.

Log-probs come from `alignlab.models.sequence_stats`, the code path training uses: the final hidden states and
the model's output head with its transform (soft-capping, logit scaling), projected to the vocabulary one chunk
of response tokens at a time ("chunked"), or as full logits ("logits", the plain reference).

Cache: `score_model` keys a Parquet file by (model fingerprint, data fingerprint, dtype, engine version) under
`cache_dir() / "scores"`, written atomically (temporary file + rename), so plots and comparisons never rescore.
- Model fingerprint (alignlab.cache.model_fingerprint): the resolved real path, the bytes of config.json /
  adapter_config.json, and the name, size and mtime (ns) of every file in the model directory (for a LoRA
  adapter, also the base model's fingerprint); hub ids use the snapshot directory of the local Hugging Face
  cache. A model with no local files is scored without caching.
- Data fingerprint (alignlab.cache.data_fingerprint): sha256 of every example's index, token ids, labels and
  alpha/votes, plus the tokenization settings the caller passes (max_length, truncation, ...), so any change
  to the tokenized data is a miss.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from alignlab.assets import cache_dir, load_model, model_fingerprint, resolve_device
from alignlab.assets.loading import check_safetensors
from alignlab.assets.models import is_builtin
from alignlab.cache import content_key, data_fingerprint, write_atomically
from alignlab.diagnostics.votes import alphas_from_records, find_alpha_source
from alignlab.errors import AlignlabError
from alignlab.models import Trunk, packed_layout_problem, score_batches

# Bump when the engine changes what it computes for the same model and data, so old cache entries are not reused.
SCORES_VERSION = "3"  # 2: alpha per record (per-response votes of rankings); 3: packed rows where exact
SCORE_COLUMNS = ("index", "chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")
SCORE_PATHS = ("auto", "chunked", "logits")


@dataclass(frozen=True)
class PairScores:
    """Per-pair scores, all [N] CPU tensors in the order of the scored examples.

    index: int64, the example's record index; *_logps: float64 summed response log-probs (nats);
    *_lengths: int64 response token counts; alpha: float64 fraction of raters preferring chosen, or None when
    the data has neither 'alpha' nor 'votes'.
    """

    index: Tensor
    chosen_logps: Tensor
    rejected_logps: Tensor
    chosen_lengths: Tensor
    rejected_lengths: Tensor
    alpha: Tensor | None = None

    def __len__(self) -> int:
        return int(self.index.numel())

    def to_table(self) -> pa.Table:
        """A pyarrow table with SCORE_COLUMNS (+ alpha)."""
        columns = {
            "index": pa.array(self.index.numpy(), pa.int64()),
            "chosen_logps": pa.array(self.chosen_logps.numpy(), pa.float64()),
            "rejected_logps": pa.array(self.rejected_logps.numpy(), pa.float64()),
            "chosen_lengths": pa.array(self.chosen_lengths.numpy(), pa.int64()),
            "rejected_lengths": pa.array(self.rejected_lengths.numpy(), pa.int64()),
        }
        if self.alpha is not None:
            columns["alpha"] = pa.array(self.alpha.numpy(), pa.float64())
        return pa.table(columns)

    @classmethod
    def from_table(cls, table: pa.Table) -> PairScores:
        """Inverse of to_table."""
        missing = [name for name in SCORE_COLUMNS if name not in table.column_names]
        if missing:
            raise AlignlabError(
                f"score table has no column '{missing[0]}'; expected {', '.join(SCORE_COLUMNS)}"
            )

        def column(name: str, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.array(table.column(name).to_numpy(), dtype=np.float64)).to(dtype)

        alpha = column("alpha", torch.float64) if "alpha" in table.column_names else None
        return cls(
            column("index", torch.int64),
            column("chosen_logps", torch.float64),
            column("rejected_logps", torch.float64),
            column("chosen_lengths", torch.int64),
            column("rejected_lengths", torch.int64),
            alpha,
        )


def example_alphas(examples: Sequence[Mapping[str, Any]], *, dataset: str = "data") -> Tensor | None:
    """alpha per example (float64 [N]), each from its own 'alpha' / 'votes' fields (votes.alphas_from_records:
    NaN where a ranking pair's two responses got no vote), or None when no example has either.

    Raises DataError naming the first example without an alpha source when others have one.
    """
    if not any(find_alpha_source(k for k, v in example.items() if v is not None) for example in examples):
        return None
    return alphas_from_records(examples, dataset=dataset)


def _pad_id(model: torch.nn.Module) -> int:
    config = getattr(model, "config", None)
    for key in ("pad_token_id", "eos_token_id"):
        value = getattr(config, key, None)
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, int):
            return value
    return 0  # any id works: padding is neither scored nor attended by scored positions


@torch.no_grad()
def compute_pair_scores(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 16,
    chunk_size: int = 1024,
    path: str = "auto",
    device: torch.device | str | None = None,
    dataset: str = "data",
    packed: bool | str = "auto",
) -> PairScores:
    """Score tokenized preference examples (load_preference_data's dicts) with `model`, in its own dtype.

    Returns PairScores in the order of `examples`. batch_size counts pairs (2 * batch_size rows per forward);
    path: "chunked" (hidden states + output head, one token tile at a time), "logits" (the same head on full
    logits) or "auto" (chunked); both through alignlab.models.score_batches, exact for every head transform.
    packed: each pair's prompt once and no padding (alignlab.models.packing; the same values to rounding, about
    a third fewer positions on typical pairs) where packed rows are exact on the model (packed_layout_problem),
    else the padded rows; "auto" (default), True (a ConfigError where they are not exact) or False. The model is
    moved to `device` when one is given (default: where it is), and put in eval mode for the call (its previous
    mode is restored).
    """
    if path not in SCORE_PATHS:
        raise AlignlabError(f"scoring path must be one of {', '.join(SCORE_PATHS)}; got {path!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AlignlabError(f"batch size must be a positive integer; got {batch_size!r}")
    if not examples:
        raise AlignlabError(f"{dataset}: no preference pairs to score")
    if packed not in (True, False, "auto"):
        raise AlignlabError(f"packed must be True, False or 'auto'; got {packed!r}")
    alpha = example_alphas(examples, dataset=dataset)
    trunk = Trunk(model).to(device) if device is not None else Trunk(model)
    if packed == "auto":
        longest = max(len(e[k]) for e in examples for k in ("chosen_input_ids", "rejected_input_ids"))
        packed = packed_layout_problem(model, longest=longest) is None
    columns = score_batches(trunk, examples, pad_id=_pad_id(model), batch_size=batch_size,
                            chunked=path != "logits", chunk_size=chunk_size, prefix_sharing=packed, packing=packed)
    logps, lengths = columns["logps"], columns["tokens"]
    index = torch.tensor([int(e["index"]) for e in examples], dtype=torch.int64)
    return PairScores(index, logps[0], logps[1], lengths[0], lengths[1], alpha)


# ---------------------------------------------------------------------------------------------------------------
# fingerprints and the cache


def score_cache_path(
    model_fp: str, data_fp: str, *, dtype: str, root: str | os.PathLike | None = None
) -> Path:
    """Where the scores of (model, data, dtype) live: <root or cache_dir()/scores>/<key>.parquet."""
    key = content_key({"model": model_fp, "data": data_fp, "dtype": dtype, "version": SCORES_VERSION})
    base = Path(root) if root is not None else cache_dir() / "scores"
    return base / f"{key[:40]}.parquet"


def read_cached_scores(path: Path) -> PairScores | None:
    """The cached scores at `path`, or None when absent or unreadable (then they are recomputed)."""
    if not path.is_file():
        return None
    try:
        return PairScores.from_table(pq.read_table(path))
    except (OSError, pa.ArrowException, AlignlabError):
        return None


def write_cached_scores(path: Path, scores: PairScores, metadata: Mapping[str, Any]) -> Path:
    """Write `scores` to `path` atomically (alignlab.cache.write_atomically: temporary file, then rename)."""
    table = scores.to_table().replace_schema_metadata({"alignlab": json.dumps(dict(metadata), default=str)})
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp))


def load_scoring_model(
    name_or_path: str | os.PathLike, *, seed: int = 0, bf16: bool = False
) -> torch.nn.Module:
    """Load a model to score: built-in name, Hugging Face directory or id, or a LoRA adapter directory.

    An adapter directory (one with adapter_config.json) is loaded with peft's AutoPeftModelForCausalLM and merged
    into its base. bf16 loads the weights in bfloat16; otherwise float32.
    """
    name = os.fspath(name_or_path)
    dtype = torch.bfloat16 if bf16 else torch.float32
    if os.path.isfile(os.path.join(name, "adapter_config.json")):
        try:
            from peft import AutoPeftModelForCausalLM
        except ImportError:
            raise AlignlabError(
                f"'{name}' is a LoRA adapter directory and peft is not installed; pip install peft, or save the "
                "run with save_merged: true"
            ) from None
        check_safetensors(name)  # peft would fall back to a pickled adapter_model.bin
        try:
            model = AutoPeftModelForCausalLM.from_pretrained(name, dtype=dtype)
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise AlignlabError(f"cannot load LoRA adapter from '{name}': {first}") from exc
        return model.merge_and_unload()
    return load_model(name, seed=seed if is_builtin(name) else 0, dtype=dtype)


def score_model(
    name_or_path: str | os.PathLike,
    examples: Sequence[Mapping[str, Any]],
    *,
    seed: int = 0,
    bf16: bool = False,
    batch_size: int = 16,
    chunk_size: int = 1024,
    path: str = "auto",
    device: torch.device | str | None = None,
    data_settings: Mapping[str, Any] | None = None,
    cache: bool = True,
    cache_root: str | os.PathLike | None = None,
    dataset: str = "data",
) -> tuple[PairScores, Path | None]:
    """Scores of the model at `name_or_path` (seed: built-in weights) on `examples`, cached on disk.

    Returns (scores, cache file or None when not cached). On a cache hit the model is not loaded. data_settings
    (tokenizer, max_length, truncation, ...) join the token ids in the data fingerprint. device: default cuda
    when available, else cpu.
    """
    dtype = "bfloat16" if bf16 else "float32"
    target = None
    if cache:
        model_fp = model_fingerprint(name_or_path, seed=seed)
        if model_fp is not None:
            target = score_cache_path(
                model_fp, data_fingerprint(examples, data_settings), dtype=dtype, root=cache_root
            )
            hit = read_cached_scores(target)
            if hit is not None and len(hit) == len(examples):
                return hit, target
    model = load_scoring_model(name_or_path, seed=seed, bf16=bf16)
    device = resolve_device(device)
    model.to(device)
    scores = compute_pair_scores(
        model,
        examples,
        batch_size=batch_size,
        chunk_size=chunk_size,
        path=path,
        device=device,
        dataset=dataset,
    )
    del model
    if target is not None:
        metadata = {
            "model": os.fspath(name_or_path),
            "seed": seed,
            "dtype": dtype,
            "version": SCORES_VERSION,
            "data_settings": dict(data_settings or {}),
        }
        write_cached_scores(target, scores, metadata)
    return scores, target


__all__ = [
    "SCORES_VERSION",
    "SCORE_COLUMNS",
    "SCORE_PATHS",
    "PairScores",
    "compute_pair_scores",
    "data_fingerprint",
    "example_alphas",
    "load_scoring_model",
    "model_fingerprint",
    "read_cached_scores",
    "score_cache_path",
    "score_model",
    "write_cached_scores",
]
