"""BOS follows the tokenizer: each sequence starts as ``tokenizer(text)`` would start it, never with two BOS.

The tokenizers are built here, offline: a byte-level BPE with no merges (one id per byte, so encodings are easy
to reason about) and one of these behaviours (``KINDS``):
- ``gpt2``: adds no special tokens (GPT-2, Qwen2);
- ``llama``: post-processor ``<s> $A`` (Llama, Mistral, Gemma without a template);
- ``bos_eos``: post-processor ``<s> $A </s>`` (adds EOS too; alignlab must not double its own EOS);
- ``two``: post-processor ``<s> <sys> $A`` (a two-id prefix);
- ``llama3``: ``<s> $A`` and a chat template that starts with ``{{ bos_token }}`` (Llama-3, Gemma);
- ``template_only``: adds nothing, but its chat template renders ``{{ bos_token }}``.
Expected sequences come from the tokenizer itself (``tokenizer(text)``, ``apply_chat_template``), not from
alignlab's code.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from alignlab.data import DataReport, DataSpec, SFTItem, load_preference_data, load_sft_data
from alignlab.data.tokenization import default_special_ids, tokenize_sft
from alignlab.errors import ConfigError

SPECIALS = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>", "<sys>"]
BOS, EOS, SYS = 0, 1, 5
POST = {"llama": "<s> $A", "bos_eos": "<s> $A </s>", "two": "<s> <sys> $A", "llama3": "<s> $A"}
PREFIX = {
    "gpt2": [],
    "llama": [BOS],
    "bos_eos": [BOS],
    "two": [BOS, SYS],
    "llama3": [BOS],
    "template_only": [],
}
KINDS = list(PREFIX)
TEMPLATE_BOS = {"llama3", "template_only"}
BOS_CHATML = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
IGNORE = -100


def make_tokenizer(kind: str) -> PreTrainedTokenizerFast:
    vocab = {t: i for i, t in enumerate(SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIALS)
    if kind in POST:
        backend.post_processor = processors.TemplateProcessing(
            single=POST[kind], special_tokens=[("<s>", BOS), ("</s>", EOS), ("<sys>", SYS)]
        )
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<sys>"],
        clean_up_tokenization_spaces=False,
    )
    if kind in TEMPLATE_BOS:
        tok.chat_template = BOS_CHATML
    return tok


@pytest.fixture(scope="module")
def toks():
    return {kind: make_tokenizer(kind) for kind in KINDS}


def enc(tok, s):
    return tok.encode(s, add_special_tokens=False)


def as_tokenizer_starts(kind, tok, text, *, from_template=False):
    """The tokenizer's own encoding of a prompt: default special tokens, less an appended EOS (alignlab
    appends EOS to responses, not prompts); a template's rendering is encoded without them (as HF's
    apply_chat_template does) only where the template emitted the BOS, else the BOS would be doubled."""
    ids = tok(text, add_special_tokens=not (from_template and kind in TEMPLATE_BOS))["input_ids"]
    return ids[:-1] if kind == "bos_eos" and not (from_template and kind in TEMPLATE_BOS) else ids


def n_bos_expected(kind, chat):
    return int(kind in POST or (chat and kind in TEMPLATE_BOS))


def check_sequence(kind, ids, labels, n_prompt, *, chat=False):
    """One BOS at the start iff the tokenizer (or its template) starts with one, never a second; the prompt,
    BOS included, unlabelled; one EOS at the end."""
    n_bos = n_bos_expected(kind, chat)
    assert ids[:n_bos] == [BOS] * n_bos and ids.count(BOS) == n_bos
    if kind == "two":
        assert ids[:2] == [BOS, SYS] and ids.count(SYS) == 1
    assert labels[:n_prompt] == [IGNORE] * n_prompt and labels[n_prompt:] == ids[n_prompt:]
    assert IGNORE not in labels[n_prompt:]


def chatml(messages, gen):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if gen else "")


def rendered(kind, tok, messages, gen):
    if kind in TEMPLATE_BOS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        assert text == "<s>" + chatml(messages, gen)
        return text
    return chatml(messages, gen)


def test_detection(toks, tokenizer):
    for kind, tok in toks.items():
        specials = default_special_ids(tok)
        assert list(specials.prefix) == PREFIX[kind]
        assert specials.suffix == ((EOS,) if kind == "bos_eos" else ())
        assert default_special_ids(tok) is specials  # cached per tokenizer object
    # alignlab's own tokenizer adds nothing: its ids are unchanged (tests/data/test_tokenization.py pins them)
    assert default_special_ids(tokenizer).prefix == () == default_special_ids(tokenizer).suffix


def test_detection_probes_once_per_tokenizer():
    class Counting:
        """Forwards to a fresh tokenizer and counts encodes with the default special tokens."""

        def __init__(self, tok):
            self.tok, self.probes = tok, 0

        def encode(self, text, add_special_tokens=True):
            self.probes += add_special_tokens
            return self.tok.encode(text, add_special_tokens=add_special_tokens)

        def __getattr__(self, name):
            return getattr(self.tok, name)

    tok = Counting(make_tokenizer("llama"))
    records = [{"prompt": f"q{i}", "chosen": " yes", "rejected": " no"} for i in range(20)]
    for _ in range(2):
        examples, _ = load_preference_data(records, tok)
        assert all(e["prompt_input_ids"][0] == BOS for e in examples)
    load_sft_data([{"text": "hello"}], tok)
    assert tok.probes == 1


@pytest.mark.parametrize("kind", KINDS)
def test_standard_pairs(toks, kind):
    tok = toks[kind]
    rec = {"prompt": "Q: tea or coffee?\nA:", "chosen": " Tea.", "rejected": " Coffee, black."}
    (ex,), _ = load_preference_data([rec], tok)
    p = ex["prompt_input_ids"]
    assert p == as_tokenizer_starts(kind, tok, rec["prompt"])
    for side in ("chosen", "rejected"):
        ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
        assert ids == p + enc(tok, rec[side]) + [EOS]  # prompt an exact prefix; one EOS, not two
        check_sequence(kind, ids, labels, len(p))


@pytest.mark.parametrize("kind", KINDS)
def test_conversational_pairs(toks, kind):
    tok = toks[kind]
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    rec = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
    (ex,), _ = load_preference_data([rec], tok)
    p = ex["prompt_input_ids"]
    assert p == as_tokenizer_starts(kind, tok, rendered(kind, tok, prompt, True), from_template=True)
    for side in ("chosen", "rejected"):
        ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
        full = rendered(kind, tok, prompt + rec[side], False)
        assert ids == as_tokenizer_starts(kind, tok, full, from_template=True) + [EOS]
        assert ids[: len(p)] == p
        check_sequence(kind, ids, labels, len(p), chat=True)


@pytest.mark.parametrize("kind", KINDS)
def test_sft_prompt_completion(toks, kind):
    tok = toks[kind]
    (ex,), _ = load_sft_data([{"prompt": "Say hi:", "completion": " hi"}], tok)
    p = as_tokenizer_starts(kind, tok, "Say hi:")
    assert ex["input_ids"] == p + enc(tok, " hi") + [EOS]
    check_sequence(kind, ex["input_ids"], ex["labels"], len(p))


@pytest.mark.parametrize("kind", KINDS)
def test_sft_text(toks, kind):
    tok = toks[kind]
    (ex,), _ = load_sft_data([{"text": "All of this is trained."}], tok)
    n = len(PREFIX[kind])
    assert ex["input_ids"] == PREFIX[kind] + enc(tok, "All of this is trained.") + [EOS]
    check_sequence(kind, ex["input_ids"], ex["labels"], n)  # the BOS alone is the (unscored) prompt


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("opens_with_assistant", [False, True])
def test_sft_messages(toks, kind, opens_with_assistant):
    tok = toks[kind]
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tea?"},
        {"role": "assistant", "content": "Yes."},
    ]
    if opens_with_assistant:  # no untrained lead: a template's BOS must still be unlabelled, and single
        messages = messages[1:]
        # validation refuses a conversation opening with an assistant turn (formats.py), but tokenize_sft is
        # public and must still handle a trained first message
        item = SFTItem("messages", 0, "<records> record 0", messages=messages)
        (ex,) = tokenize_sft([item], tok, DataReport(), DataSpec())
    else:
        (ex,), _ = load_sft_data([{"messages": messages}], tok)
    ids, labels = ex["input_ids"], ex["labels"]
    expected = as_tokenizer_starts(kind, tok, rendered(kind, tok, messages, False), from_template=True)
    assert ids == expected + [EOS]
    n_bos = n_bos_expected(kind, chat=True)
    assert ids[:n_bos] == [BOS] * n_bos and ids.count(BOS) == n_bos
    n_lead = max(len(PREFIX[kind]), n_bos)  # the BOS (the two-id prefix) is never trained
    assert labels[:n_lead] == [IGNORE] * n_lead
    assert all(label in (IGNORE, i) for label, i in zip(labels, ids))
    trained = tok.decode([i for i, label in zip(ids, labels) if label != IGNORE])
    assert "<s>" not in trained and "Hello<|im_end|>\n" in trained
    assert trained.endswith("Yes.<|im_end|>\n</s>")


def long_pair():
    return {
        "prompt": " ".join(f"p{i}" for i in range(30)),
        "chosen": " " + " ".join(f"c{i}" for i in range(8)),
        "rejected": " r0 r1",
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keep", ["keep_end", "keep_start"])
def test_prompt_truncation_keeps_the_bos_and_counts_it(toks, kind, keep):
    tok = toks[kind]
    rec = long_pair()
    prefix, body = PREFIX[kind], enc(tok, rec["prompt"])
    c = enc(tok, rec["chosen"]) + [EOS]
    max_prompt = 12
    (ex,), report = load_preference_data(
        [rec], tok, max_length=max_prompt + len(c), max_prompt_length=max_prompt, prompt_truncation=keep
    )
    p = ex["prompt_input_ids"]
    assert len(p) == max_prompt and report.n_prompt_truncated == 1  # the BOS counts toward the limit
    rest = max_prompt - len(prefix)
    assert p == prefix + (body[-rest:] if keep == "keep_end" else body[:rest])
    assert ex["chosen_input_ids"] == p + c and not ex["eos_dropped"]
    check_sequence(kind, ex["chosen_input_ids"], ex["chosen_labels"], len(p))


@pytest.mark.parametrize("kind", ["llama3", "template_only", "llama"])
def test_chat_prompt_truncation_keeps_the_bos(toks, kind):
    tok = toks[kind]
    prompt = [{"role": "user", "content": " ".join(f"w{i}" for i in range(40))}]
    rec = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": "ok"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    }
    (ex,), report = load_preference_data([rec], tok, max_length=40, max_prompt_length=30)
    p = ex["prompt_input_ids"]
    full = as_tokenizer_starts(kind, tok, rendered(kind, tok, prompt, True), from_template=True)
    assert report.n_prompt_truncated == 1 and len(p) == 30
    assert p == full[:1] + full[-29:]  # the BOS, then the end: the generation header survives
    check_sequence(kind, ex["chosen_input_ids"], ex["chosen_labels"], len(p), chat=True)


@pytest.mark.parametrize("kind", KINDS)
def test_response_and_text_truncation_keep_the_bos(toks, kind):
    tok = toks[kind]
    prefix = PREFIX[kind]
    (ex,), report = load_preference_data([long_pair()], tok, max_length=20, max_prompt_length=10)
    assert len(ex["chosen_input_ids"]) == 20 and ex["eos_dropped"] and report.n_response_truncated == 1
    assert ex["chosen_input_ids"][: len(prefix)] == prefix
    check_sequence(kind, ex["chosen_input_ids"], ex["chosen_labels"], 10)
    text = " ".join(f"t{i}" for i in range(20))
    (ex,), report = load_sft_data([{"text": text}], tok, max_length=16, max_prompt_length=4)
    assert ex["input_ids"] == prefix + enc(tok, text)[: 16 - len(prefix)] and ex["eos_dropped"]
    check_sequence(kind, ex["input_ids"], ex["labels"], len(prefix))


def test_max_prompt_length_below_the_prefix_is_an_error(toks):
    rec = {"prompt": "q", "chosen": " a", "rejected": " b"}
    with pytest.raises(ConfigError, match="max_prompt_length=1 cannot hold the 2 ids"):
        load_preference_data([rec], toks["two"], max_length=8, max_prompt_length=1)
    (ex,), _ = load_preference_data([rec], toks["llama"], max_length=8, max_prompt_length=1)
    assert ex["prompt_input_ids"] == [BOS, *enc(toks["llama"], "q")]  # fits: no cut


ALPHABET = "ab xyzAZ019.,:!?\n\té☕日本"
text = st.text(alphabet=ALPHABET, min_size=1, max_size=20).filter(lambda s: s.strip())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(KINDS),
    prompt=text,
    chosen=text,
    rejected=text,
    keep=st.sampled_from(["keep_end", "keep_start"]),
)
def test_pairs_property(toks, kind, prompt, chosen, rejected, keep):
    tok = toks[kind]
    (ex,), _ = load_preference_data(
        [{"prompt": prompt, "chosen": chosen, "rejected": rejected}],
        tok,
        max_length=24,
        max_prompt_length=8,
        prompt_truncation=keep,
        drop_identical_pairs=False,  # hypothesis draws chosen == rejected too
    )
    p = ex["prompt_input_ids"]
    assert p[: len(PREFIX[kind])] == PREFIX[kind] and len(p) <= max(
        8, len(as_tokenizer_starts(kind, tok, prompt))
    )
    for side in ("chosen", "rejected"):
        ids = ex[f"{side}_input_ids"]
        assert ids[: len(p)] == p and len(ids) <= 24
        check_sequence(kind, ids, ex[f"{side}_labels"], len(p))
