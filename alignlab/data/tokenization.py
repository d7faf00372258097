"""Tokenization: validated items -> token ids and labels, with the prompt/response boundary exact by
construction.

The rule (the convention of the DPO and TDPO reference code, data.md §4 "separate tokenization"):

1. Render each example once into text segments with a trained flag: the prompt (for chat data, the rendered
   prompt messages plus the assistant generation header) is untrained; a response is trained. In multi-turn
   messages, template headers and non-assistant turns are untrained, assistant content and its end-of-turn
   marker are trained (``alignlab.data.chat``).
2. Encode every segment on its own with ``add_special_tokens=False`` (no BOS is ever added) and concatenate
   the ids. The prompt ids are therefore an exact prefix of prompt + response ids, chosen and rejected share
   the same prompt ids, and no prompt token is ever scored.
3. Append EOS to a sequence that ends with a trained segment, unless its last id already is EOS.
4. labels = the id on trained tokens (EOS included), -100 elsewhere (collation pads labels with -100 too).

The joint encoding enc(prompt + response) can differ from enc(prompt) + enc(response) where a BPE merge spans
the boundary (e.g. a prompt ending in "Assistant: " and a response "Hello": jointly "Ġ" + "Hello" may become
"ĠHello"). alignlab does NOT switch to the joint encoding: it keeps the separate one, so the trained span is
exact and identical for training, reference log-probs and ranking, and it counts each kept example where
any boundary would merge in ``DataReport.n_boundary_merges``. Generation from the prompt ids reproduces the
training tokenization; text that is re-tokenized jointly may not, and the count says how often.

Truncation (data.md §5, the DPO reference rule), with L = len(prompt) + max(len(chosen), len(rejected))
counted in tokens including EOS:
- if L > max_length, cut the prompt to max_prompt_length tokens, keeping its end (``keep_end``, the default:
  the latest turns and the generation header survive) or its start (``keep_start``);
- if still too long: ``response_truncation="truncate"`` cuts each response at the end to max_length -
  len(prompt) tokens (its EOS is lost: ``eos_dropped``); ``"drop_example"`` drops the example.
- an example left with no trained response token is dropped (``n_dropped_empty``). SFT examples follow the
  same rule with the single sequence as the response.
"""

from __future__ import annotations

from typing import Any

from alignlab.data.chat import Segment, chat_segments, merge_segments, render_messages
from alignlab.data.formats import PreferenceItem, SFTItem
from alignlab.data.report import DataReport
from alignlab.errors import ConfigError

IGNORE_INDEX = -100
PROMPT_TRUNCATIONS = ("keep_end", "keep_start")
RESPONSE_TRUNCATIONS = ("truncate", "drop_example")


def check_lengths(
    max_length: int, max_prompt_length: int, prompt_truncation: str, response_truncation: str
) -> None:
    """Reject truncation settings that cannot be honoured."""
    if not isinstance(max_length, int) or max_length < 2:
        raise ConfigError(f"max_length must be an integer >= 2, got {max_length!r}")
    if not isinstance(max_prompt_length, int) or not 1 <= max_prompt_length <= max_length:
        raise ConfigError(
            f"max_prompt_length must be an integer in [1, max_length={max_length}], got {max_prompt_length!r}"
        )
    if prompt_truncation not in PROMPT_TRUNCATIONS:
        raise ConfigError(
            f"prompt_truncation must be one of {', '.join(PROMPT_TRUNCATIONS)}, got '{prompt_truncation}'"
        )
    if response_truncation not in RESPONSE_TRUNCATIONS:
        raise ConfigError(
            f"response_truncation must be one of {', '.join(RESPONSE_TRUNCATIONS)}, "
            f"got '{response_truncation}'"
        )


def eos_token_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ConfigError("the tokenizer has no eos_token; alignlab appends EOS to every response")
    return int(eos)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added (special-token strings in the text still map to
    ids)."""
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []


class _Encoder:
    """Encodes segment lists and detects boundary merges; one per tokenizer."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.eos = eos_token_id(tokenizer)

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


