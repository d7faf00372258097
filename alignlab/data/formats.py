"""Data formats: detection from a record's fields, validation, and normalisation into prompt/response items.

Formats (``format=`` names). Field names are canonical; ``columns={"chosen": "good"}`` maps them to source
columns.

Preference (``PreferenceItem``):
- ``standard``: ``prompt``, ``chosen``, ``rejected`` strings; responses exclude the prompt.
- ``conversational``: ``prompt`` a list of ``{role, content}`` messages, ``chosen`` / ``rejected`` lists
  holding one assistant message. Rendered with the chat template (``alignlab.data.chat``).
- ``implicit``: ``chosen`` / ``rejected`` each the whole conversation.
  Message lists: prompt = the longest common prefix of turns, responses = the remaining turns, which must all
  be assistant turns (with the role order below: one assistant turn). An empty common prefix is an error. If
  the two conversations are identical, the last turn is the response (and the pair is counted as identical).
  Plain strings: prompt = the longest common character prefix cut back to the start of its last whitespace run
  (so a turn boundary such as ``"Answer:\\n"`` or a word boundary ends the prompt, and both responses start
  with that whitespace and a whole word, like HH responses); an empty prompt is an error.
- ``hh``: Anthropic-HH raw dialogues ``"\\n\\nHuman: ... \\n\\nAssistant: ..."`` in ``chosen`` / ``rejected``.
  prompt = chosen up to and including its LAST ``"\\n\\nAssistant:"`` (the DPO reference rule); rejected must
  start with the same prompt. Responses keep their leading space.
- ``ranking``: ``prompt`` string, ``responses`` list of >= 2 strings, ``ranks`` list of numbers (lower =
  better, 1 = best). As preference data it expands into every pair with different ranks (better one = chosen).
- ``tokenized``: ``prompt_ids``, ``chosen_ids``, ``rejected_ids``, non-empty lists of token ids (integers >= 0,
  below the tokenizer's size, checked at tokenization). They are trained exactly as given: each sequence is
  prompt_ids + a response's ids, every response id trained, nothing re-tokenized and nothing added (no BOS, no
  EOS: a response that ended holds its EOS, one cut off at a length limit does not). A ``prompt`` (string or
  messages) may come with them: it is what sampling reads (``alignlab.data.prompts``); other fields (the texts)
  are ignored. Identical pairs are those with equal ids. Preference training only. Online rounds write their pairs
  in this format, the sampled ids (``alignlab.online``).

Identical pairs: a pair whose chosen and rejected responses are exactly equal (the same characters; for message
lists the same roles and contents) carries no preference signal: a loss of the chosen-minus-rejected margin gets
canceling gradients from it, and per-side terms (an NLL on chosen, NCA) train on noise. In ranking data that is
one response text given two different ranks; each such expanded pair counts (equal texts with equal ranks give
no pair anyway). Identical pairs are counted (``n_identical_pairs``) and, with ``drop_identical_pairs`` (the
default), dropped before tokenization (``n_dropped_identical``) with a warning; a source whose every pair is
identical is then an error. SFT loading uses the chosen side and neither counts nor drops them.

SFT (``SFTItem``):
- ``prompt_completion``: ``prompt`` and ``completion`` (strings, or message lists: prompt messages and one
  assistant completion message); completion-only loss.
- ``messages``: ``messages`` list; assistant turns are trained (``sft_turns="all"``) or only the last
  assistant turn (``sft_turns="last"``). It ends on an assistant turn (a trailing user turn trains nothing
  and is an error).
- ``text``: ``text`` string; every token is trained.
- any preference format: SFT on the chosen side (``prompt`` + ``chosen``); ``ranking`` uses the best response.

Unpaired preference (``UnpairedItem``; KTO, TRL's unpaired preference format):
- ``unpaired``: ``prompt`` and ``completion`` as in ``prompt_completion`` (strings, or prompt messages and
  one assistant completion message) and ``label``, a JSON boolean: true = desirable, false = undesirable. Only
  ``task="unpaired"`` reads it; preference and SFT loading reject it (``format="prompt_completion"`` trains SFT
  on every completion, ignoring the label).

Optional fields carried through for diagnostics (idealized ranking accuracy; alignlab.diagnostics.votes):
``alpha`` (a number in [0, 1], the fraction of raters preferring the chosen response; on a ranking record only
with 2 responses, the fraction preferring the better-ranked one) and ``votes`` (a list of non-negative integers:
on a pair record one vote per rater, 1 = chosen, 2 = rejected; on a ranking record one count per response, the
raters who picked it, from which each expanded pair gets its alpha).

Message lists (every chat format): each message is ``{"role", "content"}`` with a string content and a role of
``system``, ``user`` or ``assistant`` (a ShareGPT-style ``human`` / ``gpt`` is an error naming the role to use;
tool calls are not supported). Roles follow the order chat templates expect: a system message only as the first
message, then user and assistant turns alternating, starting with a user turn; a prompt ends on a user turn and
a response is one assistant turn. Consecutive messages with the same role are an error (merge them): Llama-2's,
Mistral's and Gemma's templates raise on them and ChatML-style ones render two turns of the same speaker, which
the model never saw in instruction tuning; in data they are usually a conversion bug. So a multi-turn history
(system, user, assistant, user) is a valid prompt; (user, assistant) or (assistant, user) is not.

Detection (``format="auto"``) looks at the fields of the first record that identify a format: ``chosen_ids``
+``rejected_ids`` -> tokenized, ``messages`` -> messages, ``responses`` -> ranking, ``chosen``+``rejected``
with ``prompt`` -> conversational (list prompt) or standard, without ``prompt`` -> implicit (lists), hh
(strings holding ``"\\n\\nAssistant:"``) or implicit (other strings), ``completion``+``label`` -> unpaired,
``prompt``+``completion`` (no ``label``) -> prompt_completion, ``text`` -> text. Every record is then checked
against that one format, so a dataset never mixes formats silently.

A record is "empty" where a required string has no non-whitespace character. An empty prompt or response in
the data is an error, except where the empty response comes out of the hh / implicit split: that pair is
dropped and counted (``DataReport.n_dropped_empty``) with a warning, as real HH data holds a few such rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from alignlab.data.sources import Record
from alignlab.errors import ConfigError, DataError

Message = dict[str, str]
Content = str | list[Message]

PREFERENCE_FORMATS = ("standard", "conversational", "implicit", "hh", "ranking", "tokenized")
SFT_FORMATS = ("prompt_completion", "messages", "text")
UNPAIRED_FORMATS = ("unpaired",)
FORMATS = PREFERENCE_FORMATS + SFT_FORMATS + UNPAIRED_FORMATS
TASKS = ("preference", "sft", "unpaired")
CANONICAL_FIELDS = (
    "prompt",
    "chosen",
    "rejected",
    "completion",
    "messages",
    "text",
    "responses",
    "ranks",
    "alpha",
    "votes",
    "label",
    "prompt_ids",
    "chosen_ids",
    "rejected_ids",
)
HH_ASSISTANT_TAG = "\n\nAssistant:"
ROLES = ("system", "user", "assistant")
# roles of other chat exports (ShareGPT, Gemma's rendering, chat logs) -> the role to write instead
ROLE_ALIASES = {
    "human": "user",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "ai": "assistant",
}


@dataclass(frozen=True)
class TokenIds:
    """The ids of a pre-tokenized pair (format ``tokenized``), trained exactly as given."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


