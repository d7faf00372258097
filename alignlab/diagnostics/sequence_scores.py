"""Per-record log-probs of a data set under a model (and a reference): what `alignlab score` writes.

Each record's sequences are scored by `alignlab.models.sequence_stats`, the code path of training: the same
tokenization (alignlab.data), the same collation ([chosen; rejected] stacked, right-padded), the same hidden
states and output head, one token tile at a time. A DPO step's `logps/chosen` is therefore the mean of
`chosen_logps` over the step's pairs, up to float rounding.

Fields, one dict per tokenized example, in input order (all log-probs in nats, summed over scored tokens):
- pairs: index, chosen_logps, rejected_logps, chosen_tokens, rejected_tokens (ranking records also `pair`,
  the (chosen, rejected) response positions; a response cut by max_length also `eos_dropped: true`);
  with a reference: ref_chosen_logps, ref_rejected_logps, and per sequence the forward KL
  sum_t KL(pi_ref || pi_theta) (chosen_kl_forward, rejected_kl_forward) and the reverse KL
  sum_t KL(pi_theta || pi_ref) (chosen_kl_reverse, rejected_kl_reverse);
  with token ids: chosen_input_ids, chosen_labels, rejected_input_ids, rejected_labels.
- single responses (SFT formats): index, logps, tokens; with a reference ref_logps, kl_forward, kl_reverse;
  with token ids input_ids, labels.
Records that the data rules drop (an empty response, `response_truncation: drop_example`) have no line; the data
report counts them.

Per token (`score_tokens`, behind `alignlab report` and `alignlab inspect`): each sequence's scored positions as
rows of their own, through the same `sequence_stats`: a row keeps one label and the sequence's hidden states are
computed once and shared by its rows (`_SharedRows`), so each row's "sum" is that token's value and the values of
a sequence add up to its `alignlab score` fields (up to float rounding). Labels are aligned with input_ids in the Hugging Face convention (-100 where not scored): token t is scored by
the logits at position t - 1, so `log_softmax(model(input_ids).logits)` recomputes every score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch

from alignlab.assets import load_tokenizer, resolve_device
from alignlab.data import (
    PREFERENCE_FORMATS,
    DataReport,
    DataSpec,
    load_preference_data,
    load_sft_data,
    normalize_records,
    padding_id,
    read_records,
)
from alignlab.diagnostics.scoring import load_scoring_model
from alignlab.errors import AlignlabError, ConfigError
from alignlab.models import Trunk, is_paired, score_batches, sequence_stats

DTYPES = ("float32", "bfloat16")
MIXED_PRECISIONS = ("no", "bf16")


def _check_sizes(batch_size: int, chunk_size: int) -> None:
    for name, value in (("batch size", batch_size), ("chunk size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer; got {value!r}")


@torch.no_grad()
def score_examples(
    model: torch.nn.Module,
    examples: Sequence[Mapping[str, Any]],
    *,
    pad_id: int,
    ref_model: torch.nn.Module | None = None,
    token_ids: bool = False,
    batch_size: int = 8,
    chunk_size: int = 1024,
) -> list[dict[str, Any]]:
    """Score tokenized examples (alignlab.data's pair or SFT dicts) under `model`; one record each, input order.

    batch_size counts examples (a pair is two rows of one forward); models run in eval mode (restored after).
    Fields in the module docstring.
    """
    _check_sizes(batch_size, chunk_size)
    if not examples:
        raise AlignlabError("no examples to score")
    ref = Trunk(ref_model) if ref_model is not None else None
    columns = score_batches(Trunk(model), examples, pad_id=pad_id, ref=ref, batch_size=batch_size,
                            chunk_size=chunk_size, kl=ref is not None)
    values = {name: column.tolist() for name, column in columns.items()}
    paired = is_paired(examples)
    return [_record(example, values, i, paired, ref is not None, token_ids) for i, example in enumerate(examples)]


def _record(example: Mapping[str, Any], values: dict[str, list], i: int, paired: bool, has_ref: bool,
            token_ids: bool) -> dict[str, Any]:
    """The output record of example i; values[name][side][i] from score_batches."""
    out: dict[str, Any] = {"index": int(example["index"])}
    if "pair" in example:
        out["pair"] = list(example["pair"])
    if example.get("eos_dropped"):
        out["eos_dropped"] = True  # a response cut by max_length: scored without its EOS
    sides = (("chosen_", 0), ("rejected_", 1)) if paired else (("", 0),)
    for prefix, side in sides:
        out[f"{prefix}logps"] = values["logps"][side][i]
    for prefix, side in sides:
        out[f"{prefix}tokens"] = values["tokens"][side][i]
    if has_ref:
        for prefix, side in sides:
            out[f"ref_{prefix}logps"] = values["ref_logps"][side][i]
        for prefix, side in sides:
            out[f"{prefix}kl_forward"] = values["kl_forward"][side][i]
            out[f"{prefix}kl_reverse"] = values["kl_reverse"][side][i]
    if token_ids:
        for prefix, _ in sides:
            out[f"{prefix}input_ids"] = list(example[f"{prefix}input_ids"])
            out[f"{prefix}labels"] = list(example[f"{prefix}labels"])
    return out


class _SharedRows(Trunk):
    """A Trunk for a batch whose rows are copies of one sequence (they differ only in their labels): the model
    runs the first row once and every row gets its hidden states (a view; the ops then read only the scored
    position of each row)."""

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        if input_ids is None or attention_mask is None or kwargs.get("inputs_embeds") is not None:
            raise ValueError("_SharedRows takes input_ids and a 2D attention_mask")
        hidden = super().forward(input_ids=input_ids[:1], attention_mask=attention_mask[:1])
        return hidden.expand(input_ids.shape[0], *hidden.shape[1:])


TOKEN_FIELDS = ("token_logps", "ref_token_logps", "kl_forward", "kl_reverse")


def _sequence_tokens(policy: Trunk, ref: Trunk, input_ids: Sequence[int], labels: Sequence[int],
                     chunk_size: int) -> dict[str, list[float | None]]:
    """TOKEN_FIELDS of one sequence, aligned with input_ids: the value of token t (scored by the logits at t - 1),
    None where labels[t] is -100."""
    positions = [t for t, label in enumerate(labels) if label != -100]
    out: dict[str, list[float | None]] = {name: [None] * len(input_ids) for name in TOKEN_FIELDS}
    if not positions:
        return out
    device = next(policy.parameters()).device
    rows, length = len(positions), len(input_ids)
    ids = torch.tensor([list(input_ids)], device=device).expand(rows, length)
    row_labels = torch.full((rows, length), -100, dtype=torch.long, device=device)
    index = torch.tensor(positions, device=device)
    row_labels[torch.arange(rows, device=device), index] = torch.tensor([labels[t] for t in positions],
                                                                       device=device)
    stats = sequence_stats(policy, ids, torch.ones_like(ids), row_labels, ref=ref, chunk_size=chunk_size, kl=True,
                           reverse_kl=True)
    values = {"token_logps": stats.logps, "ref_token_logps": stats.ref_logps, "kl_forward": stats.kl,
              "kl_reverse": stats.reverse_kl}
    for name, column in values.items():
        for t, value in zip(positions, column.double().cpu().tolist()):
            out[name][t] = value
    return out


@torch.no_grad()
def score_tokens(
    model: torch.nn.Module,
    ref_model: torch.nn.Module,
    examples: Sequence[Mapping[str, Any]],
    *,
    chunk_size: int = 1024,
) -> list[dict[str, Any]]:
    """Per-token scores of tokenized examples under `model` and `ref_model`; one record each, input order.

    Each record: index, and per sequence (chosen_ / rejected_ prefixes for pairs, none for single responses)
    input_ids, labels and, aligned with input_ids (None where a position is not scored), token_logps
    log pi(y_t | y_<t), ref_token_logps, kl_forward KL(pi_ref || pi_theta) and kl_reverse KL(pi_theta || pi_ref)
    at the position that predicts token t, in nats. Their sums over a sequence are `score_examples`' logps,
    ref_logps, kl_forward and kl_reverse. One forward per sequence and model; models run in eval mode (restored).
    """
    _check_sizes(1, chunk_size)
    if not examples:
        raise AlignlabError("no examples to score")
    policy, ref = _SharedRows(model), _SharedRows(ref_model)
    prefixes = ("chosen_", "rejected_") if is_paired(examples) else ("",)
    modes = [(m, m.training) for m in (model, ref_model)]
    for m, _ in modes:
        m.eval()
    try:
        records = []
        for example in examples:
            record: dict[str, Any] = {"index": int(example["index"])}
            for prefix in prefixes:
                ids, labels = list(example[f"{prefix}input_ids"]), list(example[f"{prefix}labels"])
                record[f"{prefix}input_ids"], record[f"{prefix}labels"] = ids, labels
                for name, values in _sequence_tokens(policy, ref, ids, labels, chunk_size).items():
                    record[f"{prefix}{name}"] = values
            records.append(record)
    finally:
        for m, mode in modes:
            m.train(mode)
    return records


def data_is_paired(source: str, *, split: str = "train", format: str = "auto") -> bool:
    """Whether a data source holds preference pairs (or rankings) rather than single responses (SFT formats),
    from its format (given, or detected on its first records as training does)."""
    if format != "auto":
        return format in PREFERENCE_FORMATS
    records, _ = read_records(source, split=split, limit=64)
    return normalize_records(records, format=format, task="sft").format in PREFERENCE_FORMATS


def score_data(
    model: str,
    data: str,
    *,
    ref: str | None = None,
    tokenizer: str | None = None,
    spec: DataSpec | None = None,
    dtype: str = "float32",
    mixed_precision: str = "no",
    device: str | None = None,
    token_ids: bool = False,
    batch_size: int = 8,
    chunk_size: int = 1024,
) -> tuple[list[dict[str, Any]], DataReport]:
    """`alignlab score`: load the model (and reference), tokenize `data` as training does and score every example.

    model / ref: built-in name, Hugging Face directory or id, or LoRA adapter directory; tokenizer defaults to the
    model's; ``spec`` reads and tokenizes ``data`` as training does (default: training's defaults); dtype float32 or bfloat16 weights;
    mixed_precision "bf16" scores under bf16 autocast as a `mixed_precision: bf16` run trains; device defaults to
    cuda when available. Returns (records, data report): examples dropped by the data rules are counted there.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    if mixed_precision not in MIXED_PRECISIONS:
        raise ConfigError(f"mixed precision must be one of {', '.join(MIXED_PRECISIONS)}, got '{mixed_precision}'")
    _check_sizes(batch_size, chunk_size)  # before any model loads
    tok = load_tokenizer(tokenizer or model)
    # one --tokenizer serves both models; otherwise each brings its own and they must agree
    if ref is not None and tokenizer is None and load_tokenizer(ref).get_vocab() != tok.get_vocab():
        raise ConfigError(f"reference {ref}: its tokenizer differs from the model's; the KL needs one vocabulary")
    spec = spec or DataSpec()
    if data_is_paired(data, split=spec.split, format=spec.format):
        if spec.sft_turns != "all":
            raise ConfigError(f"sft_turns applies to single-response (messages) data; {data} holds pairs")
        examples, report = load_preference_data(data, tok, spec)
    else:
        examples, report = load_sft_data(data, tok, spec)
    target = resolve_device(device)
    bf16 = dtype == "bfloat16"
    policy = load_scoring_model(model, bf16=bf16).to(target)
    ref_model = load_scoring_model(ref, bf16=bf16).to(target) if ref is not None else None
    autocast = torch.autocast(target.type, dtype=torch.bfloat16) if mixed_precision == "bf16" else nullcontext()
    with autocast:
        records = score_examples(policy, examples, pad_id=padding_id(tok), ref_model=ref_model,
                                 token_ids=token_ids, batch_size=batch_size, chunk_size=chunk_size)
    return records, report


__all__ = ["DTYPES", "MIXED_PRECISIONS", "TOKEN_FIELDS", "data_is_paired", "score_data", "score_examples",
           "score_tokens"]
