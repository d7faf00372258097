"""Sampling completions from a policy, scored by a separate teacher-forced pass (TDPO controlled-sentiment
protocol, Zeng et al. 2024, arXiv 2404.11999, Sec. 5).

Sampling. Prompts are used verbatim (no chat template), tokenized as training sequences start (with the BOS
the tokenizer adds by default, without a default EOS suffix), and left-padded per batch; Hugging Face `generate` runs with the KV cache and derives position ids from the
attention mask. Each generated sequence ("row") is one (prompt_index, sample_index) pair and owns a CPU
`torch.Generator` seeded from (seed, prompt_index, sample_index). A token is drawn as
    argmax_v (z_v / T + G_v),   G_v ~ Gumbel(0, 1) from the row's generator,
after top-k / top-p filtering of z / T (filtered tokens get -inf), which is an exact sample from the filtered
softmax(z / T) (the Gumbel-max trick). `temperature=0` is greedy decoding. The model's own generation config
(repetition penalties, bad words, its top_k=50 default, ...) is not applied: with temperature 1, top_p 1 and
top_k 0, samples come from pi_theta itself, which the KL estimates below assume.

Determinism. The global torch RNG is neither used nor advanced. Same model, prompts, options, seed and
device give identical records. A row's randomness depends only on (seed, prompt_index, sample_index), so the
token ids do not depend on batch_size or on the prompts after it; they can differ only where the
floating-point differences between batch shapes flip a token (not seen with fp32 on CPU), and the float
statistics agree up to rounding.

Stopping. A row stops at its first EOS: the tokenizer's eos_token_id and any eos id in the model's generation
config. `completion_ids` keeps that EOS (it is a generated, scored position, as in training); `completion` is
the decoded text without it. Padding after EOS is never part of a record or of any statistic.

Scoring. Each row's prompt + completion_ids is run again through the policy (and `ref_model`) with labels
-100 on the prompt and padding; the statistics come from `alignlab.models.sequence_stats` (the training path,
exact for every output-head transform) over the completion positions t, all in nats:
  logp       = sum_t log pi_theta(y_t | x, y_<t)        (temperature-free; not generate's processed scores)
  ref_logp   = sum_t log pi_ref(y_t | x, y_<t)
  kl_sample  = sum_t [log pi_theta(y_t) - log pi_ref(y_t)]   single-sample estimate of the reverse SeqKL
                                                             (unbiased only for samples from pi_theta)
  kl_forward = sum_t KL(pi_ref(.|s_t) || pi_theta(.|s_t))    exact over the vocabulary (TDPO's SeqKL)
  kl_reverse = sum_t KL(pi_theta(.|s_t) || pi_ref(.|s_t))    exact over the vocabulary (the frontier's x-axis)
  entropy    = mean_t H(pi_theta(.|s_t))                     the policy's predictive entropy per token
The ref model must share the tokenizer's vocabulary.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from alignlab.assets import load_model, load_tokenizer, resolve_device
from alignlab.cache import write_jsonl_atomically
from alignlab.data import read_records
from alignlab.data.tokenization import encode_prompt
from alignlab.errors import AlignlabError, ConfigError, DataError
from alignlab.models import Trunk, sequence_stats

IGNORE_INDEX = -100
TEXT_SUFFIXES = (".txt",)


# ----------------------------------------------------------------------------------------------- sampling


def row_generator(seed: int, prompt_index: int, sample_index: int) -> torch.Generator:
    """The CPU generator of one row, seeded from (seed, prompt_index, sample_index) through numpy's
    SeedSequence (well-mixed, so neighbouring seeds or indices give unrelated streams)."""
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class GumbelSampler(LogitsProcessor):
    """Adds Gumbel(0, 1) noise from one generator per row, so that argmax samples from softmax(scores).

    scores [rows, V] (already temperature-scaled and filtered; -inf stays -inf) -> perturbed scores [rows, V]
    in float64. The noise is drawn on the CPU, so a row's noise is the same on every device.
    """

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = list(generators)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if scores.shape[0] != len(self.generators):
            raise RuntimeError(
                f"GumbelSampler has {len(self.generators)} generators for {scores.shape[0]} rows"
            )
        vocab = scores.shape[-1]
        # u in [0, 1): u = 0 gives -inf (never chosen), the largest u gives a finite value.
        u = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(u))
        return scores.double() + gumbel.to(scores.device)


def _processors(
    temperature: float, top_k: int, top_p: float, generators: Sequence[torch.Generator]
) -> LogitsProcessorList:
    if temperature == 0:
        return LogitsProcessorList()  # greedy: plain argmax of the logits
    processors: list[LogitsProcessor] = []
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        processors.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    processors.append(GumbelSampler(generators))
    return LogitsProcessorList(processors)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextlib.contextmanager
def _eval_mode(*models: torch.nn.Module | None) -> Iterator[None]:
    present = [m for m in models if m is not None]
    modes = [m.training for m in present]
    for m in present:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(present, modes):
            m.train(mode)


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in config_eos if isinstance(config_eos, (list, tuple)) else [config_eos]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if not ids:
        raise AlignlabError(
            "the tokenizer has no eos_token and the model's generation config names none; set one"
        )
    return ids


def _left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


def _sample_batch(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    generators: Sequence[torch.Generator],
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    bos_id: int | None,
) -> list[list[int]]:
    """Completion ids per row (up to and including the first EOS) from one batched `generate` call."""
    input_ids, attention_mask = _left_pad(prompt_ids, pad_id, _device(model))
    config = GenerationConfig(
        do_sample=False,  # sampling happens through GumbelSampler's per-row noise, then argmax
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        use_cache=True,
    )
    saved = getattr(model, "generation_config", None)
    # generate() fills unset fields from model.generation_config; a bare one keeps the model's own processors
    # (repetition penalty, bad words, ...) out of the sampling distribution.
    model.generation_config = GenerationConfig(eos_token_id=eos_ids, pad_token_id=pad_id, bos_token_id=bos_id)
    try:
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            logits_processor=_processors(temperature, top_k, top_p, generators),
        )
    finally:
        model.generation_config = saved
    generated = out[:, input_ids.shape[1] :].tolist()
    eos = set(eos_ids)
    completions = []
    for row in generated:
        end = next((t + 1 for t, token in enumerate(row) if token in eos), len(row))
        completions.append(row[:end])
    return completions


# ----------------------------------------------------------------------------------------------- scoring


def _score_inputs(
    prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded input_ids, attention_mask and labels [rows, T]; labels are -100 on prompt and padding."""
    width = max(len(p) + len(c) for p, c in zip(prompt_ids, completion_ids))
    rows = len(prompt_ids)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.long)
    labels = torch.full((rows, width), IGNORE_INDEX, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        n = len(p) + len(c)
        ids[i, :n] = torch.tensor(list(p) + list(c), dtype=torch.long)
        mask[i, :n] = 1
        labels[i, len(p) : n] = torch.tensor(list(c), dtype=torch.long)
    return ids, mask, labels


@torch.no_grad()
def score_completions(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    ref_model: torch.nn.Module | None = None,
) -> dict[str, list[float]]:
    """Teacher-forced statistics of [rows] completions in one batch (definitions in the module docstring).

    Returns lists of length rows: logp, entropy, and with ref_model also ref_logp, kl_sample, kl_forward,
    kl_reverse. Computed by alignlab.models.sequence_stats (the training path: hidden states and the model's
    output head with its transform, one token tile at a time), so no [rows, T, V] logits are held.
    """
    ids, mask, labels = _score_inputs(prompt_ids, completion_ids, pad_id)
    device = _device(model)
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    ref = None
    if ref_model is not None:
        ref = Trunk(ref_model)
    out = sequence_stats(Trunk(model), ids, mask, labels, ref=ref, kl=ref is not None,
                         reverse_kl=ref is not None, entropy=True)
    stats: dict[str, Tensor] = {"logp": out.logps, "entropy": out.entropy / out.lengths.clamp(min=1)}
    if ref is not None:
        stats["ref_logp"] = out.ref_logps
        stats["kl_sample"] = out.logps - out.ref_logps
        stats["kl_forward"] = out.kl
        stats["kl_reverse"] = out.reverse_kl
    return {name: value.double().cpu().tolist() for name, value in stats.items()}


# ----------------------------------------------------------------------------------------------- generate


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_sampling_options(
    n: Any, temperature: Any, top_p: Any, top_k: Any, max_new_tokens: Any, seed: Any, batch_size: Any
) -> None:
    """Raise ConfigError for the first invalid sampling option (``generate`` runs it; the CLI runs it before
    loading anything, so a typo fails at once rather than after the model loads)."""
    _check_int("n", n, 1)
    _check_int("max_new_tokens", max_new_tokens, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, 0)
    _check_int("top_k", top_k, 0)
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not (math.isfinite(temperature) and temperature >= 0)
    ):
        raise ConfigError(f"temperature must be a finite number >= 0 (0 is greedy), got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}")