@dataclass
class PreferenceItem:
    """A validated preference pair. Strings (text formats) or message lists (chat formats); never mixed. A
    ``tokenized`` pair holds its ids in ``token_ids``, its prompt text (``""`` without one) in ``prompt`` and
    ``""`` in ``chosen`` / ``rejected``."""

    prompt: Content
    chosen: Content
    rejected: Content
    index: int
    where: str
    alpha: float | None = None
    votes: list[int] | None = None
    pair: tuple[int, int] | None = None  # (chosen, rejected) response positions for ranking records
    token_ids: TokenIds | None = None

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def identical(self) -> bool:
        """Whether chosen and rejected are the same response (the same ids for a tokenized pair)."""
        if self.token_ids is not None:
            return self.token_ids.chosen == self.token_ids.rejected
        return self.chosen == self.rejected


@dataclass
class SFTItem:
    """A validated SFT example: ``prompt``/``completion`` (kind "prompt_completion"), ``messages`` or
    ``text``."""

    kind: str
    index: int
    where: str
    prompt: Content | None = None
    completion: Content | None = None
    messages: list[Message] | None = None
    text: str | None = None


@dataclass
class UnpairedItem:
    """A validated unpaired example: one completion of a prompt and whether it is desirable (``label``).
    Strings or message lists (prompt messages, assistant completion messages); never mixed."""

    prompt: Content
    completion: Content
    label: bool
    index: int
    where: str

    @property
    def is_chat(self) -> bool:
        return isinstance(self.prompt, list)


