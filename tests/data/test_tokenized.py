"""Pre-tokenized preference pairs (format 'tokenized'): trained on exactly their ids, validated with one-line
errors naming file, line and field."""

from __future__ import annotations

import pytest

from alignlab.data import load_preference_data, load_sft_data, validate_data
from alignlab.errors import DataError

PAIR = {"prompt_ids": [40, 41, 42], "chosen_ids": [50, 51], "rejected_ids": [60, 61, 0]}


def test_ids_are_the_sequences_with_nothing_added(tokenizer, write_jsonl):
    # the texts beside the ids are ignored; format 'standard' reads them instead
    path = write_jsonl([{**PAIR, "prompt": "Q?", "chosen": "a", "rejected": "b", "margin": 1.0}])
    (example,), report = load_preference_data(str(path), tokenizer)
    assert report.format == "tokenized" and report.n_boundary_merges == 0
    assert example["prompt_input_ids"] == [40, 41, 42]
    assert example["chosen_input_ids"] == [40, 41, 42, 50, 51]  # no EOS appended
    assert example["rejected_input_ids"] == [40, 41, 42, 60, 61, 0]  # its own EOS, not doubled
    assert example["chosen_labels"] == [-100, -100, -100, 50, 51]
    assert example["rejected_labels"] == [-100, -100, -100, 60, 61, 0]
    assert not example["eos_dropped"]
    (text,), _ = load_preference_data(str(path), tokenizer, format="standard")
    assert text["chosen_input_ids"][-1] == tokenizer.eos_token_id and 50 not in text["chosen_input_ids"]


def test_truncation_and_identical_pairs_follow_the_usual_rules(tokenizer, write_jsonl):
    long = {"prompt_ids": list(range(10, 30)), "chosen_ids": list(range(30, 40)), "rejected_ids": [7]}
    path = write_jsonl([long, {**PAIR, "rejected_ids": PAIR["chosen_ids"]}])
    (example,), report = load_preference_data(str(path), tokenizer, max_length=16, max_prompt_length=8)
    assert report.n_dropped_identical == 1  # equal ids
    assert example["prompt_input_ids"] == list(range(22, 30))  # keep_end
    assert example["chosen_input_ids"] == list(range(22, 30)) + list(range(30, 38)) and example["eos_dropped"]
    assert report.n_prompt_truncated == 1 and report.n_response_truncated == 1


@pytest.mark.parametrize("record, match", [
    ({**PAIR, "chosen_ids": "50 51"}, "line 1: field 'chosen_ids' must be a list of token ids, got str"),
    ({**PAIR, "rejected_ids": []}, "line 1: field 'rejected_ids' is empty"),
    ({**PAIR, "prompt_ids": [1, -2]}, r"line 1: field 'prompt_ids' item 1 must be a token id \(an integer >= 0\)"),
    ({**PAIR, "chosen_ids": [1, True]}, "line 1: field 'chosen_ids' item 1 must be a token id"),
    ({"chosen_ids": [1], "rejected_ids": [2]}, "line 1: field 'prompt_ids' is missing"),
    ({**PAIR, "prompt": 3}, "line 1: field 'prompt' must be a string or a list of messages"),
    ({**PAIR, "chosen_ids": [50, 99999]}, "line 1: field 'chosen_ids' holds token id 99999, but the tokenizer has"),
])
def test_bad_records_are_one_line_errors(tokenizer, write_jsonl, record, match):
    path = write_jsonl([record])
    with pytest.raises(DataError, match=match) as info:
        load_preference_data(str(path), tokenizer)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_validate_data_reads_tokenized_pairs_and_sft_refuses_them(tokenizer, write_jsonl):
    path = write_jsonl([PAIR, {**PAIR, "chosen_ids": [1.5]}])
    result = validate_data(str(path))
    assert result.format == "tokenized"
    assert result.errors == [f"{path} line 2: field 'chosen_ids' item 0 must be a token id (an integer >= 0), got 1.5"]
    with pytest.raises(DataError, match="format 'tokenized' holds preference pairs as token ids; SFT training "
                                        "needs text"):
        load_sft_data(str(write_jsonl([PAIR], name="ok.jsonl")), tokenizer)