def _encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise AlignlabError("prompts must be a list of strings")
    if not prompts:
        raise AlignlabError("prompts is empty; nothing to generate")
    encoded = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise AlignlabError(f"prompt {i} is a {type(prompt).__name__}, not a string")
        ids = encode_prompt(tokenizer, prompt)
        if not ids:
            raise AlignlabError(
                f"prompt {i} is empty after tokenization; generation needs at least one prompt token"
            )
        encoded.append(list(ids))
    return encoded


def generate(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    n: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 48,
    seed: int = 0,
    batch_size: int = 16,
    ref_model: torch.nn.Module | None = None,
    score: bool = True,
) -> list[dict[str, Any]]:
    """Sample n completions per prompt and score them; one record per (prompt, sample), prompt-major order.

    temperature: 0 is greedy (the n samples are then identical); top_k: 0 disables it; top_p: 1 disables it.
    batch_size: rows (sequences) per generate call and per scoring forward; it bounds the [rows, T, V] logits.
    Each record: prompt_index, sample_index, prompt, prompt_ids (the ids the model continued), completion
    (text, no EOS), completion_ids (with the EOS
    when one was generated), num_tokens (= len(completion_ids), the scored positions), finished (ended with
    EOS), logp, entropy, and with ref_model: ref_logp, kl_sample, kl_forward, kl_reverse (module docstring).
    score=False skips the teacher-forced pass (no statistics; ref_model is then not allowed): for callers that
    need only the samples. Models are put in eval mode for the call and restored afterwards.
    """
    check_sampling_options(n, temperature, top_p, top_k, max_new_tokens, seed, batch_size)
    if ref_model is not None and not score:
        raise ConfigError("ref_model is only used to score the samples; it needs score=True")
    prompt_ids = _encode_prompts(tokenizer, prompts)
    eos_ids = _eos_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    rows = [(i, s) for i in range(len(prompts)) for s in range(n)]
    records: list[dict[str, Any]] = []
    with _eval_mode(model, ref_model), torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            batch_prompts = [prompt_ids[i] for i, _ in batch]
            completions = _sample_batch(
                model,
                batch_prompts,
                [row_generator(seed, i, s) for i, s in batch],
                temperature=float(temperature),
                top_k=top_k,
                top_p=float(top_p),
                max_new_tokens=max_new_tokens,
                eos_ids=eos_ids,
                pad_id=pad_id,
                bos_id=tokenizer.bos_token_id,
            )
            stats = (score_completions(model, batch_prompts, completions, pad_id=pad_id, ref_model=ref_model)
                     if score else {})
            for k, ((i, s), ids) in enumerate(zip(batch, completions)):
                finished = bool(ids) and ids[-1] in eos_ids
                text_ids = ids[:-1] if finished else ids
                record: dict[str, Any] = {
                    "prompt_index": i,
                    "sample_index": s,
                    "prompt": prompts[i],
                    "prompt_ids": prompt_ids[i],
                    "completion": tokenizer.decode(
                        text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
                    ),
                    "completion_ids": ids,
                    "num_tokens": len(ids),
                    "finished": finished,
                }
                record.update({name: values[k] for name, values in stats.items()})
                records.append(record)
    return records


