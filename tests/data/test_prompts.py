"""Prompts of a data source (alignlab.data.prompts): prompt-only records and the prompts of every training format."""

from __future__ import annotations

import json

import pytest

from alignlab.data import SAMPLES_DIR
from alignlab.data.prompts import PROMPT_ONLY, read_prompt_source, read_prompts
from alignlab.errors import DataError

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def test_prompt_only_records_are_prompts(write_jsonl):
    path = write_jsonl([{"prompt": "A?", "id": 1}, {"prompt": CHAT}, {"prompt": "A?"}, {"prompt": "B?"}])
    items = read_prompts(str(path))
    assert [item.prompt for item in items] == ["A?", CHAT, "B?"]  # distinct, first-seen order
    assert [item.where for item in items] == [f"{path} line {n}" for n in (1, 2, 4)]
    assert [item.is_chat for item in items] == [False, True, False]
    assert [i.prompt for i in read_prompts(str(path), limit=2)] == ["A?", CHAT]
    renamed = write_jsonl([{"question": "Q?"}], name="renamed.jsonl")
    assert [i.prompt for i in read_prompts(str(renamed), columns={"prompt": "question"})] == ["Q?"]


@pytest.mark.parametrize("records, match", [
    ([{"prompt": "A?"}, {"prompt": "  "}], "line 2: field 'prompt' is empty"),
    ([{"prompt": "A?"}, {"prompt": 3}], "line 2: field 'prompt' must be a string or a list of messages"),
    ([{"prompt": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}],
     "line 1: field 'prompt' ends on an assistant message"),
    ([{"prompt": "A?"}, {"prompt": "B?", "chosen": "c", "rejected": "d"}], "line 2: has response fields"),
    ([{"text": "all of it"}], "line 1: format 'text' holds no prompt"),
    ([{"prompt": "A?", "chosen": "c"}], "line 1: cannot detect the data format"),
])
def test_bad_records_are_one_line_errors_naming_file_line_and_field(write_jsonl, records, match):
    path = write_jsonl(records)
    with pytest.raises(DataError, match=match) as info:
        read_prompts(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def _first_prompts(name, field="prompt"):
    seen = []
    for line in (SAMPLES_DIR / name).read_text(encoding="utf-8").splitlines():
        prompt = json.loads(line)[field]
        if prompt not in seen:
            seen.append(prompt)
    return seen


@pytest.mark.parametrize("name", ["pairs.jsonl", "pairs_conversational.jsonl", "ranking.jsonl", "sft.jsonl",
                                  "unpaired.jsonl"])
def test_formats_with_a_prompt_field_give_their_distinct_prompts(name):
    assert [item.prompt for item in read_prompts(str(SAMPLES_DIR / name))] == _first_prompts(name)


def test_prompts_inside_whole_conversations():
    hh = read_prompts(str(SAMPLES_DIR / "pairs_hh.jsonl"))
    assert all(item.prompt.startswith("\n\nHuman:") and item.prompt.endswith("\n\nAssistant:") for item in hh)
    messages = read_prompts(str(SAMPLES_DIR / "sft_messages.jsonl"))
    first = json.loads((SAMPLES_DIR / "sft_messages.jsonl").read_text(encoding="utf-8").splitlines()[0])["messages"]
    last_assistant = max(i for i, m in enumerate(first) if m["role"] == "assistant")
    assert messages[0].prompt == first[:last_assistant]


def test_the_source_format_says_whether_it_holds_pairs(write_jsonl):
    ids = {"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3]}
    assert read_prompt_source(str(write_jsonl([{"prompt": "A?"}])))[1] == PROMPT_ONLY
    assert read_prompt_source(str(SAMPLES_DIR / "pairs.jsonl"))[1] == "standard"
    assert read_prompt_source(str(SAMPLES_DIR / "sft.jsonl"))[1] == "prompt_completion"
    # tokenized pairs: their prompt text; without one there is nothing to sample from
    items, fmt = read_prompt_source(str(write_jsonl([{**ids, "prompt": CHAT}], name="t.jsonl")))
    assert fmt == "tokenized" and [item.prompt for item in items] == [CHAT]
    path = write_jsonl([ids], name="bare.jsonl")
    with pytest.raises(DataError, match=f"^{path} line 1: field 'prompt' is missing; a tokenized pair needs"):
        read_prompts(str(path))
