"""Unpaired (KTO) data: detection, validation errors, tokenization (the pairs' boundary, BOS and truncation rules),
and collation with TRL 1.16's mismatched KL batch."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignlab.data import (
    SAMPLES_DIR,
    collate_unpaired,
    load_preference_data,
    load_sft_data,
    load_unpaired_data,
    normalize_records,
    validate_data,
)
from alignlab.data.sources import Record
from alignlab.errors import ConfigError, DataError
from tests.data.test_bos import KINDS, make_tokenizer

IGNORE = -100
text = st.text(alphabet="ab xyzAZ019.,:!?\n\té☕日本ß—’", min_size=1, max_size=30).filter(lambda s: s.strip())


def _records(*rows):
    return [Record(data=r, index=i, where=f"data.jsonl line {i + 1}") for i, r in enumerate(rows)]


def _fmt(*rows, task="unpaired"):
    return normalize_records(_records(*rows), task=task).format


# ------------------------------------------------------------------------------------------------- detection


def test_detection():
    assert _fmt({"prompt": "p", "completion": "c", "label": True}) == "unpaired"
    assert _fmt({"prompt": [{"role": "user", "content": "p"}],
                 "completion": [{"role": "assistant", "content": "c"}], "label": False}) == "unpaired"
    # unchanged: prompt + completion without label is SFT, pairs are pairs
    assert _fmt({"prompt": "p", "completion": "c"}, task="sft") == "prompt_completion"
    assert _fmt({"prompt": "p", "chosen": "a", "rejected": "b", "label": True}, task="preference") == "standard"
    assert _fmt({"prompt": "p", "completion": "c", "label": None}, task="sft") == "prompt_completion"


def test_columns_map_label():
    result = normalize_records(_records({"q": "p", "completion": "c", "good": False}), task="unpaired",
                               columns={"prompt": "q", "label": "good"})
    assert result.format == "unpaired" and result.items[0].label is False and result.items[0].prompt == "p"


def test_tasks_reject_each_others_data():
    unpaired = {"prompt": "p", "completion": "c", "label": True}
    with pytest.raises(DataError, match="line 1: this is unpaired preference data .*preference training needs"):
        normalize_records(_records(unpaired), task="preference")
    with pytest.raises(DataError, match="format='prompt_completion'"):
        normalize_records(_records(unpaired), task="sft")
    # the escape hatch: SFT on every completion, label ignored
    assert normalize_records(_records(unpaired), task="sft", format="prompt_completion").items
    with pytest.raises(DataError, match="unpaired training needs .* got format 'standard'"):
        normalize_records(_records({"prompt": "p", "chosen": "a", "rejected": "b"}), task="unpaired")
    with pytest.raises(ConfigError, match="task"):
        normalize_records(_records(unpaired), task="kto")


# ------------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "record, error",
    [
        ({"prompt": "p", "completion": "c", "label": 1}, "field 'label' must be a boolean (true or false), got 1"),
        ({"prompt": "p", "completion": "c", "label": "true"}, "field 'label' must be a boolean"),
        ({"prompt": "p", "completion": "c", "label": None}, "field 'label' must be a boolean"),
        ({"prompt": "p", "completion": "  ", "label": True}, "field 'completion' is empty"),
        ({"prompt": "", "completion": "c", "label": True}, "field 'prompt' is empty"),
        ({"completion": "c", "label": True}, "field 'prompt' is missing"),
        ({"prompt": "p", "completion": [{"role": "assistant", "content": "c"}], "label": True},
         "field 'completion' must be a string in this format"),
        ({"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "user", "content": "c"}],
          "label": True}, "field 'completion' message 0 must have role 'assistant'"),
    ],
)
def test_validation_errors_name_file_line_and_field(write_jsonl, record, error):
    path = write_jsonl([{"prompt": "ok", "completion": "fine", "label": False}, record])
    result = validate_data(path, task="unpaired")
    assert len(result.errors) == 1, result.errors
    assert result.errors[0].startswith(f"{path} line 2: ")
    assert error in result.errors[0]


def test_loader_raises_on_invalid_records(write_jsonl, tokenizer):
    path = write_jsonl([{"prompt": "p", "completion": "c", "label": 0}, {"prompt": "p", "completion": "c"}])
    with pytest.raises(DataError, match=r"line 1: field 'label' must be a boolean.*\(and 1 more errors\)"):
        load_unpaired_data(path, tokenizer)


def test_sample_file():
    result = validate_data(SAMPLES_DIR / "unpaired.jsonl", task="unpaired")
    assert (result.errors, result.format, result.n_records) == ([], "unpaired", 60)
    assert validate_data(SAMPLES_DIR / "unpaired.jsonl").errors  # not preference pairs


# ---------------------------------------------------------------------------------------------- tokenization


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=text, completion=text, label=st.booleans())
def test_boundary_is_exact(tokenizer, prompt, completion, label):
    (ex,), _ = load_unpaired_data([{"prompt": prompt, "completion": completion, "label": label}], tokenizer)
    p = ex["prompt_input_ids"]
    assert ex["input_ids"][: len(p)] == p
    assert tokenizer.decode(p, clean_up_tokenization_spaces=False) == prompt
    assert tokenizer.decode(ex["input_ids"][len(p) : -1], clean_up_tokenization_spaces=False) == completion
    assert ex["input_ids"][-1] == tokenizer.eos_token_id
    assert ex["labels"] == [IGNORE] * len(p) + ex["input_ids"][len(p) :]
    assert ex["label"] is label and ex["eos_dropped"] is False
    assert set(ex) == {"prompt_input_ids", "input_ids", "labels", "label", "index", "where", "eos_dropped"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("chat", [False, True])
def test_same_tokens_as_the_chosen_side_of_a_pair(kind, chat):
    """The BOS policy, chat rendering and labels are the pairs' rule: an unpaired example tokenizes exactly as
    the chosen side of a pair with the same prompt and completion."""
    tok = make_tokenizer(kind)
    if chat:
        prompt = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi?"}]
        completion = [{"role": "assistant", "content": "Hello there."}]
    else:
        prompt, completion = "Question: hi?\nAnswer:", " Hello there."
    (ex,), _ = load_unpaired_data([{"prompt": prompt, "completion": completion, "label": False}], tok)
    # an identical pair is the simplest reference, so it is kept here
    (pair,), _ = load_preference_data([{"prompt": prompt, "chosen": completion, "rejected": completion}], tok,
                                      drop_identical_pairs=False)
    assert ex["prompt_input_ids"] == pair["prompt_input_ids"]
    assert (ex["input_ids"], ex["labels"]) == (pair["chosen_input_ids"], pair["chosen_labels"])


@pytest.mark.parametrize("truncation", [("keep_end", "truncate"), ("keep_start", "truncate"),
                                        ("keep_start", "drop_example")])
def test_truncation_is_the_pairs_rule(tokenizer, truncation):
    prompt_truncation, response_truncation = truncation
    rows = [{"prompt": "word " * 40, "completion": " answer" * 40, "label": True},
            {"prompt": "short prompt", "completion": " ok", "label": False}]
    kwargs = {"max_length": 48, "max_prompt_length": 16, "prompt_truncation": prompt_truncation,
                  "response_truncation": response_truncation}
    examples, report = load_unpaired_data(rows, tokenizer, **kwargs)
    pairs, _ = load_preference_data([{"prompt": r["prompt"], "chosen": r["completion"],
                                      "rejected": r["completion"]} for r in rows], tokenizer,
                                    drop_identical_pairs=False, **kwargs)
    assert [(e["input_ids"], e["labels"], e["eos_dropped"]) for e in examples] == [
        (p["chosen_input_ids"], p["chosen_labels"], p["eos_dropped"]) for p in pairs
    ]
    assert all(len(e["input_ids"]) <= 48 for e in examples)
    if response_truncation == "drop_example":
        assert report.n_dropped_truncation == 1 and [e["index"] for e in examples] == [1]
    else:
        assert examples[0]["eos_dropped"] and report.n_prompt_truncated == 1


def test_sft_loader_unchanged_on_prompt_completion(tokenizer):
    (ex,), report = load_sft_data([{"prompt": "p", "completion": " c"}], tokenizer)
    assert report.format == "prompt_completion" and "label" not in ex


# ------------------------------------------------------------------------------------------------- collation


def _ex(prompt, completion, label, index, completion_labels=None):
    return {
        "prompt_input_ids": prompt,
        "input_ids": prompt + completion,
        "labels": [IGNORE] * len(prompt) + (completion if completion_labels is None else completion_labels),
        "label": label, "index": index, "where": f"line {index + 1}", "eos_dropped": False,
    }


def test_collate_batch_and_kl_pairing_rule():
    examples = [_ex([1, 2, 3], [4, 5], True, 0), _ex([7, 8], [9], False, 1),
                _ex([10], [11, 12, 13], True, 2, completion_labels=[IGNORE, 12, 13])]
    b = collate_unpaired(examples, pad_token_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 0, 0], [10, 11, 12, 13, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert b["labels"].tolist() == [[IGNORE] * 3 + [4, 5], [IGNORE] * 2 + [9] + [IGNORE] * 2,
                                    [IGNORE, IGNORE, 12, 13, IGNORE]]
    assert b["desirable"].dtype == torch.bool and b["desirable"].tolist() == [True, False, True]
    assert b["index"].tolist() == [0, 1, 2]
    # TRL's rotation by +1: row i = prompt i + completion i-1 (row 0 takes the last completion), labelled as that
    # completion is in its own example; padded on its own
    assert b["kl_input_ids"].tolist() == [[1, 2, 3, 11, 12, 13], [7, 8, 4, 5, 0, 0], [10, 9, 0, 0, 0, 0]]
    assert b["kl_attention_mask"].tolist() == [[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4]
    assert b["kl_labels"].tolist() == [[IGNORE] * 4 + [12, 13], [IGNORE] * 2 + [4, 5, IGNORE, IGNORE],
                                       [IGNORE, 9] + [IGNORE] * 4]


def test_kl_pairing_matches_trls_dataset_map():
    """TRL: KL_completion_ids = [completion_ids[-1]] + completion_ids[:-1] per batch; the KL row is
    prompt_ids + KL_completion_ids (DataCollatorForUnpairedPreference)."""
    g = torch.Generator().manual_seed(0)
    examples = []
    for i in range(5):
        n, m = (int(x) for x in torch.randint(1, 6, (2,), generator=g))
        examples.append(_ex(torch.randint(1, 50, (n,), generator=g).tolist(),
                            torch.randint(1, 50, (m,), generator=g).tolist(), bool(i % 2), i))
    prompts = [e["prompt_input_ids"] for e in examples]
    completions = [e["input_ids"][len(e["prompt_input_ids"]):] for e in examples]
    kl_completions = [completions[-1]] + completions[:-1]
    b = collate_unpaired(examples, pad_token_id=0)
    for i, row in enumerate(b["kl_input_ids"].tolist()):
        n = int(b["kl_attention_mask"][i].sum())
        assert row[:n] == prompts[i] + kl_completions[i]
        assert b["kl_labels"][i, :n].tolist() == [IGNORE] * len(prompts[i]) + kl_completions[i]
    # a function of the batch only: the same batch gives the same tensors
    again = collate_unpaired([dict(e) for e in examples], pad_token_id=0)
    assert all(torch.equal(b[k], again[k]) for k in b)


def test_collate_options():
    examples = [_ex([1, 2, 3, 4], [5], True, 0), _ex([6], [7, 8, 9, 10], False, 1)]
    b = collate_unpaired(examples, pad_token_id=0, max_length=6, pad_to_multiple_of=4)
    assert b["input_ids"].shape == (2, 8)
    # row 0 = [1, 2, 3, 4] + [7, 8, 9, 10] cut to 6 at the end, as TRL's collator truncates; then padded to 8
    assert b["kl_input_ids"].tolist() == [[1, 2, 3, 4, 7, 8, 0, 0], [6, 5, 0, 0, 0, 0, 0, 0]]
    assert b["kl_labels"][0].tolist() == [IGNORE] * 4 + [7, 8, IGNORE, IGNORE]
    no_kl = collate_unpaired(examples, pad_token_id=0, kl=False)
    assert not any(k.startswith("kl_") for k in no_kl)
    # a batch of one is its own KL completion (TRL's last short chunk)
    one = collate_unpaired(examples[:1], pad_token_id=0)
    assert torch.equal(one["kl_input_ids"], one["input_ids"])


def test_collate_invalid_inputs():
    with pytest.raises(ValueError, match="at least one"):
        collate_unpaired([], pad_token_id=0)
    bad = _ex([1, 2], [3], True, 0)
    bad["prompt_input_ids"] = [9]
    with pytest.raises(ValueError, match="not a prefix"):
        collate_unpaired([bad], pad_token_id=0)
    with pytest.raises(ValueError, match="max_length"):
        collate_unpaired([_ex([1], [2], True, 0)], pad_token_id=0, max_length=0)


def test_loaded_examples_collate(tokenizer):
    examples, report = load_unpaired_data(SAMPLES_DIR / "unpaired.jsonl", tokenizer, limit=8)
    assert report.format == "unpaired" and len(examples) == 8
    b = collate_unpaired(examples, pad_token_id=tokenizer.pad_token_id)
    assert b["input_ids"].shape[0] == b["kl_input_ids"].shape[0] == 8
    assert b["desirable"].tolist() == [e["label"] for e in examples]
    # every KL row scores exactly the tokens its source completion scores
    for i in range(8):
        j = (i - 1) % 8
        assert int((b["kl_labels"][i] != IGNORE).sum()) == int((b["labels"][j] != IGNORE).sum())


def test_validate_data_cli_checks_unpaired_data(capsys):
    from alignlab.cli import main

    assert main(["validate-data", str(SAMPLES_DIR / "unpaired.jsonl"), "--unpaired"]) == 0
    assert "OK" in capsys.readouterr().out
