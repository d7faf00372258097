"""Every format end to end: detection, the prompt/response split, and the tokenized contract."""

import copy

import pytest

from alignlab.data import (
    DEFAULT_CHAT_TEMPLATE,
    SAMPLES_DIR,
    load_preference_data,
    load_sft_data,
    render_messages,
)
from alignlab.data.formats import split_implicit_strings
from alignlab.errors import DataError


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def check_side(tok, ex, side, prompt_text, response_text):
    """The contract, checked from the token ids and an independent encoding of the texts."""
    p = ex["prompt_input_ids"]
    ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
    assert len(ids) == len(labels)
    assert p == enc(tok, prompt_text)
    assert ids[: len(p)] == p
    assert labels[: len(p)] == [-100] * len(p)
    assert ids[len(p) :] == enc(tok, response_text) + [tok.eos_token_id]
    assert labels[len(p) :] == ids[len(p) :]
    assert tok.decode(ids[len(p) : -1]) == response_text


def test_standard(tokenizer, write_jsonl):
    path = write_jsonl(
        [
            {
                "prompt": "Write a review of the café.",
                "chosen": " Lovely crème brûlée ☕.",
                "rejected": " Awful.",
                "alpha": 0.75,
            },
            {"prompt": "Hi", "chosen": "Hello there", "rejected": "Go away"},
        ]
    )
    examples, report = load_preference_data(path, tokenizer)
    assert report.format == "standard" and report.n_kept == 2
    check_side(tokenizer, examples[0], "chosen", "Write a review of the café.", " Lovely crème brûlée ☕.")
    check_side(tokenizer, examples[0], "rejected", "Write a review of the café.", " Awful.")
    assert examples[0]["alpha"] == 0.75 and "alpha" not in examples[1]
    assert [e["index"] for e in examples] == [0, 1]
    assert examples[0]["eos_dropped"] is False


def test_conversational_uses_default_chatml(tokenizer, write_jsonl):
    prompt = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi ☕"}]
    path = write_jsonl(
        [
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": "Hello!"}],
                "rejected": [{"role": "assistant", "content": "No."}],
            }
        ]
    )
    (ex,), report = load_preference_data(path, tokenizer)
    assert report.format == "conversational"
    prompt_text = (
        "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi ☕<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(ex["prompt_input_ids"]) == prompt_text
    check_side(tokenizer, ex, "chosen", prompt_text, "Hello!<|im_end|>\n")
    check_side(tokenizer, ex, "rejected", prompt_text, "No.<|im_end|>\n")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert im_end in [t for t, lab in zip(ex["chosen_input_ids"], ex["chosen_labels"]) if lab != -100]


def test_tokenizer_template_matches_default_and_is_used(tokenizer):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    templated = copy.deepcopy(tokenizer)
    templated.chat_template = DEFAULT_CHAT_TEMPLATE
    for gen in (False, True):
        assert render_messages(templated, messages, add_generation_prompt=gen) == render_messages(
            tokenizer, messages, add_generation_prompt=gen
        )
    # a template of the tokenizer's own is used instead of the default
    templated.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    records = [
        {
            "prompt": [messages[0]],
            "chosen": [messages[1]],
            "rejected": [{"role": "assistant", "content": "x"}],
        }
    ]
    (ex,), _ = load_preference_data(records, templated)
    assert templated.decode(ex["prompt_input_ids"]) == "[user] Hi\n[assistant] "
    check_side(templated, ex, "chosen", "[user] Hi\n[assistant] ", "Yo\n")


def test_non_prefix_consistent_template_fails_loudly(tokenizer):
    bad = copy.deepcopy(tokenizer)
    # renders the last message differently from earlier ones: the prefix property breaks
    bad.chat_template = (
        "{% for m in messages %}{% if loop.last %}<{{ m['content'] }}>{% else %}{{ m['content'] }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
    )
    records = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    with pytest.raises(DataError, match=r"<records> record 0: the chat template .* not a prefix"):
        load_sft_data(records, bad)


def test_implicit_messages(tokenizer):
    convo = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tea?"},
    ]
    records = [
        {
            "chosen": convo + [{"role": "assistant", "content": "Yes, please."}],
            "rejected": convo + [{"role": "assistant", "content": "No."}],
        }
    ]
    (ex,), report = load_preference_data(records, tokenizer)
    assert report.format == "implicit"
    prompt_text = render_messages(tokenizer, convo, add_generation_prompt=True)
    check_side(tokenizer, ex, "chosen", prompt_text, "Yes, please.<|im_end|>\n")
    check_side(tokenizer, ex, "rejected", prompt_text, "No.<|im_end|>\n")


def test_implicit_strings_split_rule(tokenizer):
    assert split_implicit_strings("Q: hi\nA: Yes sure", "Q: hi\nA: Yesterday") == (
        "Q: hi\nA:",
        " Yes sure",
        " Yesterday",
    )
    assert split_implicit_strings("Q:\n\nGood", "Q:\n\nBad") == ("Q:", "\n\nGood", "\n\nBad")
    (ex,), report = load_preference_data(
        [{"chosen": "Q: hi\nA: Good", "rejected": "Q: hi\nA: Bad"}], tokenizer
    )
    assert report.format == "implicit"
    check_side(tokenizer, ex, "chosen", "Q: hi\nA:", " Good")


def test_hh_multi_turn_prompt_is_up_to_last_assistant_tag(tokenizer):
    history = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Coffee ☕?\n\nAssistant:"
    records = [{"chosen": history + " Sure, here you go.", "rejected": history + " No."}]
    (ex,), report = load_preference_data(records, tokenizer)
    assert report.format == "hh"
    check_side(tokenizer, ex, "chosen", history, " Sure, here you go.")
    check_side(tokenizer, ex, "rejected", history, " No.")


