"""Tokenization: validated items -> token ids and labels, with the prompt/response boundary exact by
construction.

The rule (the convention of the DPO and TDPO reference code, "separate tokenization"):

1. Render each example once into text segments with a trained flag: the prompt (for chat data, the rendered
   prompt messages plus the assistant generation header) is untrained; a response is trained. In multi-turn
   messages, template headers and non-assistant turns are untrained, assistant content and its end-of-turn
   marker are trained (``alignlab.data.chat``).
2. Encode every segment on its own with ``add_special_tokens=False`` and concatenate the ids. The prompt ids
   are therefore an exact prefix of prompt + response ids, chosen and rejected share the same prompt ids, and
   no prompt token is ever scored.
3. Start every sequence as the tokenizer starts one: the ids that ``tokenizer(text)`` puts before the text by
   default (its "prefix": one BOS for Llama, Gemma, Mistral; none for GPT-2, Qwen2 and alignlab's own
   tokenizer) are prepended to the prompt ids, less those the prompt already starts with, so a chat template
   that renders ``{{ bos_token }}`` (Llama-3, Gemma) gets no second BOS. The prefix belongs to the prompt: it
   is in ``prompt_input_ids``, labelled -100 and never scored; a sequence with no untrained lead (SFT
   ``text``) gets a prompt made of the prefix alone. Where the tokenizer adds nothing but the rendered text
   starts with its BOS (a template's), that BOS is the sequence start in the same way. The prefix is found
   once per tokenizer object by encoding a probe string with and without special tokens
   (``default_special_ids``).
4. Append EOS to a sequence that ends with a trained segment, unless its last id already is EOS. What the
   tokenizer appends by default (an EOS for some) is not added on top: a sequence ends with at most one EOS.
5. labels = the id on trained tokens (EOS included), -100 elsewhere (collation pads labels with -100 too).

The joint encoding enc(prompt + response) can differ from enc(prompt) + enc(response) where a BPE merge spans
the boundary (e.g. a prompt ending in "Assistant: " and a response "Hello": jointly "Ġ" + "Hello" may become
"ĠHello"). alignlab does NOT switch to the joint encoding: it keeps the separate one, so the trained span is
exact and identical for training, reference log-probs and ranking, and it counts each kept example where
any boundary would merge in ``DataReport.n_boundary_merges``. Generation from the prompt ids reproduces the
training tokenization; text that is re-tokenized jointly may not, and the count says how often.

Pre-tokenized pairs (format ``tokenized``) skip steps 1-4: the sequence is their prompt ids followed by a
response's ids exactly as given (nothing prepended or appended, no merge to count), every response id is
trained, and an id outside the tokenizer is a DataError naming the record and field. Truncation applies to them
as to any pair; the tokenizer's prefix ids the prompt starts with count as its protected start.

Truncation (the DPO reference code's rule, eric-mitchell/direct-preference-optimization), with L = len(prompt) + max(len(chosen), len(rejected))
counted in tokens including the prefix (BOS) and EOS:
- if L > max_length, cut the prompt to max_prompt_length tokens, the prefix included and always kept: keep
  the prefix and the end of the rest (``keep_end``, the default: the latest turns and the generation header
  survive) or the start (``keep_start``); max_prompt_length below the prefix length is a ConfigError;
- if still too long: ``response_truncation="truncate"`` cuts each response at the end to max_length -
  len(prompt) tokens (its EOS is lost: ``eos_dropped``); ``"drop_example"`` drops the example.
- an example left with no trained response token is dropped (``n_dropped_empty``). SFT examples follow the
  same rule with the single sequence as the response; unpaired (KTO) examples with their one completion as
  the response, L = len(prompt) + len(completion).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from alignlab.data.chat import Segment, chat_segments, merge_segments, render_messages
from alignlab.data.formats import PreferenceItem, SFTItem, UnpairedItem
from alignlab.data.report import DataReport
from alignlab.data.spec import DataSpec
from alignlab.errors import ConfigError, DataError

IGNORE_INDEX = -100
# Plain words every vocabulary encodes to at least one id, with no special-token text in them.
_PROBE = "Hello world"


def eos_token_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token; alignlab appends EOS to every response")
    return int(eos)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (special-token strings in the text still map to
    ids)."""
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


