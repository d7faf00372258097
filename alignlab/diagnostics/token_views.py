"""Per-token views of preference pairs: where in a response the policy moved away from the reference.

For every token of a pair's chosen and rejected response: the log-ratio to the reference
    log pi_theta(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)      (nats; > 0: the policy made the token likelier)
and the forward KL(pi_ref || pi_theta) (and the reverse) of the two next-token distributions at that position,
from `sequence_scores.score_tokens` (the training path; per sequence they add up to `alignlab score --ref`'s
fields). `alignlab report` draws them as HTML, `alignlab inspect` in the terminal; both colour a token by
`log_ratio_bin` of its log-ratio, so the two views agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from alignlab.errors import ConfigError, DataError

BINS = 10
"""Colour bins on each side of zero: a token's bin is round(clip(log_ratio / scale, -1, 1) * BINS)."""
_POSITIVE = (33, 102, 172)  # blue: the policy raised the token's probability
_NEGATIVE = (178, 24, 43)  # red: the policy lowered it
_MAX_ALPHA = 0.85


def color_scale(values: Iterable[float | None], quantile: float = 0.95, floor: float = 1e-3) -> float:
    """The |log-ratio| (nats) that gets the full colour: the `quantile` of |values| (None skipped), at least
    `floor`, so one extreme token does not wash out the rest."""
    magnitudes = [abs(v) for v in values if v is not None and math.isfinite(v)]
    if not magnitudes:
        return 1.0
    return max(float(np.quantile(magnitudes, quantile)), floor)


def log_ratio_bin(value: float, scale: float) -> int:
    """The colour bin of a log-ratio, an integer in [-BINS, BINS] (0: unchanged within scale / BINS / 2)."""
    if not math.isfinite(value):
        return BINS if value > 0 else -BINS
    return round(max(-1.0, min(1.0, value / scale)) * BINS)


def bin_rgb(bin_: int) -> tuple[int, int, int]:
    """The background colour of a bin: blue (> 0) or red (< 0), stronger with |bin|, blended on white."""
    base = _POSITIVE if bin_ > 0 else _NEGATIVE
    alpha = _MAX_ALPHA * min(abs(bin_), BINS) / BINS
    return tuple(round(255 + (c - 255) * alpha) for c in base)  # type: ignore[return-value]


@dataclass
class SequenceTokens:
    """One sequence (prompt + response) of a pair, token by token, aligned lists of len(token_ids).

    tokens: each token decoded alone (a character split across tokens shows as U+FFFD); prompt_length: the
    tokens before the first scored one (the prompt, greyed in the views). log_ratio, logps, ref_logps,
    kl_forward (KL(pi_ref || pi_theta)), kl_reverse (KL(pi_theta || pi_ref)): per token in nats, None on the
    prompt (and on any other unscored position).
    """

    token_ids: list[int]
    tokens: list[str]
    prompt_length: int
    logps: list[float | None]
    ref_logps: list[float | None]
    log_ratio: list[float | None]
    kl_forward: list[float | None]
    kl_reverse: list[float | None]

    def total(self, field: str) -> float:
        """The sum of a per-token field over the scored tokens (e.g. log_ratio: the sequence's log-ratio)."""
        return float(sum(v for v in getattr(self, field) if v is not None))


@dataclass
class PairTokens:
    """A pair's two sequences token by token; `why` it is shown ("most improved", "requested", ...), and its
    log-ratio margin (chosen's total log-ratio minus rejected's, nats: the DPO implicit reward margin / beta)."""

    index: int
    why: str
    chosen: SequenceTokens
    rejected: SequenceTokens

    @property
    def margin(self) -> float:
        """Chosen's total log-ratio minus rejected's (nats)."""
        return self.chosen.total("log_ratio") - self.rejected.total("log_ratio")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: index, why, margin and both sequences' fields."""
        return {"index": self.index, "why": self.why, "margin": self.margin, "chosen": asdict(self.chosen),
                "rejected": asdict(self.rejected)}


def _sequence(record: Mapping[str, Any], prefix: str, tokens: list[str]) -> SequenceTokens:
    labels = record[f"{prefix}labels"]
    logps, ref_logps = record[f"{prefix}token_logps"], record[f"{prefix}ref_token_logps"]
    ratio = [None if a is None or b is None else a - b for a, b in zip(logps, ref_logps)]
    first = next((t for t, label in enumerate(labels) if label != -100), len(labels))
    return SequenceTokens(list(record[f"{prefix}input_ids"]), tokens, first, list(logps), list(ref_logps), ratio,
                          list(record[f"{prefix}kl_forward"]), list(record[f"{prefix}kl_reverse"]))