def test_hh_rejected_must_share_prompt(tokenizer):
    records = [
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant: y"},
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},
    ]
    with pytest.raises(DataError) as e:
        load_preference_data(records, tokenizer)
    assert str(e.value) == (
        "<records> record 1: field 'rejected' does not start with the prompt of 'chosen' "
        "(its text up to the last '\\n\\nAssistant:')"
    )


def test_hh_empty_response_is_dropped_and_counted(tokenizer):
    records = [
        {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: A\n\nAssistant: "},
        {"chosen": "\n\nHuman: B\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"},
    ]
    examples, report = load_preference_data(records, tokenizer)
    assert [e["index"] for e in examples] == [1]
    assert report.n_dropped_empty == 1 and report.n_kept == 1
    assert any("empty response" in w for w in report.warnings)


def test_ranking_expands_to_ordered_pairs(tokenizer):
    records = [{"prompt": "Q", "responses": [" b", " a", " c"], "ranks": [2, 1, 2], "votes": [1, 3, 1]}]
    examples, report = load_preference_data(records, tokenizer)
    assert report.format == "ranking"
    assert sorted(e["pair"] for e in examples) == [(1, 0), (1, 2)]  # the tie (0, 2) gives no pair
    for e in examples:
        c, r = e["pair"]
        check_side(tokenizer, e, "chosen", "Q", [" b", " a", " c"][c])
        check_side(tokenizer, e, "rejected", "Q", [" b", " a", " c"][r])
        assert e["votes"] == [1, 3, 1] and e["index"] == 0


def check_sft(tok, ex, segments):
    """segments: [(text, trained)]; EOS appended and trained after a trained last segment."""
    ids, labels = [], []
    for text, trained in segments:
        t = enc(tok, text)
        ids += t
        labels += t if trained else [-100] * len(t)
    if segments[-1][1]:
        ids.append(tok.eos_token_id)
        labels.append(tok.eos_token_id)
    assert ex["input_ids"] == ids and ex["labels"] == labels


def test_sft_prompt_completion_and_text(tokenizer):
    (ex,), report = load_sft_data([{"prompt": "Say hi.", "completion": " Hi ☕"}], tokenizer)
    assert report.format == "prompt_completion"
    check_sft(tokenizer, ex, [("Say hi.", False), (" Hi ☕", True)])
    (ex,), report = load_sft_data([{"text": "All of it is trained."}], tokenizer)
    assert report.format == "text"
    check_sft(tokenizer, ex, [("All of it is trained.", True)])


@pytest.mark.parametrize("turns", ["all", "last"])
def test_sft_messages_turns(tokenizer, turns):
    m = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
        {"role": "assistant", "content": "A2"},
    ]
    (ex,), _ = load_sft_data([{"messages": m}], tokenizer, sft_turns=turns)
    head = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\n"
    mid = "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n"
    if turns == "all":
        check_sft(
            tokenizer, ex, [(head, False), ("A1<|im_end|>\n", True), (mid, False), ("A2<|im_end|>\n", True)]
        )
    else:
        check_sft(tokenizer, ex, [(head + "A1<|im_end|>\n" + mid, False), ("A2<|im_end|>\n", True)])


def test_sft_from_preference_data_trains_chosen(tokenizer):
    (ex,), report = load_sft_data([{"prompt": "P:", "chosen": " good", "rejected": " bad"}], tokenizer)
    assert report.format == "standard"
    check_sft(tokenizer, ex, [("P:", False), (" good", True)])
    (ex,), _ = load_sft_data([{"prompt": "P:", "responses": [" b", " a"], "ranks": [2, 1]}], tokenizer)
    check_sft(tokenizer, ex, [("P:", False), (" a", True)])


def test_response_already_ending_in_eos_is_not_duplicated(tokenizer):
    (ex,), _ = load_preference_data(
        [{"prompt": "P", "chosen": " a<|endoftext|>", "rejected": " b"}], tokenizer
    )
    eos = tokenizer.eos_token_id
    assert ex["chosen_input_ids"][-1] == eos and ex["chosen_input_ids"][-2] != eos
    assert ex["chosen_labels"][-1] == eos


def test_sft_data_rejected_by_preference_loader(tokenizer):
    with pytest.raises(DataError, match="record 0: this is SFT data"):
        load_preference_data([{"prompt": "a", "completion": "b"}], tokenizer)


def test_undetectable_format_names_fields(tokenizer):
    with pytest.raises(DataError, match=r"record 0: cannot detect the data format from fields \[foo\]"):
        load_preference_data([{"foo": 1}], tokenizer)


@pytest.mark.parametrize("name", ["pairs", "pairs_conversational", "pairs_implicit", "pairs_hh", "ranking"])
def test_samples_load_as_preference(tokenizer, name):
    examples, report = load_preference_data(SAMPLES_DIR / f"{name}.jsonl", tokenizer)
    assert report.n_kept == len(examples) > 0 and report.n_dropped_empty == 0
    for ex in examples:
        p = ex["prompt_input_ids"]
        for side in ("chosen", "rejected"):
            assert ex[f"{side}_input_ids"][: len(p)] == p
            assert ex[f"{side}_labels"][: len(p)] == [-100] * len(p)
            assert ex[f"{side}_labels"][-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("name", ["sft", "sft_messages", "pairs_hh"])
def test_samples_load_as_sft(tokenizer, name):
    examples, report = load_sft_data(SAMPLES_DIR / f"{name}.jsonl", tokenizer)
    assert report.n_kept == len(examples) > 0
    assert all(e["labels"][-1] == tokenizer.eos_token_id for e in examples)
