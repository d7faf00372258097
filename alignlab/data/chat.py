"""Chat rendering: messages -> text segments with a trained flag.

Messages arrive validated by ``alignlab.data.formats``: roles are system, user and assistant, a system message
only first, then user and assistant turns alternating from a user turn, the order that strict templates
(Llama-2, Mistral, Gemma) enforce by raising, so a template never sees an order it was not written for.

The tokenizer's own ``chat_template`` is used when it has one; otherwise alignlab's ``DEFAULT_CHAT_TEMPLATE``
(ChatML): each message is ``"<|im_start|>{role}\\n{content}<|im_end|>\\n"`` and the generation prompt is
``"<|im_start|>assistant\\n"``. Rendering adds no system message and no BOS of its own: the text is what the
template renders (a template that starts with ``{{ bos_token }}``, as Llama-3's and Gemma's do, renders the BOS
string, which encodes to the BOS id), and ``alignlab.data.tokenization`` then starts each sequence as the
tokenizer would, adding a BOS only where the rendering does not already start with it.

Segments come from incremental rendering, checked for the prefix property: with r_k = render(messages[:k]) and g_k = render(messages[:k], add_generation_prompt=True),
message k contributes r_{k+1}[len(r_k):]; for a trained assistant message that text is split into the header
g_k[len(r_k):] (untrained) and the rest, the content and the end-of-turn marker (trained). Every r_k must be a
prefix of g_k and r_{k+1}; a template that re-renders earlier turns differently (for example one that strips
the reasoning of older turns) fails loudly instead of mis-aligning labels.
"""

from __future__ import annotations

from typing import Any

from alignlab.errors import DataError

Segment = tuple[str, bool]  # (text, trained)

DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _chatml(messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    # Same output as DEFAULT_CHAT_TEMPLATE (a test pins them together), without a Jinja call per prefix.
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def render_messages(
    tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool = False
) -> str:
    """Render messages to text with the tokenizer's chat template, or DEFAULT_CHAT_TEMPLATE if it has none."""
    if not messages:
        return ""
    if getattr(tokenizer, "chat_template", None) is None:
        return _chatml(messages, add_generation_prompt)
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def chat_segments(
    tokenizer: Any, messages: list[dict[str, str]], trained: list[bool], *, where: str = "<record>"
) -> list[Segment]:
    """Text segments of a conversation; ``trained[k]`` marks assistant message k as trained.

    Messages before the first trained one are rendered as one untrained block (they need no split). Raises
    DataError naming ``where`` if the template is not prefix-consistent.
    """
    if len(trained) != len(messages):
        raise ValueError("trained must have one flag per message")
    first = trained.index(True) if any(trained) else len(messages)
    previous = render_messages(tokenizer, messages[:first])
    segments: list[Segment] = [(previous, False)]
    for k in range(first, len(messages)):
        full = render_messages(tokenizer, messages[: k + 1])
        _check_prefix(previous, full, where, k, "the rendering of the messages before it")
        if trained[k]:
            if messages[k]["role"] != "assistant":
                raise ValueError(f"only assistant messages can be trained (message {k})")
            header = render_messages(tokenizer, messages[:k], add_generation_prompt=True)
            _check_prefix(previous, header, where, k, "the rendering of the messages before it")
            _check_prefix(header, full, where, k, "the generation prompt before it")
            segments += [(header[len(previous) :], False), (full[len(header) :], True)]
        else:
            segments.append((full[len(previous) :], False))
        previous = full
    return merge_segments(segments)


def merge_segments(segments: list[Segment]) -> list[Segment]:
    """Join neighbouring segments with the same flag and drop empty ones."""
    out: list[Segment] = []
    for text, trained in segments:
        if not text:
            continue
        if out and out[-1][1] == trained:
            out[-1] = (out[-1][0] + text, trained)
        else:
            out.append((text, trained))
    return out


def _check_prefix(prefix: str, text: str, where: str, k: int, what: str) -> None:
    if not text.startswith(prefix):
        i = next((i for i, (a, b) in enumerate(zip(prefix, text)) if a != b), min(len(prefix), len(text)))
        raise DataError(
            f"{where}: the chat template renders message {k} so that {what} is not a prefix of it "
            f"(first difference at character {i}: {prefix[i : i + 20]!r} vs {text[i : i + 20]!r}); "
            "alignlab needs a prefix-consistent template to find the trained tokens"
        )