def _cut_prompt(ids: list[int], n: int, keep: str) -> list[int]:
    return ids[len(ids) - n :] if keep == "keep_end" else ids[:n]


def _has_trained(labels: list[int]) -> bool:
    return any(x != IGNORE_INDEX for x in labels)


def tokenize_preference(
    items: list[PreferenceItem],
    tokenizer: Any,
    report: DataReport,
    *,
    max_length: int = 512,
    max_prompt_length: int = 256,
    prompt_truncation: str = "keep_end",
    response_truncation: str = "truncate",
) -> list[dict[str, Any]]:
    """Preference examples (see the package docstring for the dict keys); updates ``report`` counts."""
    check_lengths(max_length, max_prompt_length, prompt_truncation, response_truncation)
    enc = _Encoder(tokenizer)
    out = []
    for item in items:
        prompt_text, chosen_segs, rejected_segs = preference_segments(tokenizer, item)
        if not any(t.strip() for t, _ in chosen_segs) or not any(t.strip() for t, _ in rejected_segs):
            report.n_dropped_empty += 1
            continue
        prompt = encode(tokenizer, prompt_text)
        chosen, chosen_labels, chosen_parts = enc.response(chosen_segs)
        rejected, rejected_labels, rejected_parts = enc.response(rejected_segs)
        merged = any(
            enc.merges([prompt_text] + [t for t, _ in segs], [prompt] + parts)
            for segs, parts in ((chosen_segs, chosen_parts), (rejected_segs, rejected_parts))
        )
        prompt_cut = eos_dropped = False
        if len(prompt) + max(len(chosen), len(rejected)) > max_length and len(prompt) > max_prompt_length:
            prompt, prompt_cut = _cut_prompt(prompt, max_prompt_length, prompt_truncation), True
        if len(prompt) + max(len(chosen), len(rejected)) > max_length:
            if response_truncation == "drop_example":
                report.n_dropped_truncation += 1
                continue
            room = max_length - len(prompt)
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
    *,
    max_length: int = 512,
    max_prompt_length: int = 256,
    prompt_truncation: str = "keep_end",
    response_truncation: str = "truncate",
    sft_turns: str = "all",
) -> list[dict[str, Any]]:
    """SFT examples ``{"input_ids", "labels", "index", "eos_dropped"}``; updates ``report`` counts.

    The prompt is the leading untrained segment (none for ``text``); the rest, trained or not (later user
    turns), is the response for truncation.
    """
    check_lengths(max_length, max_prompt_length, prompt_truncation, response_truncation)
    enc = _Encoder(tokenizer)
    out = []
    for item in items:
        segments = sft_segments(tokenizer, item, sft_turns)
        if not any(t.strip() for t, trained in segments if trained):
            report.n_dropped_empty += 1
            continue
        prompt_text = segments[0][0] if not segments[0][1] else ""
        rest = segments[1:] if prompt_text else segments
        prompt = encode(tokenizer, prompt_text)
        response, labels, parts = enc.response(rest)
        merged = enc.merges([prompt_text] + [t for t, _ in rest], [prompt] + parts)
        prompt_cut = eos_dropped = False
        if len(prompt) + len(response) > max_length and len(prompt) > max_prompt_length:
            prompt, prompt_cut = _cut_prompt(prompt, max_prompt_length, prompt_truncation), True
        if len(prompt) + len(response) > max_length:
            if response_truncation == "drop_example":
                report.n_dropped_truncation += 1
                continue
            room = max_length - len(prompt)
            response, labels, eos_dropped = response[:room], labels[:room], True
        if not _has_trained(labels):
            report.n_dropped_empty += 1
            continue
        report.n_prompt_truncated += prompt_cut
        report.n_response_truncated += eos_dropped
        report.n_boundary_merges += merged
        out.append(
            {
                "input_ids": prompt + response,
                "labels": [IGNORE_INDEX] * len(prompt) + labels,
                "index": item.index,
                "eos_dropped": eos_dropped,
            }
        )
    report.n_kept += len(out)
    return out