@dataclass(frozen=True)
class DefaultSpecialIds:
    """What ``tokenizer(text)`` adds around the ids of ``text`` by default: ``prefix`` (e.g. ``(bos,)``) and
    ``suffix`` (e.g. ``(eos,)``); both empty for a tokenizer that adds nothing."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]


# One detection per tokenizer object; weak keys so a cached tokenizer can still be freed.
_SPECIALS: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, Any], DefaultSpecialIds]] = (
    weakref.WeakKeyDictionary()
)


def default_special_ids(tokenizer: Any) -> DefaultSpecialIds:
    """The ids the tokenizer adds by default before and after a text, from one probe encoded with and without
    special tokens; cached per tokenizer object (re-probed if its ``add_bos_token`` / ``add_eos_token``
    setting changes). Raises ConfigError if the plain ids are not a contiguous part of the default ones."""
    state = (getattr(tokenizer, "add_bos_token", None), getattr(tokenizer, "add_eos_token", None))
    try:
        cached = _SPECIALS.get(tokenizer)
    except TypeError:  # not weak-referenceable or unhashable: probe again (once per tokenize call)
        cached = None
    if cached is not None and cached[0] == state:
        return cached[1]
    plain = list(tokenizer.encode(_PROBE, add_special_tokens=False))
    full = list(tokenizer.encode(_PROBE))
    n = len(plain)
    # the first place the plain ids occur; a suffix-only tokenizer (text + EOS) matches at 0
    start = next((i for i in range(len(full) - n + 1) if full[i : i + n] == plain), None)
    if not plain or start is None:
        raise ConfigError(
            f"the tokenizer encodes {_PROBE!r} as {full} by default and {plain} without special tokens; "
            "alignlab cannot tell which special tokens it adds (expected the second inside the first)"
        )
    specials = DefaultSpecialIds(prefix=tuple(full[:start]), suffix=tuple(full[start + n :]))
    try:
        _SPECIALS[tokenizer] = (state, specials)
    except TypeError:
        pass
    return specials


class _Encoder:
    """Encodes segment lists, starts sequences with the tokenizer's prefix and detects boundary merges; one per
    tokenizer."""

    def __init__(self, tokenizer: Any, max_prompt_length: int):
        self.tokenizer = tokenizer
        self.eos = eos_token_id(tokenizer)
        self.bos = getattr(tokenizer, "bos_token_id", None)
        self.prefix = list(default_special_ids(tokenizer).prefix)
        if len(self.prefix) > max_prompt_length:
            raise ConfigError(
                f"max_prompt_length={max_prompt_length} cannot hold the {len(self.prefix)} ids the tokenizer "
                f"starts every sequence with ({self.prefix}); raise it to at least {len(self.prefix)}"
            )

    def lead(self, ids: list[int]) -> int:
        """How many leading ids of ``ids`` are the sequence start: those of the tokenizer's prefix it already
        starts with (a template's ``{{ bos_token }}``) or, for a tokenizer that adds nothing, a BOS its text
        rendered (a template's BOS is protected from truncation and unlabelled all the same)."""
        if not self.prefix:
            return int(self.bos is not None and ids[:1] == [self.bos])
        n = 0
        while n < min(len(ids), len(self.prefix)) and ids[n] == self.prefix[n]:
            n += 1
        return n

    def start(self, prompt: list[int]) -> tuple[list[int], int]:
        """(prompt ids starting as the tokenizer starts a sequence, length of that start): the prefix, then the
        prompt less the part of the prefix it already starts with, so a BOS is never doubled."""
        ids = self.prefix + prompt[self.lead(prompt) :] if self.prefix else prompt
        return ids, self.lead(ids)

    def response(self, segments: list[Segment]) -> tuple[list[int], list[int], list[list[int]]]:
        """(ids, labels, per-segment ids) of response segments, EOS appended after a trained last segment."""
        ids: list[int] = []
        labels: list[int] = []
        parts = [encode(self.tokenizer, text) for text, _ in segments]
        for (_, trained), part in zip(segments, parts):
            ids += part
            labels += part if trained else [IGNORE_INDEX] * len(part)
        if segments and segments[-1][1] and (not ids or ids[-1] != self.eos):
            ids.append(self.eos)
            labels.append(self.eos)
        return ids, labels, parts

    def merges(self, texts: list[str], parts: list[list[int]]) -> bool:
        """Whether the joint encoding of any two neighbouring texts differs from their separate encodings."""
        for i in range(len(texts) - 1):
            if (
                texts[i]
                and texts[i + 1]
                and encode(self.tokenizer, texts[i] + texts[i + 1]) != parts[i] + parts[i + 1]
            ):
                return True
        return False


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """The ids of a prompt started as training starts a sequence: the tokenizer's default prefix (its BOS),
    never doubled when the text already begins with it, and no default suffix (a prompt is continued, not
    closed). Generation encodes its prompts with this, so samples continue what training scored."""
    return _Encoder(tokenizer, max_prompt_length=1 << 30).start(encode(tokenizer, text))[0]


def preference_segments(tokenizer: Any, item: PreferenceItem) -> tuple[str, list[Segment], list[Segment]]:
    """(prompt text, chosen segments, rejected segments) of a pair; the prompt text is untrained."""
    if not item.is_chat:
        return item.prompt, [(item.chosen, True)], [(item.rejected, True)]
    prompt_text = render_messages(tokenizer, item.prompt, add_generation_prompt=True)
    sides = []
    for response in (item.chosen, item.rejected):
        messages = item.prompt + response
        flags = [False] * len(item.prompt) + [m["role"] == "assistant" for m in response]
        segments = chat_segments(tokenizer, messages, flags, where=item.where)
        # incremental rendering makes the leading untrained block exactly the generation-prompted prompt
        assert segments[0] == (prompt_text, False), "chat_segments checked the prefix property"
        sides.append(segments[1:])
    return prompt_text, sides[0], sides[1]


def unpaired_segments(tokenizer: Any, item: UnpairedItem) -> tuple[str, list[Segment]]:
    """(prompt text, completion segments) of an unpaired example; the prompt text is untrained. Chat items
    render as one side of a conversational pair does."""
    if not item.is_chat:
        return item.prompt, [(item.completion, True)]
    prompt_text = render_messages(tokenizer, item.prompt, add_generation_prompt=True)
    messages = item.prompt + item.completion
    flags = [False] * len(item.prompt) + [m["role"] == "assistant" for m in item.completion]
    segments = chat_segments(tokenizer, messages, flags, where=item.where)
    assert segments[0] == (prompt_text, False), "chat_segments checked the prefix property"
    return prompt_text, segments[1:]


def sft_segments(tokenizer: Any, item: SFTItem, sft_turns: str = "all") -> list[Segment]:
    """Segments of one SFT example (leading untrained segment = its prompt, possibly none)."""
    if item.kind == "text":
        return [(item.text, True)]
    if item.kind == "prompt_completion":
        if isinstance(item.prompt, str):
            return merge_segments([(item.prompt, False), (item.completion, True)])
        messages = item.prompt + item.completion
        flags = [False] * len(item.prompt) + [m["role"] == "assistant" for m in item.completion]
        return chat_segments(tokenizer, messages, flags, where=item.where)
    if item.kind == "messages":
        flags = [m["role"] == "assistant" for m in item.messages]
        if sft_turns == "last":
            last = max(i for i, f in enumerate(flags) if f)
            flags = [i == last for i in range(len(flags))]
        elif sft_turns != "all":
            raise ConfigError(f"sft_turns must be 'all' or 'last', got '{sft_turns}'")
        return chat_segments(tokenizer, item.messages, flags, where=item.where)
    raise AssertionError(item.kind)


def _cut_prompt(ids: list[int], n: int, keep: str, lead: int) -> list[int]:
    """``ids`` cut to ``n <= len(ids)`` tokens; the first ``lead`` (the sequence start, BOS, ``lead <= n``) always
    survive and count toward ``n``."""
    if keep == "keep_start":
        return ids[:n]
    return ids[:lead] + ids[len(ids) - (n - lead) :]


def _fit_sequence(prompt: list[int], lead: int, response: list[int], labels: list[int], report: DataReport,
                  spec: DataSpec) -> tuple[list[int], list[int], list[int], bool] | None:
    """One sequence (SFT, or an unpaired completion) cut to max_length by the module's truncation rule:
    (prompt, response, labels, eos_dropped), or None when it is dropped (counted in `report`)."""
    prompt_cut = eos_dropped = False
    if len(prompt) + len(response) > spec.max_length and len(prompt) > spec.max_prompt_length:
        prompt = _cut_prompt(prompt, spec.max_prompt_length, spec.prompt_truncation, lead)
        prompt_cut = True
    if len(prompt) + len(response) > spec.max_length:
        if spec.response_truncation == "drop_example":
            report.n_dropped_truncation += 1
            return None
        room = spec.max_length - len(prompt)
        response, labels, eos_dropped = response[:room], labels[:room], True
    if not _has_trained(labels):
        report.n_dropped_empty += 1
        return None
    report.n_prompt_truncated += prompt_cut
    report.n_response_truncated += eos_dropped
    return prompt, response, labels, eos_dropped


def _has_trained(labels: list[int]) -> bool:
    return any(x != IGNORE_INDEX for x in labels)


def _pair_ids(item: PreferenceItem, tokenizer: Any, enc: _Encoder):
    """(prompt, lead, chosen, chosen labels, rejected, rejected labels, boundary merged) of one pair before
    truncation, or None when a response is empty."""
    ids = item.token_ids
    if ids is not None:  # pre-tokenized: exactly these ids
        size = len(tokenizer)
        for name, values in (("prompt_ids", ids.prompt), ("chosen_ids", ids.chosen), ("rejected_ids", ids.rejected)):
            bad = next((x for x in values if x >= size), None)
            if bad is not None:
                raise DataError(f"{item.where}: field '{name}' holds token id {bad}, but the tokenizer has {size} "
                                "ids; give ids of the tokenizer that trains")
        prompt, chosen, rejected = list(ids.prompt), list(ids.chosen), list(ids.rejected)
        return prompt, enc.lead(prompt), chosen, list(chosen), rejected, list(rejected), False
    prompt_text, chosen_segs, rejected_segs = preference_segments(tokenizer, item)
    if not any(t.strip() for t, _ in chosen_segs) or not any(t.strip() for t, _ in rejected_segs):
        return None
    prompt = encode(tokenizer, prompt_text)
    chosen, chosen_labels, chosen_parts = enc.response(chosen_segs)
    rejected, rejected_labels, rejected_parts = enc.response(rejected_segs)
    merged = any(
        enc.merges([prompt_text] + [t for t, _ in segs], [prompt] + parts)
        for segs, parts in ((chosen_segs, chosen_parts), (rejected_segs, rejected_parts))
    )
    prompt, lead = enc.start(prompt)
    return prompt, lead, chosen, chosen_labels, rejected, rejected_labels, merged


def tokenize_preference(
    items: list[PreferenceItem],
    tokenizer: Any,
    report: DataReport,
    spec: DataSpec,
) -> list[dict[str, Any]]:
    """Preference examples (see the package docstring for the dict keys); updates ``report`` counts."""
    enc = _Encoder(tokenizer, spec.max_prompt_length)
    out = []
    for item in items:
        encoded = _pair_ids(item, tokenizer, enc)
        if encoded is None:
            report.n_dropped_empty += 1
            continue
        prompt, lead, chosen, chosen_labels, rejected, rejected_labels, merged = encoded
        prompt_cut = eos_dropped = False
        longest = len(prompt) + max(len(chosen), len(rejected))
        if longest > spec.max_length and len(prompt) > spec.max_prompt_length:
            prompt = _cut_prompt(prompt, spec.max_prompt_length, spec.prompt_truncation, lead)
            prompt_cut = True
        if len(prompt) + max(len(chosen), len(rejected)) > spec.max_length:
            if spec.response_truncation == "drop_example":
                report.n_dropped_truncation += 1
                continue
            room = spec.max_length - len(prompt)
            eos_dropped = True
            chosen, chosen_labels = chosen[:room], chosen_labels[:room]
            rejected, rejected_labels = rejected[:room], rejected_labels[:room]
        if not _has_trained(chosen_labels) or not _has_trained(rejected_labels):
            report.n_dropped_empty += 1
            continue
        report.n_prompt_truncated += prompt_cut
        report.n_response_truncated += eos_dropped
        report.n_boundary_merges += merged
        example = {
            "prompt_input_ids": prompt,
            "chosen_input_ids": prompt + chosen,
            "chosen_labels": [IGNORE_INDEX] * len(prompt) + chosen_labels,
            "rejected_input_ids": prompt + rejected,
            "rejected_labels": [IGNORE_INDEX] * len(prompt) + rejected_labels,
            "index": item.index,
            "where": item.where,  # file and line, for errors about this example downstream
            "eos_dropped": eos_dropped,
        }
        if item.alpha is not None:
            example["alpha"] = item.alpha
        if item.votes is not None:
            example["votes"] = item.votes
        if item.pair is not None:
            example["pair"] = item.pair
        out.append(example)
    report.n_kept += len(out)
    return out


def tokenize_sft(
    items: list[SFTItem],
    tokenizer: Any,
    report: DataReport,
    spec: DataSpec,
) -> list[dict[str, Any]]:
    """SFT examples ``{"input_ids", "labels", "index", "where", "eos_dropped"}``; updates ``report`` counts.

    The prompt is the tokenizer's prefix (BOS, if it adds one) and the leading untrained segment (none for
    ``text``); the rest, trained or not (later user turns), is the response for truncation.
    """
    enc = _Encoder(tokenizer, spec.max_prompt_length)
    out = []
    for item in items:
        segments = sft_segments(tokenizer, item, spec.sft_turns)
        if not any(t.strip() for t, trained in segments if trained):
            report.n_dropped_empty += 1
            continue
        prompt_text = segments[0][0] if not segments[0][1] else ""
        rest = segments[1:] if prompt_text else segments
        prompt = encode(tokenizer, prompt_text)
        response, labels, parts = enc.response(rest)
        merged = enc.merges([prompt_text] + [t for t, _ in rest], [prompt] + parts)
        if not prompt:
            # no untrained lead (``text``, or a first message that is trained): start ids the sequence already
            # has (a template's BOS) move into the prompt, so they are unlabelled and never doubled
            k = enc.lead(response)
            prompt, response, labels = response[:k], response[k:], labels[k:]
        prompt, lead = enc.start(prompt)
        fitted = _fit_sequence(prompt, lead, response, labels, report, spec)
        if fitted is None:
            continue
        prompt, response, labels, eos_dropped = fitted
        report.n_boundary_merges += merged
        out.append(
            {
                "input_ids": prompt + response,
                "labels": [IGNORE_INDEX] * len(prompt) + labels,
                "index": item.index,
                "where": item.where,
                "eos_dropped": eos_dropped,
            }
        )
    report.n_kept += len(out)
    return out


def tokenize_unpaired(
    items: list[UnpairedItem],
    tokenizer: Any,
    report: DataReport,
    spec: DataSpec,
) -> list[dict[str, Any]]:
    """Unpaired (KTO) examples ``{"prompt_input_ids", "input_ids", "labels": list[int], "label": bool,
    "index": int, "where": str, "eos_dropped": bool}``; updates ``report`` counts.

    The rule of tokenize_preference with one response: ``prompt_input_ids`` (prefix/BOS included) is an exact
    prefix of ``input_ids`` and labelled -100, the completion ends with EOS, truncation as in the module
    docstring with L = len(prompt) + len(completion). ``label`` is True for a desirable completion.
    """
    enc = _Encoder(tokenizer, spec.max_prompt_length)
    out = []
    for item in items:
        prompt_text, segments = unpaired_segments(tokenizer, item)
        if not any(t.strip() for t, trained in segments if trained):
            report.n_dropped_empty += 1
            continue
        prompt = encode(tokenizer, prompt_text)
        response, labels, parts = enc.response(segments)
        merged = enc.merges([prompt_text] + [t for t, _ in segments], [prompt] + parts)
        prompt, lead = enc.start(prompt)
        fitted = _fit_sequence(prompt, lead, response, labels, report, spec)
        if fitted is None:
            continue
        prompt, response, labels, eos_dropped = fitted
        report.n_boundary_merges += merged
        out.append(
            {
                "prompt_input_ids": prompt,
                "input_ids": prompt + response,
                "labels": [IGNORE_INDEX] * len(prompt) + labels,
                "label": item.label,
                "index": item.index,
                "where": item.where,
                "eos_dropped": eos_dropped,
            }
        )
    report.n_kept += len(out)
    return out