# ------------------------------------------------------------------------------------------ prompts + CLI


def _text_prompts(path: Path) -> list[str]:
    """One prompt per line; the line ending is removed, other whitespace kept, empty lines skipped."""
    prompts = []
    for lineno, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path} line {lineno}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})"
            ) from e
        text = text.removesuffix("\r")
        if text:
            prompts.append(text)
    return prompts


def load_prompts(
    source: str | Path, *, column: str = "prompt", split: str | None = None, limit: int | None = None
) -> list[str]:
    """Prompts from a .txt file (one per line), a .jsonl/.json/.parquet file, a directory or a datasets name.

    Record sources go through `alignlab.data.read_records`; `column` names the field holding the prompt, which
    must be a non-empty string. `split` (None means "train") selects a split where the source has several;
    `limit` keeps the first prompts. Bad input raises a one-line AlignlabError naming file, line and field.
    """
    if limit is not None:
        _check_int("limit", limit, 0)
    path = Path(source)
    if path.suffix.lower() in TEXT_SUFFIXES:
        if not path.is_file():
            raise DataError(f"{source}: file not found")
        if split not in (None, "train", path.stem):
            raise ConfigError(f"{source}: a text file is one split, so split='{split}' cannot be selected")
        prompts = _text_prompts(path)
        if not prompts:
            raise DataError(f"{source}: no prompts (every line is empty)")
        return prompts if limit is None else prompts[:limit]
    records, errors = read_records(source, split=split or "train", limit=limit)
    if errors:
        more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
        raise DataError(f"{errors[0]}{more}")
    if not records:
        raise DataError(f"{source}: no records")
    prompts = []
    for record in records:
        if column not in record.data:
            available = ", ".join(sorted(map(str, record.data))) or "none"
            raise DataError(
                f"{record.where}: field '{column}' is missing (fields: {available}; use --prompt-column)"
            )
        value = record.data[column]
        if not isinstance(value, str) or not value:
            kind = "empty" if value == "" else f"a {type(value).__name__}, not a string"
            raise DataError(f"{record.where}: field '{column}' is {kind}")
        prompts.append(value)
    return prompts


