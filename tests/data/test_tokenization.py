"""The prompt/response boundary rule, boundary-merge counting, and truncation."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignlab.data import DataSpec, load_preference_data, load_sft_data
from alignlab.errors import ConfigError, DataError

ALPHABET = "ab xyzAZ019.,:!?\n\té☕日本ß—’"
text = st.text(alphabet=ALPHABET, min_size=1, max_size=30).filter(lambda s: s.strip())


def enc(tok, s):
    return tok.encode(s, add_special_tokens=False)


def dec(tok, ids):
    return tok.decode(ids, clean_up_tokenization_spaces=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=text, chosen=text, rejected=text)
def test_boundary_is_exact(tokenizer, prompt, chosen, rejected):
    (ex,), report = load_preference_data(
        [{"prompt": prompt, "chosen": chosen, "rejected": rejected}], tokenizer, drop_identical_pairs=False
    )
    p = ex["prompt_input_ids"]
    assert dec(tokenizer, p) == prompt
    eos = tokenizer.eos_token_id
    merges = False
    for side, response in (("chosen", chosen), ("rejected", rejected)):
        ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
        assert ids[: len(p)] == p
        assert dec(tokenizer, ids[len(p) : -1]) == response
        assert ids[-1] == eos
        # labels: -100 exactly on the prompt, the id everywhere else (EOS included)
        assert labels == [-100] * len(p) + ids[len(p) :]
        merges |= enc(tokenizer, prompt + response) != enc(tokenizer, prompt) + enc(tokenizer, response)
    assert report.n_boundary_merges == int(merges)
    assert report.n_identical_pairs == int(chosen == rejected)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=text, completion=text)
def test_sft_boundary_is_exact(tokenizer, prompt, completion):
    (ex,), _ = load_sft_data([{"prompt": prompt, "completion": completion}], tokenizer)
    n = len(enc(tokenizer, prompt))
    assert dec(tokenizer, ex["input_ids"][:n]) == prompt
    assert dec(tokenizer, ex["input_ids"][n:-1]) == completion
    assert ex["labels"] == [-100] * n + ex["input_ids"][n:]


def test_merge_across_boundary_is_counted_and_separate_encoding_kept(tokenizer):
    joint = enc(tokenizer, "Assistant: Hello")
    separate = enc(tokenizer, "Assistant: ") + enc(tokenizer, "Hello")
    assert joint != separate  # the trap this test is about exists for this tokenizer
    records = [
        {"prompt": "Assistant: ", "chosen": "Hello", "rejected": "Bye"},
        {"prompt": "Assistant:", "chosen": " Hello", "rejected": " Bye"},
    ]
    examples, report = load_preference_data(records, tokenizer)
    assert report.n_boundary_merges == 1
    assert examples[0]["chosen_input_ids"][:-1] == separate
    assert examples[1]["chosen_input_ids"][:-1] == enc(tokenizer, "Assistant: Hello")


def long_pair(tok, n_prompt=40, n_chosen=30, n_rejected=10):
    # "a"*k with spaces: one token per " w" word is not guaranteed, so lengths are measured, not assumed
    prompt = " ".join(f"p{i}" for i in range(n_prompt))
    chosen = " " + " ".join(f"c{i}" for i in range(n_chosen))
    rejected = " " + " ".join(f"r{i}" for i in range(n_rejected))
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


@pytest.mark.parametrize("keep", ["keep_end", "keep_start"])
def test_prompt_truncation(tokenizer, keep):
    rec = long_pair(tokenizer)
    p, c = enc(tokenizer, rec["prompt"]), enc(tokenizer, rec["chosen"]) + [tokenizer.eos_token_id]
    max_prompt = 10
    max_length = max_prompt + len(c)  # fits once the prompt is cut
    (ex,), report = load_preference_data(
        [rec], tokenizer, max_length=max_length, max_prompt_length=max_prompt, prompt_truncation=keep
    )
    expected = p[-max_prompt:] if keep == "keep_end" else p[:max_prompt]
    assert ex["prompt_input_ids"] == expected
    assert ex["chosen_input_ids"] == expected + c and not ex["eos_dropped"]
    assert ex["chosen_labels"] == [-100] * max_prompt + c
    assert (report.n_prompt_truncated, report.n_response_truncated) == (1, 0)


def test_no_truncation_when_it_fits_even_with_a_long_prompt(tokenizer):
    rec = long_pair(tokenizer)
    p = enc(tokenizer, rec["prompt"])
    total = len(p) + len(enc(tokenizer, rec["chosen"])) + 1
    (ex,), report = load_preference_data([rec], tokenizer, max_length=total, max_prompt_length=5)
    assert ex["prompt_input_ids"] == p and report.n_prompt_truncated == 0


def test_response_truncation_drops_eos(tokenizer):
    rec = long_pair(tokenizer)
    p = enc(tokenizer, rec["prompt"])
    c = enc(tokenizer, rec["chosen"]) + [tokenizer.eos_token_id]
    r = enc(tokenizer, rec["rejected"]) + [tokenizer.eos_token_id]
    max_prompt, room = 8, len(r) + 2  # rejected fits, chosen does not
    (ex,), report = load_preference_data(
        [rec], tokenizer, max_length=max_prompt + room, max_prompt_length=max_prompt
    )
    assert ex["prompt_input_ids"] == p[-max_prompt:]
    assert ex["chosen_input_ids"] == p[-max_prompt:] + c[:room]
    assert ex["chosen_labels"][-1] != tokenizer.eos_token_id
    assert ex["rejected_input_ids"] == p[-max_prompt:] + r  # untouched, EOS kept
    assert ex["eos_dropped"] is True
    assert len(ex["chosen_input_ids"]) == max_prompt + room
    assert (report.n_prompt_truncated, report.n_response_truncated) == (1, 1)


def test_drop_example(tokenizer):
    records = [long_pair(tokenizer), {"prompt": "short", "chosen": " ok", "rejected": " no"}]
    examples, report = load_preference_data(
        records, tokenizer, max_length=20, max_prompt_length=8, response_truncation="drop_example"
    )
    assert [e["index"] for e in examples] == [1]
    assert (report.n_dropped_truncation, report.n_kept, report.n_records) == (1, 1, 2)


def test_empty_after_truncation_is_dropped_and_counted(tokenizer):
    records = [long_pair(tokenizer), {"prompt": "short", "chosen": " ok", "rejected": " no"}]
    examples, report = load_preference_data(records, tokenizer, max_length=12, max_prompt_length=12)
    assert [e["index"] for e in examples] == [1]
    assert report.n_dropped_empty == 1 and report.n_response_truncated == 0


def test_sft_truncation(tokenizer):
    rec = {"prompt": long_pair(tokenizer)["prompt"], "completion": long_pair(tokenizer)["chosen"]}
    p, c = enc(tokenizer, rec["prompt"]), enc(tokenizer, rec["completion"])
    (ex,), report = load_sft_data(
        [rec], tokenizer, max_length=16, max_prompt_length=6, prompt_truncation="keep_start"
    )
    assert ex["input_ids"] == p[:6] + c[:10] and ex["labels"] == [-100] * 6 + c[:10] and ex["eos_dropped"]
    assert (report.n_prompt_truncated, report.n_response_truncated) == (1, 1)
    with pytest.raises(DataError, match=r"no example left \(data: 1 records -> 0 examples; 1 dropped as too long "
                                        r"\(response_truncation: drop_example\)\); raise max_length \(now 16\)"):
        load_sft_data([rec], tokenizer, max_length=16, max_prompt_length=6, response_truncation="drop_example")


def test_one_spec_object_or_its_fields_as_keywords(tokenizer):
    records = [long_pair(tokenizer), {"prompt": "short", "chosen": " ok", "rejected": " no"}]
    spec = DataSpec(max_length=20, max_prompt_length=8)
    by_spec = load_preference_data(records, tokenizer, spec)
    assert by_spec == load_preference_data(records, tokenizer, max_length=20, max_prompt_length=8)
    # keywords replace fields of a given spec
    assert load_preference_data(records, tokenizer, DataSpec(max_length=64, max_prompt_length=32), max_length=20,
                                max_prompt_length=8) == by_spec
    with pytest.raises(ConfigError, match="'max_len' is not a data setting"):
        load_preference_data(records, tokenizer, max_len=20)
    with pytest.raises(ConfigError, match="sft_turns applies to SFT data, not preference pairs"):
        load_preference_data(records, tokenizer, sft_turns="last")
    _, report = by_spec
    assert report.changes() == ("data: 2 records -> 2 examples; 1 with the prompt cut to max_prompt_length, "
                                "1 with responses cut at max_length (EOS lost)")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_length": 1},
        {"max_prompt_length": 0},
        {"max_length": 10, "max_prompt_length": 11},
        {"prompt_truncation": "middle"},
        {"response_truncation": "keep"},
        {"format": "csv"},
        {"columns": {"answer": "x"}},
        {"limit": -1},
    ],
)
def test_bad_options_raise(tokenizer, kwargs):
    with pytest.raises(ConfigError):
        load_preference_data([{"prompt": "a", "chosen": "b", "rejected": "c"}], tokenizer, **kwargs)


def test_bad_sft_turns_raise(tokenizer):
    with pytest.raises(ConfigError, match="sft_turns"):
        load_sft_data([{"text": "a"}], tokenizer, sft_turns="first")


def test_report_summary_is_readable(tokenizer):
    records = [{"prompt": "a", "chosen": " b", "rejected": " b"}]
    _, report = load_preference_data(records, tokenizer, drop_identical_pairs=False)
    s = str(report)
    assert "1 records (standard) -> 1 examples kept" in s and "identical pairs kept: 1" in s
    assert report.n_identical_pairs == 1 and any("identical" in w for w in report.warnings)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=text, chosen=text, rejected=text)
def test_chat_boundary_is_exact(tokenizer, user, chosen, rejected):
    record = {
        "prompt": [{"role": "user", "content": user}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }
    (ex,), _ = load_preference_data([record], tokenizer, drop_identical_pairs=False)
    p = ex["prompt_input_ids"]
    assert dec(tokenizer, p) == f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    for side, content in (("chosen", chosen), ("rejected", rejected)):
        ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
        assert ids[: len(p)] == p and labels == [-100] * len(p) + ids[len(p) :]
        assert dec(tokenizer, ids[len(p) : -1]) == f"{content}<|im_end|>\n"


def test_a_spec_is_a_value():
    columns = {"prompt": "question"}
    spec = DataSpec(columns=columns)
    columns["chosen"] = "good"  # the caller's dict is not the spec's
    assert spec.columns == {"prompt": "question"} and spec == DataSpec(columns={"prompt": "question"})
    assert hash(spec) == hash(DataSpec(columns={"prompt": "question"})) and DataSpec(columns={}) == DataSpec()
    with pytest.raises(ConfigError, match="must be a DataSpec, got str"):
        DataSpec.of("test")
