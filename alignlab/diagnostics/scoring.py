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
- Model fingerprint: the resolved real path, the bytes of config.json / adapter_config.json, and the name, size
  and mtime (ns) of every file in the model directory (for a LoRA adapter, also the base model's fingerprint).
  Statting is O(1) in model size where hashing weights would read gigabytes; any rewrite of a weight file
  changes its mtime, and a copied model is merely a cache miss. Hub ids use the snapshot directory of the local
  Hugging Face cache (its path holds the commit hash); a model with no local files is scored without caching.
- Data fingerprint: sha256 of every example's index, token ids, labels and alpha/votes, plus the tokenization
  settings the caller passes (max_length, truncation, ...), so any change to the tokenized data is a miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import Tensor

from alignlab.assets import cache_dir, load_model, resolve
from alignlab.assets.models import is_builtin
from alignlab.diagnostics.votes import alphas_from_records, find_alpha_source
from alignlab.errors import AlignlabError
from alignlab.models import Trunk, score_batches

# Bump when the engine changes what it computes for the same model and data, so old cache entries are not reused.
SCORES_VERSION = "2"  # 2: alpha per record (per-response votes of rankings)
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
) -> PairScores:
    """Score tokenized preference examples (load_preference_data's dicts) with `model`, in its own dtype.

    Returns PairScores in the order of `examples`. batch_size counts pairs (2 * batch_size rows per forward);
    path: "chunked" (hidden states + output head, one token tile at a time), "logits" (the same head on full
    logits) or "auto" (chunked); both through alignlab.models.score_batches, exact for every head transform. The
    model is moved to `device` when one is given (default: where it is), and put in eval mode for the call (its
    previous mode is restored).
    """
    if path not in SCORE_PATHS:
        raise AlignlabError(f"scoring path must be one of {', '.join(SCORE_PATHS)}; got {path!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise AlignlabError(f"batch size must be a positive integer; got {batch_size!r}")
    if not examples:
        raise AlignlabError(f"{dataset}: no preference pairs to score")
    alpha = example_alphas(examples, dataset=dataset)
    trunk = Trunk(model).to(device) if device is not None else Trunk(model)
    columns = score_batches(trunk, examples, pad_id=_pad_id(model), batch_size=batch_size,
                            chunked=path != "logits", chunk_size=chunk_size)
    logps, lengths = columns["logps"], columns["tokens"]
    index = torch.tensor([int(e["index"]) for e in examples], dtype=torch.int64)
    return PairScores(index, logps[0], logps[1], lengths[0], lengths[1], alpha)


# ---------------------------------------------------------------------------------------------------------------
# fingerprints and the cache


def _sha256_json(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _dir_fingerprint(directory: Path, seen: set[str]) -> dict[str, Any]:
    real = os.path.realpath(directory)
    seen.add(real)
    files = []
    texts: dict[str, str] = {}
    for entry in sorted(os.scandir(real), key=lambda e: e.name):
        if not entry.is_file():
            continue
        stat = entry.stat()  # follows symlinks (Hugging Face snapshots link to blobs)
        files.append([entry.name, stat.st_size, stat.st_mtime_ns])
        if entry.name in ("config.json", "adapter_config.json"):
            texts[entry.name] = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
    payload: dict[str, Any] = {"path": real, "files": files, "configs": texts}
    adapter = Path(real) / "adapter_config.json"
    if adapter.is_file():
        try:
            base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError):
            base = None
        if base and os.path.isdir(base) and os.path.realpath(base) not in seen:
            payload["base"] = _dir_fingerprint(Path(base), seen)
        else:
            payload["base"] = base  # a hub id or a missing directory: only its name is known
    return payload


def model_fingerprint(name_or_path: str | os.PathLike, *, seed: int = 0) -> str | None:
    """sha256 identifying a model's weights (module docstring), or None when it has no local files.

    Built-in names resolve to their cached directory (whose name already holds the config and seed hash).
    """
    name = os.fspath(name_or_path)
    resolved = resolve(name, seed=seed if is_builtin(name) else 0)
    if os.path.isdir(resolved):
        return _sha256_json({"model": _dir_fingerprint(Path(resolved), set())})
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(resolved, "config.json")
    except ValueError:  # an invalid repo id (HFValidationError): not cacheable; loading reports the error
        cached = None
    if isinstance(cached, str):
        return _sha256_json({"hub": resolved, "model": _dir_fingerprint(Path(cached).parent, set())})
    return None


def data_fingerprint(examples: Sequence[Mapping[str, Any]], settings: Mapping[str, Any] | None = None) -> str:
    """sha256 of the tokenized examples (index, ids, labels, alpha, votes) and the tokenization settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(settings or {}), sort_keys=True, default=str).encode("utf-8"))
    for example in examples:
        digest.update(b"|%d|" % int(example["index"]))
        for key in ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"):
            values = np.asarray(example[key], dtype=np.int64)
            digest.update(b"%d:" % values.size)
            digest.update(values.tobytes())
        for key in ("alpha", "votes"):
            if key in example:
                digest.update(f"{key}={example[key]!r}".encode())
    return digest.hexdigest()


def score_cache_path(
    model_fp: str, data_fp: str, *, dtype: str, root: str | os.PathLike | None = None
) -> Path:
    """Where the scores of (model, data, dtype) live: <root or cache_dir()/scores>/<key>.parquet."""
    key = _sha256_json({"model": model_fp, "data": data_fp, "dtype": dtype, "version": SCORES_VERSION})
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
    """Write `scores` to `path` atomically (temporary file in the same directory, then rename)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlignlabError(
            f"cannot create score cache directory {path.parent}: {exc.strerror}; set ALIGNLAB_CACHE_DIR or "
            "pass another cache directory"
        ) from exc
    table = scores.to_table().replace_schema_metadata({"alignlab": json.dumps(dict(metadata), default=str)})
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


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
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
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