@dataclass
class NormalizeResult:
    """Items that passed validation, the one-line errors of those that did not, and aggregated warnings."""

    format: str
    items: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_identical_pairs: int = 0
    n_dropped_identical: int = 0
    n_empty_responses: int = 0


class _Problem(Exception):
    """One invalid record; the message is the part after '<where>: '."""


def check_columns(columns: dict[str, str] | None) -> dict[str, str]:
    """Validate a canonical -> source column mapping and return it (empty dict for None)."""
    if columns is None:
        return {}
    if not isinstance(columns, dict):
        raise ConfigError(
            f"columns must be a dict mapping canonical field names to source columns, got "
            f"{type(columns).__name__}"
        )
    for canonical, source in columns.items():
        if canonical not in CANONICAL_FIELDS:
            raise ConfigError(
                f"columns: '{canonical}' is not a field alignlab reads (one of {', '.join(CANONICAL_FIELDS)})"
            )
        if not isinstance(source, str) or not source:
            raise ConfigError(f"columns: source column for '{canonical}' must be a non-empty string")
    return dict(columns)


def check_format(fmt: str) -> str:
    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(f"format '{fmt}' is not one of auto, {', '.join(FORMATS)}")
    return fmt


class _Fields:
    """Read canonical fields of one record through the column mapping; errors name the source column."""

    def __init__(self, data: dict[str, Any], names: dict[str, str]):
        self.data, self.names = data, names

    def name(self, canonical: str) -> str:
        return self.names.get(canonical, canonical)

    def has(self, canonical: str) -> bool:
        return self.data.get(self.name(canonical)) is not None

    def get(self, canonical: str) -> Any:
        key = self.name(canonical)
        if key not in self.data:
            raise _Problem(f"field '{key}' is missing")
        return self.data[key]

    def text_or_messages(
        self, canonical: str, *, want: str | None = None, assistant_only: bool = False
    ) -> Content:
        """A non-empty string or non-empty message list; ``want`` ("string"/"messages") enforces one of the
        two."""
        key, value = self.name(canonical), self.get(canonical)
        if not isinstance(value, (str, list)):
            raise _Problem(f"field '{key}' must be a string or a list of messages, got {_type_name(value)}")
        if want == "string" and not isinstance(value, str):
            raise _Problem(f"field '{key}' must be a string in this format, got a list")
        if want == "messages" and not isinstance(value, list):
            raise _Problem(f"field '{key}' must be a list of messages in this format, got a string")
        if isinstance(value, str):
            if not value.strip():
                raise _Problem(f"field '{key}' is empty")
            return value
        return self.messages(canonical, value, assistant_only=assistant_only)

    def messages(self, canonical: str, value: Any, *, assistant_only: bool = False) -> list[Message]:
        key = self.name(canonical)
        if not isinstance(value, list):
            raise _Problem(f"field '{key}' must be a list of messages, got {_type_name(value)}")
        if not value:
            raise _Problem(f"field '{key}' is empty")
        out: list[Message] = []
        for i, m in enumerate(value):
            if not isinstance(m, dict):
                raise _Problem(
                    f"field '{key}' message {i} must be an object with 'role' and 'content', "
                    f"got {_type_name(m)}"
                )
            for part in ("role", "content"):
                if part not in m or m[part] is None:
                    raise _Problem(f"field '{key}' message {i} has no '{part}'")
                if not isinstance(m[part], str):
                    raise _Problem(
                        f"field '{key}' message {i} '{part}' must be a string, got {_type_name(m[part])}"
                    )
            if m["role"] not in ROLES:
                role = m["role"].strip().lower()
                alias = role if role in ROLES else ROLE_ALIASES.get(role)
                fix = f"use '{alias}'" if alias else "roles are system, user and assistant"
                raise _Problem(f"field '{key}' message {i} has unknown role '{m['role']}' ({fix})")
            if assistant_only and m["role"] != "assistant":
                raise _Problem(f"field '{key}' message {i} must have role 'assistant', got '{m['role']}'")
            if m["role"] == "assistant" and not m["content"].strip():
                raise _Problem(f"field '{key}' message {i} (assistant) has empty content")
            out.append({"role": m["role"], "content": m["content"]})
        if assistant_only and len(out) > 1:
            raise _Problem(
                f"field '{key}' holds {len(out)} assistant messages; a response is one assistant turn "
                "(merge them into one message)"
            )
        return out

    def conversation(self, canonical: str, messages: list[Message], *, ends_on: str | None) -> list[Message]:
        """``messages`` if its roles are in chat-template order (module docstring); ``ends_on`` ("user" for a
        prompt, "assistant" for a whole conversation) names the role of its last message, None for any."""
        key = self.name(canonical)
        for i, role in enumerate(m["role"] for m in messages):
            before = messages[i - 1]["role"] if i else None
            if role == "system":
                if i:
                    raise _Problem(
                        f"field '{key}' message {i} is a system message, but only the first message can be "
                        "(move it to the front)"
                    )
            elif before in (None, "system") and role != "user":
                raise _Problem(
                    f"field '{key}' message {i} has role '{role}', but a conversation starts with a user turn "
                    "(after an optional system message)"
                )
            elif role == before:
                raise _Problem(
                    f"field '{key}' messages {i - 1} and {i} both have role '{role}', but user and assistant "
                    "turns must alternate (merge them into one message)"
                )
        last = messages[-1]["role"]
        if ends_on == "user" and last != "user":
            raise _Problem(
                f"field '{key}' ends on a{'n' if last == 'assistant' else ''} {last} message, but a prompt ends "
                "on the user turn that the response answers"
            )
        if ends_on == "assistant" and last != "assistant":
            raise _Problem(
                f"field '{key}' ends on a {last} turn that no assistant turn answers (drop that last message)"
            )
        return messages

    def token_ids(self, canonical: str) -> list[int]:
        """A non-empty list of token ids (integers >= 0)."""
        key, value = self.name(canonical), self.get(canonical)
        if not isinstance(value, list):
            raise _Problem(f"field '{key}' must be a list of token ids, got {_type_name(value)}")
        if not value:
            raise _Problem(f"field '{key}' is empty")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _Problem(f"field '{key}' item {i} must be a token id (an integer >= 0), got {v!r}")
        return list(value)

    def alpha(self) -> float | None:
        if not self.has("alpha"):
            return None
        value = self.get("alpha")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise _Problem(f"field '{self.name('alpha')}' must be a number in [0, 1], got {value!r}")
        return float(value)

    def votes(self) -> list[int] | None:
        if not self.has("votes"):
            return None
        value = self.get("votes")
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise _Problem(
                f"field '{self.name('votes')}' must be a list of non-negative integers, got {value!r}"
            )
        return list(value)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "list", type(None): "null"}.get(type(value), type(value).__name__)