def decode_tokens(tokenizer: Any, token_ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own (special tokens kept, so EOS shows)."""
    return tokenizer.batch_decode([[i] for i in token_ids], skip_special_tokens=False,
                                  clean_up_tokenization_spaces=False)


def pair_token_views(
    model: Any,
    ref_model: Any,
    tokenizer: Any,
    examples: Sequence[Mapping[str, Any]],
    *,
    why: Sequence[str] | None = None,
    chunk_size: int = 1024,
) -> list[PairTokens]:
    """PairTokens of tokenized preference pairs (load_preference_data's dicts) under `model` and `ref_model`
    (torch modules on one device), in input order; why[i] labels pair i (default "requested")."""
    from alignlab.diagnostics.sequence_scores import score_tokens

    records = score_tokens(model, ref_model, examples, chunk_size=chunk_size)
    reasons = list(why) if why is not None else ["requested"] * len(records)
    return [PairTokens(int(r["index"]), reason,
                       _sequence(r, "chosen_", decode_tokens(tokenizer, r["chosen_input_ids"])),
                       _sequence(r, "rejected_", decode_tokens(tokenizer, r["rejected_input_ids"])))
            for r, reason in zip(records, reasons)]


def find_examples(examples: Sequence[Mapping[str, Any]], indices: Sequence[int], *, source: str) -> list[Any]:
    """The examples whose record index is each of `indices` (in that order); DataError naming the first missing
    one (a record the data rules dropped has no example)."""
    by_index = {int(e["index"]): e for e in examples}
    missing = [i for i in indices if i not in by_index]
    if missing:
        known = f"indices {min(by_index)}..{max(by_index)}" if by_index else "no pairs"
        raise DataError(f"{source}: no pair with index {missing[0]} ({len(by_index)} pairs kept, {known}; a "
                        "record dropped by the data rules has no pair)")
    return [by_index[i] for i in indices]


@dataclass(frozen=True)
class TopToken:
    """One token of a pair, for the --top lists."""

    side: str
    position: int
    token: str
    log_ratio: float
    kl_forward: float
    logp: float
    ref_logp: float


def top_tokens(pair: PairTokens, k: int, *, by: str = "log_ratio") -> list[TopToken]:
    """The k response tokens of `pair` (both sides) with the largest |log-ratio| (by="log_ratio") or the largest
    forward KL (by="kl_forward"), largest first."""
    if by not in ("log_ratio", "kl_forward"):
        raise ValueError(f"by must be log_ratio or kl_forward, got {by!r}")
    rows = []
    for side in ("chosen", "rejected"):
        seq: SequenceTokens = getattr(pair, side)
        for t in range(len(seq.token_ids)):
            if seq.log_ratio[t] is None:
                continue
            rows.append(TopToken(side, t, seq.tokens[t], seq.log_ratio[t], seq.kl_forward[t], seq.logps[t],
                                 seq.ref_logps[t]))
    key = (lambda r: abs(r.log_ratio)) if by == "log_ratio" else (lambda r: r.kl_forward)
    return sorted(rows, key=key, reverse=True)[:k]


def inspect_pair(
    model: str,
    ref: str,
    data: str,
    index: int,
    *,
    tokenizer: str | None = None,
    spec: Any = None,
    device: str | None = None,
    bf16: bool = False,
) -> PairTokens:
    """`alignlab inspect`: load `model` and `ref` (built-in names, directories or hub ids), tokenize `data` as
    training does (`spec`: a DataSpec, default training's defaults) and return the pair with record index
    `index`, token by token."""
    from alignlab.assets import load_tokenizer, resolve_device
    from alignlab.data import DataSpec, load_preference_data
    from alignlab.diagnostics.scoring import load_scoring_model

    tok = load_tokenizer(tokenizer or model)
    # one --tokenizer serves both models; otherwise each brings its own and they must agree (as `alignlab score`)
    if tokenizer is None and load_tokenizer(ref).get_vocab() != tok.get_vocab():
        raise ConfigError(f"reference {ref}: its tokenizer differs from the model's; the log-ratios need one "
                          "vocabulary")
    examples, _ = load_preference_data(data, tok, spec or DataSpec())
    (example,) = find_examples(examples, [index], source=data)
    target = resolve_device(device)
    policy = load_scoring_model(model, bf16=bf16).to(target)
    reference = load_scoring_model(ref, bf16=bf16).to(target)
    return pair_token_views(policy, reference, tok, [example])[0]


__all__ = ["BINS", "PairTokens", "SequenceTokens", "TopToken", "bin_rgb", "color_scale", "decode_tokens",
           "find_examples", "inspect_pair", "log_ratio_bin", "pair_token_views", "top_tokens"]