def write_jsonl(records: Sequence[dict[str, Any]], out: str | Path) -> None:
    """Write records as JSONL atomically (alignlab.cache.write_jsonl_atomically), so an interrupted run leaves
    either the old file or the complete new one."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; --out takes a file name")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: output directory does not exist")
    write_jsonl_atomically(out, records)


def generate_from_names(
    model: str,
    prompts: Sequence[str],
    *,
    ref: str | None = None,
    n: int = 4,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 48,
    seed: int = 0,
    batch_size: int = 16,
    device: str | None = None,
    dtype: str | None = None,
) -> list[dict[str, Any]]:
    """`generate` with the policy (and reference) loaded by name: a built-in name, a directory or a hub id.

    Loads onto ``device`` (default: cuda if available, else cpu) in ``dtype``; the reference must share the
    policy's tokenizer vocabulary (the KL fields compare the two distributions token by token).
    """
    torch_device = resolve_device(device)
    tokenizer = load_tokenizer(model)
    policy = load_model(model, dtype=dtype).to(torch_device)
    ref_model = None
    if ref is not None:
        if load_tokenizer(ref).get_vocab() != tokenizer.get_vocab():
            raise ConfigError(
                f"--ref {ref}: its tokenizer differs from --model's; KL needs a shared vocabulary"
            )
        ref_model = load_model(ref, dtype=dtype).to(torch_device)
    return generate(
        policy,
        tokenizer,
        prompts,
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        ref_model=ref_model,
    )


__all__ = [
    "GumbelSampler",
    "check_sampling_options",
    "generate",
    "generate_from_names",
    "load_prompts",
    "row_generator",
    "score_completions",
    "write_jsonl",
]