def detect_format(record: Record, names: dict[str, str]) -> str:
    """The format of a dataset, from the fields of its first readable record (module docstring)."""
    f = _Fields(record.data, names)
    if f.has("chosen_ids") and f.has("rejected_ids"):
        return "tokenized"
    if f.has("messages"):
        return "messages"
    if f.has("responses"):
        return "ranking"
    if f.has("chosen") and f.has("rejected"):
        if f.has("prompt"):
            return "conversational" if isinstance(f.get("prompt"), list) else "standard"
        chosen = f.get("chosen")
        if isinstance(chosen, str) and HH_ASSISTANT_TAG in chosen:
            return "hh"
        return "implicit"
    if f.has("completion") and f.has("label"):
        return "unpaired"
    if f.has("prompt") and f.has("completion"):
        return "prompt_completion"
    if f.has("text"):
        return "text"
    fields = ", ".join(sorted(record.data)) or "none"
    raise DataError(
        f"{record.where}: cannot detect the data format from fields [{fields}]; expected "
        "prompt/chosen/rejected, chosen/rejected, prompt_ids/chosen_ids/rejected_ids, prompt/responses/ranks, "
        "prompt/completion/label, prompt/completion, messages or text "
        "(map columns with columns= or pass format=)"
    )


def _detect_dataset_format(records: list[Record], names: dict[str, str]) -> str:
    """The format of the first record whose fields identify one (a broken first record then gets a per-field
    error under that format instead of hiding the format); DataError naming the first record if none does."""
    first_error = None
    for record in records:
        try:
            return detect_format(record, names)
        except DataError as e:
            first_error = first_error or e
    raise first_error


def _common_prefix_turns(a: list[Message], b: list[Message]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _implicit_messages(f: _Fields, chosen: list[Message], rejected: list[Message]):
    n = _common_prefix_turns(chosen, rejected)
    if n == 0:
        raise _Problem(
            f"implicit prompt: fields '{f.name('chosen')}' and '{f.name('rejected')}' share no "
            "leading turns (an empty prompt)"
        )
    if chosen == rejected:
        n = len(chosen) - 1  # identical conversations: the last turn is the (shared) response
    for canonical, conv in (("chosen", chosen), ("rejected", rejected)):
        if len(conv) == n:
            raise _Problem(
                f"implicit prompt: field '{f.name(canonical)}' has no turns after the common prefix"
            )
        for i in range(n, len(conv)):
            if conv[i]["role"] != "assistant":
                raise _Problem(
                    f"implicit prompt: field '{f.name(canonical)}' message {i} after the common prefix "
                    f"must have role 'assistant', got '{conv[i]['role']}'"
                )
    return chosen[:n], chosen[n:], rejected[n:]


def split_implicit_strings(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(prompt, chosen response, rejected response) of two whole-conversation strings.

    The prompt is the common prefix cut back to the start of its last whitespace run, so both responses start
    with that whitespace and a whole word (as HH responses start with a space); byte-level BPE tokenizers then
    encode the response's first word the same way alone as after the prompt.
    """
    common = os.path.commonprefix([chosen, rejected])
    cut = max((i for i, ch in enumerate(common) if ch.isspace()), default=-1)
    while cut > 0 and common[cut - 1].isspace():
        cut -= 1
    cut = max(cut, 0)
    return common[:cut], chosen[cut:], rejected[cut:]


def _preference(f: _Fields, record: Record, fmt: str) -> list[PreferenceItem]:
    alpha, votes = f.alpha(), f.votes()
    base = {"index": record.index, "where": record.where, "alpha": alpha, "votes": votes}
    if fmt == "standard":
        prompt = f.text_or_messages("prompt", want="string")
        chosen = f.text_or_messages("chosen", want="string")
        rejected = f.text_or_messages("rejected", want="string")
        return [PreferenceItem(prompt, chosen, rejected, **base)]
    if fmt == "conversational":
        prompt = f.conversation("prompt", f.text_or_messages("prompt", want="messages"), ends_on="user")
        chosen = f.text_or_messages("chosen", want="messages", assistant_only=True)
        rejected = f.text_or_messages("rejected", want="messages", assistant_only=True)
        return [PreferenceItem(prompt, chosen, rejected, **base)]
    if fmt == "implicit":
        chosen = f.text_or_messages("chosen")
        rejected = f.text_or_messages("rejected")
        if isinstance(chosen, str) != isinstance(rejected, str):
            raise _Problem(
                f"fields '{f.name('chosen')}' and '{f.name('rejected')}' must both be strings or both "
                "lists of messages"
            )
        if isinstance(chosen, list):
            # no end rule here: the split below names a conversation whose last turns are not assistant turns
            f.conversation("chosen", chosen, ends_on=None)
            f.conversation("rejected", rejected, ends_on=None)
            return [PreferenceItem(*_implicit_messages(f, chosen, rejected), **base)]
        prompt, c, r = split_implicit_strings(chosen, rejected)
        if not prompt.strip():
            raise _Problem(
                f"implicit prompt: fields '{f.name('chosen')}' and '{f.name('rejected')}' share no "
                "common prefix before a whitespace boundary (an empty prompt)"
            )
        return [PreferenceItem(prompt, c, r, **base)]
    if fmt == "hh":
        chosen = f.text_or_messages("chosen", want="string")
        rejected = f.text_or_messages("rejected", want="string")
        cut = chosen.rfind(HH_ASSISTANT_TAG)
        if cut < 0:
            raise _Problem(f"field '{f.name('chosen')}' has no '\\n\\nAssistant:' turn (format 'hh')")
        prompt = chosen[: cut + len(HH_ASSISTANT_TAG)]
        if not rejected.startswith(prompt):
            raise _Problem(
                f"field '{f.name('rejected')}' does not start with the prompt of "
                f"'{f.name('chosen')}' (its text up to the last '\\n\\nAssistant:')"
            )
        return [PreferenceItem(prompt, chosen[len(prompt) :], rejected[len(prompt) :], **base)]
    if fmt == "ranking":
        prompt = f.text_or_messages("prompt", want="string")
        responses, ranks = f.get("responses"), f.get("ranks")
        if not isinstance(responses, list) or len(responses) < 2:
            raise _Problem(f"field '{f.name('responses')}' must be a list of at least 2 strings")
        for i, r in enumerate(responses):
            if not isinstance(r, str):
                raise _Problem(
                    f"field '{f.name('responses')}' item {i} must be a string, got {_type_name(r)}"
                )
            if not r.strip():
                raise _Problem(f"field '{f.name('responses')}' item {i} is empty")
        if (
            not isinstance(ranks, list)
            or len(ranks) != len(responses)
            or not all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in ranks)
        ):
            raise _Problem(
                f"field '{f.name('ranks')}' must be a list of {len(responses)} numbers, one per response"
            )
        if votes is not None and len(votes) != len(responses):
            raise _Problem(
                f"field '{f.name('votes')}' must hold one vote count per response ({len(responses)}), got "
                f"{len(votes)}"
            )
        if alpha is not None and len(responses) > 2:
            raise _Problem(
                f"field '{f.name('alpha')}' is one pair's preference proportion, but this ranking has "
                f"{len(responses)} responses; give '{f.name('votes')}' (one count per response) instead"
            )
        items = []
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                if ranks[i] == ranks[j]:
                    continue
                c, r = (i, j) if ranks[i] < ranks[j] else (j, i)
                items.append(PreferenceItem(prompt, responses[c], responses[r], pair=(c, r), **base))
        return items
    if fmt == "tokenized":
        ids = TokenIds(*(f.token_ids(name) for name in ("prompt_ids", "chosen_ids", "rejected_ids")))
        prompt = _prompt(f) if f.has("prompt") else ""
        return [PreferenceItem(prompt, "", "", token_ids=ids, **base)]
    raise AssertionError(fmt)


def _sft(f: _Fields, record: Record, fmt: str) -> SFTItem:
    base = {"index": record.index, "where": record.where}
    if fmt == "prompt_completion":
        prompt = _prompt(f)
        completion = f.text_or_messages(
            "completion", want="string" if isinstance(prompt, str) else "messages", assistant_only=True
        )
        return SFTItem("prompt_completion", prompt=prompt, completion=completion, **base)
    if fmt == "messages":
        messages = f.messages("messages", f.get("messages"))
        if not any(m["role"] == "assistant" for m in messages):
            raise _Problem(f"field '{f.name('messages')}' has no assistant turn to train on")
        return SFTItem("messages", messages=f.conversation("messages", messages, ends_on="assistant"), **base)
    if fmt == "text":
        return SFTItem("text", text=f.text_or_messages("text", want="string"), **base)
    raise AssertionError(fmt)


def _prompt(f: _Fields) -> Content:
    """The ``prompt`` of prompt/completion records: a string, or messages in order ending on a user turn."""
    prompt = f.text_or_messages("prompt")
    return prompt if isinstance(prompt, str) else f.conversation("prompt", prompt, ends_on="user")


def _unpaired(f: _Fields, record: Record) -> UnpairedItem:
    prompt = _prompt(f)
    completion = f.text_or_messages(
        "completion", want="string" if isinstance(prompt, str) else "messages", assistant_only=True
    )
    label = f.get("label")
    # a strict bool: 0/1 or "true" would be silently truthy, and a flipped label inverts the KTO gradient
    if not isinstance(label, bool):
        raise _Problem(f"field '{f.name('label')}' must be a boolean (true or false), got {label!r}")
    return UnpairedItem(prompt, completion, label, index=record.index, where=record.where)


def normalize_records(
    records: list[Record],
    *,
    format: str = "auto",
    columns: dict[str, str] | None = None,
    task: str = "preference",
    sft_turns: str = "all",
    drop_identical_pairs: bool = True,
) -> NormalizeResult:
    """Validate every record against one format and normalise it; collects all errors instead of stopping.

    task="preference" returns PreferenceItems (SFT formats are rejected); task="sft" returns SFTItems, built
    from the chosen side for preference formats (``sft_turns`` is checked here and applied at tokenization);
    task="unpaired" returns UnpairedItems and accepts the ``unpaired`` format only (the other tasks reject it).
    Preference pairs with chosen == rejected are counted and, with ``drop_identical_pairs``, left out (module
    docstring). Raises DataError only when the format cannot be detected or does not fit the task.
    """
    names = check_columns(columns)
    check_format(format)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got '{task}'")
    if sft_turns not in ("all", "last"):
        raise ConfigError(f"sft_turns must be 'all' or 'last', got '{sft_turns}'")
    if not records:
        return NormalizeResult(format=format)
    fmt = _detect_dataset_format(records, names) if format == "auto" else format
    if task == "preference" and fmt in SFT_FORMATS:
        raise DataError(
            f"{records[0].where}: this is SFT data (format '{fmt}'); preference training needs "
            "prompt/chosen/rejected pairs"
        )
    if (task == "unpaired") != (fmt in UNPAIRED_FORMATS):
        raise DataError(_task_mismatch(records[0].where, fmt, task))
    if task == "sft" and fmt == "tokenized":
        raise DataError(f"{records[0].where}: format 'tokenized' holds preference pairs as token ids; SFT "
                        "training needs text (prompt/completion, messages or text records)")
    result = NormalizeResult(format=fmt)
    if task == "unpaired":
        for record in records:
            try:
                result.items.append(_unpaired(_Fields(record.data, names), record))
            except _Problem as e:
                result.errors.append(f"{record.where}: {e}")
        return result
    first_identical = first_empty = first_tied = None
    n_tied = 0
    for record in records:
        f = _Fields(record.data, names)
        try:
            if fmt in PREFERENCE_FORMATS:
                pairs = _preference(f, record, fmt)
            else:
                result.items.append(_sft(f, record, fmt))
                continue
        except _Problem as e:
            result.errors.append(f"{record.where}: {e}")
            continue
        if fmt == "ranking" and not pairs:
            n_tied += 1
            first_tied = first_tied or record.where
        if task == "sft":  # the chosen side; for ranking records the top-ranked response
            if fmt == "ranking":
                ranks = f.get("ranks")
                top = min(range(len(ranks)), key=lambda i: ranks[i])
                pairs = [
                    PreferenceItem(f.get("prompt"), f.get("responses")[top], "", record.index, record.where)
                ]
            else:
                pairs = pairs[:1]
        for p in pairs:
            if task == "preference" and p.identical:
                result.n_identical_pairs += 1
                first_identical = first_identical or record.where
                if drop_identical_pairs:
                    result.n_dropped_identical += 1
                    continue
            sides = (p.chosen, p.rejected) if task == "preference" else (p.chosen,)
            if p.token_ids is None and any(isinstance(x, str) and not x.strip() for x in sides):
                result.n_empty_responses += 1
                first_empty = first_empty or record.where
            if task == "preference":
                result.items.append(p)
            else:
                result.items.append(
                    SFTItem(
                        "prompt_completion", record.index, record.where, prompt=p.prompt, completion=p.chosen
                    )
                )
    if result.n_identical_pairs:
        fate = (
            "are dropped (set drop_identical_pairs to false to keep them)"
            if drop_identical_pairs
            else "are kept (drop_identical_pairs is false)"
        )
        result.warnings.append(
            f"{result.n_identical_pairs} pairs have identical chosen and rejected responses "
            f"(first: {first_identical}); they carry no preference signal and {fate}"
        )
        if result.n_dropped_identical and not result.items and not result.errors:  # else those come first
            result.errors.append(
                f"{first_identical}: all {result.n_identical_pairs} pairs have identical chosen and "
                "rejected responses, so none is left to train on (check the columns mapping, or set "
                "drop_identical_pairs to false to keep them)"
            )
    if result.n_empty_responses:
        result.warnings.append(
            f"{result.n_empty_responses} examples have an empty response after the prompt "
            f"split (first: {first_empty}); they are dropped"
        )
    if n_tied and task == "preference":
        result.warnings.append(
            f"{n_tied} ranking records have all ranks tied (first: {first_tied}); they give no pairs"
        )
    return result


def _task_mismatch(where: str, fmt: str, task: str) -> str:
    """The one-line error for unpaired data given to another task, or other data given to task 'unpaired'."""
    if task == "unpaired":
        return (
            f"{where}: unpaired training needs prompt/completion/label records (format 'unpaired'), "
            f"got format '{fmt}'"
        )
    need = "prompt/chosen/rejected pairs" if task == "preference" else "SFT data"
    hint = "; pass format='prompt_completion' to fine-tune on every completion" if task == "sft" else ""
    return (
        f"{where}: this is unpaired preference data (format '{fmt}': prompt/completion/label); "
        f"{task} training needs {need}{hint}"
    )
