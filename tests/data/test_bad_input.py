"""Inputs that used to train silently or fail confusingly: identical pairs, chat roles out of order, a directory
without data, a JSON array in a .jsonl file, and a single file read as an eval split."""

import json

import pytest

from alignlab.data import DataReport, load_preference_data, load_sft_data, read_records, validate_data
from alignlab.data.validate import load_and_normalize
from alignlab.errors import DataError

GOOD = {"prompt": "p", "chosen": " c", "rejected": " r"}
S = {"role": "system", "content": "Be brief."}
U = {"role": "user", "content": "Hi"}
A = {"role": "assistant", "content": "Hello"}
B = {"role": "assistant", "content": "Go away"}
ROWS = [{"prompt": f"Q{i}?", "chosen": f" yes {i}", "rejected": f" no {i}"} for i in range(4)]


# 1. chosen == rejected


def test_identical_pairs_are_dropped_before_tokenization_and_counted():
    records = [GOOD, {"prompt": "q", "chosen": " same", "rejected": " same"}, GOOD]
    result, n = load_and_normalize(records)
    assert n == 3 and [item.index for item in result.items] == [0, 2]
    assert (result.n_identical_pairs, result.n_dropped_identical) == (1, 1)
    assert result.errors == [] and "are dropped" in result.warnings[0]
    kept, _ = load_and_normalize(records, drop_identical_pairs=False)
    assert [item.index for item in kept.items] == [0, 1, 2]
    assert (kept.n_identical_pairs, kept.n_dropped_identical) == (1, 0) and "are kept" in kept.warnings[0]


def test_identical_pairs_never_reach_the_tokenizer(tokenizer):
    records = [GOOD, {"prompt": "q", "chosen": " same", "rejected": " same"}]
    examples, report = load_preference_data(records, tokenizer)
    assert [e["index"] for e in examples] == [0] and report.n_kept == 1
    assert report.n_identical_pairs == 1 and any("are dropped" in w for w in report.warnings)
    examples, _ = load_preference_data(records, tokenizer, drop_identical_pairs=False)
    assert [e["index"] for e in examples] == [0, 1]


def test_report_shows_identical_pairs_dropped_and_kept():
    lines = str(DataReport(n_records=5, n_kept=3, n_identical_pairs=2, n_dropped_identical=2)).splitlines()
    assert lines[1] == "  dropped: 0 empty response, 0 too long, 2 identical chosen/rejected"
    assert lines[3].endswith("identical pairs kept: 0")
    assert str(DataReport(n_identical_pairs=2)).splitlines()[3].endswith("identical pairs kept: 2")


def test_identical_chat_pairs_and_ranking_ties_of_text():
    chat = {"prompt": [U], "chosen": [A], "rejected": [dict(A)]}
    result, _ = load_and_normalize([chat, {"prompt": [U], "chosen": [A], "rejected": [B]}])
    assert [item.index for item in result.items] == [1] and result.n_dropped_identical == 1
    # ranking: the same text under two ranks is an identical pair; the other pairs of the record stay
    ranking = {"prompt": "Q", "responses": [" a", " a", " b"], "ranks": [1, 2, 3]}
    result, _ = load_and_normalize([ranking])
    assert sorted(item.pair for item in result.items) == [(0, 2), (1, 2)]
    assert (result.n_identical_pairs, result.n_dropped_identical) == (1, 1)


def test_only_identical_pairs_is_one_line_error(write_jsonl, tokenizer):
    path = write_jsonl([{"prompt": "q", "chosen": " x", "rejected": " x"}] * 2)
    message = (
        f"{path} line 1: all 2 pairs have identical chosen and rejected responses, so none is left to train on "
        "(check the columns mapping, or set drop_identical_pairs to false to keep them)"
    )
    assert validate_data(path).errors == [message]
    with pytest.raises(DataError) as e:
        load_preference_data(path, tokenizer)
    assert str(e.value) == message
    assert load_sft_data(path, tokenizer)[1].n_kept == 2  # SFT reads the chosen side: nothing identical


# 2. chat roles: system first, then user/assistant alternating from a user turn


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {"prompt": [A, U], "chosen": [A], "rejected": [B]},
            (
                "field 'prompt' message 0 has role 'assistant', but a conversation starts with a user turn "
                "(after an optional system message)"
            ),
        ),
        (
            {"prompt": [S, A, U], "chosen": [A], "rejected": [B]},
            (
                "field 'prompt' message 1 has role 'assistant', but a conversation starts with a user turn "
                "(after an optional system message)"
            ),
        ),
        (
            {"prompt": [U, A, S, U], "chosen": [A], "rejected": [B]},
            (
                "field 'prompt' message 2 is a system message, but only the first message can be (move it to the "
                "front)"
            ),
        ),
        (
            {"prompt": [U, A], "chosen": [A], "rejected": [B]},
            (
                "field 'prompt' ends on an assistant message, but a prompt ends on the user turn that the response "
                "answers"
            ),
        ),
        (
            {"prompt": [S], "chosen": [A], "rejected": [B]},
            (
                "field 'prompt' ends on a system message, but a prompt ends on the user turn that the response "
                "answers"
            ),
        ),
        (
            {"prompt": [U, U], "chosen": [A], "rejected": [B]},
            (
                "field 'prompt' messages 0 and 1 both have role 'user', but user and assistant turns must "
                "alternate (merge them into one message)"
            ),
        ),
        (
            {"prompt": [U], "chosen": [A, A], "rejected": [B]},
            (
                "field 'chosen' holds 2 assistant messages; a response is one assistant turn (merge them into one "
                "message)"
            ),
        ),
        (
            {"prompt": [{"role": "human", "content": "Hi"}], "chosen": [A], "rejected": [B]},
            "field 'prompt' message 0 has unknown role 'human' (use 'user')",
        ),
        (
            {"prompt": [U], "chosen": [{"role": "bot", "content": "x"}], "rejected": [B]},
            "field 'chosen' message 0 has unknown role 'bot' (use 'assistant')",
        ),
        (
            {"prompt": [U, {"role": "tool", "content": "42"}], "chosen": [A], "rejected": [B]},
            "field 'prompt' message 1 has unknown role 'tool' (roles are system, user and assistant)",
        ),
        (
            {"chosen": [A, U, A], "rejected": [A, U, B]},
            (
                "field 'chosen' message 0 has role 'assistant', but a conversation starts with a user turn "
                "(after an optional system message)"
            ),
        ),
        (
            {"chosen": [U, A, A], "rejected": [U, A, B]},
            (
                "field 'chosen' messages 1 and 2 both have role 'assistant', but user and assistant turns must "
                "alternate (merge them into one message)"
            ),
        ),
    ],
)
def test_preference_roles_out_of_order_are_one_line(write_jsonl, record, message):
    history = {
        "prompt": [S, U, A, U],
        "chosen": [A],
        "rejected": [B],
    }  # a multi-turn history is a valid prompt
    first = history if "prompt" in record else {"chosen": [S, U, A, U, A], "rejected": [S, U, A, U, B]}
    path = write_jsonl([first, record])
    assert validate_data(path).errors == [f"{path} line 2: {message}"]


@pytest.mark.parametrize(
    "record, message",
    [
        (
            {"messages": [U, A, U]},
            "field 'messages' ends on a user turn that no assistant turn answers (drop that last message)",
        ),
        (
            {"messages": [A, U, A]},
            (
                "field 'messages' message 0 has role 'assistant', but a conversation starts with a user turn "
                "(after an optional system message)"
            ),
        ),
        (
            {"messages": [U, {"role": "gpt", "content": "x"}]},
            "field 'messages' message 1 has unknown role 'gpt' (use 'assistant')",
        ),
        (
            {"messages": [{"role": "User", "content": "x"}, A]},
            "field 'messages' message 0 has unknown role 'User' (use 'user')",
        ),
        (
            {"messages": [S, U, A, S, U, A]},
            (
                "field 'messages' message 3 is a system message, but only the first message can be (move it to "
                "the front)"
            ),
        ),
        (
            {"prompt": [U, A], "completion": [B]},
            (
                "field 'prompt' ends on an assistant message, but a prompt ends on the user turn that the response "
                "answers"
            ),
        ),
    ],
)
def test_sft_roles_out_of_order_are_one_line(write_jsonl, record, message):
    first = {"messages": [S, U, A, U, B]} if "messages" in record else {"prompt": [S, U], "completion": [A]}
    path = write_jsonl([first, record])
    assert validate_data(path, task="sft").errors == [f"{path} line 2: {message}"]


def test_unpaired_prompt_roles_are_checked(write_jsonl):
    path = write_jsonl(
        [
            {"prompt": [U], "completion": [A], "label": True},
            {"prompt": [A, U], "completion": [B], "label": False},
        ]
    )
    assert validate_data(path, task="unpaired").errors == [
        (
            f"{path} line 2: field 'prompt' message 0 has role 'assistant', but a conversation starts with a user "
            "turn (after an optional system message)"
        )
    ]


def test_role_errors_name_the_mapped_column(tokenizer):
    record = {"q": [U, U], "good": [A], "bad": [B]}
    with pytest.raises(
        DataError, match=r"^<records> record 0: field 'q' messages 0 and 1 both have role 'user'"
    ):
        load_preference_data(
            [record], tokenizer, columns={"prompt": "q", "chosen": "good", "rejected": "bad"}
        )


# 3. a directory without data files


def test_directory_with_only_a_readme_is_one_line(tmp_path, tokenizer):
    d = tmp_path / "data"
    d.mkdir()
    (d / "README.md").write_text("# my pairs\n")
    (d / "notes.txt").write_text("collected in May\n")  # datasets would read this as a `text` dataset
    (d / ".cache").mkdir()
    (d / ".cache" / "old.jsonl").write_text(json.dumps(GOOD) + "\n")  # hidden: not data
    message = (
        f"{d}: no data file for split 'train': looked for train.jsonl, train.json, train.parquet or any .jsonl, "
        f".json, .parquet, .csv, .tsv, .arrow file, found .cache/, README.md, notes.txt (put the data in "
        f"{d / 'train.jsonl'}, or pass the data file itself)"
    )
    with pytest.raises(DataError) as e:
        read_records(d)
    assert str(e.value) == message
    with pytest.raises(DataError, match="no data file for split 'train'"):
        load_sft_data(d, tokenizer)  # used to train on the lines of notes.txt
    assert (
        validate_data(d, split="test")
        .errors[0]
        .startswith(f"{d}: no data file for split 'test': looked for test.jsonl")
    )


def test_empty_directory_says_it_found_nothing(tmp_path):
    with pytest.raises(DataError, match=r"found nothing \(put the data in"):
        read_records(tmp_path)


def test_directory_with_data_files_still_goes_to_datasets(tmp_path):
    (tmp_path / "README.md").write_text("# card\n")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-0.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    records, errors = read_records(tmp_path)
    assert errors == [] and len(records) == 4


# 4. a JSON array in a .jsonl file


@pytest.mark.parametrize("indent", [2, None])
def test_json_array_in_jsonl_is_read_with_one_warning(tmp_path, tokenizer, indent):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(ROWS, indent=indent) + "\n")
    result, n = load_and_normalize(path)
    assert n == 4 and result.errors == [] and len(result.items) == 4
    warning = (
        f"{path}: holds a JSON array, not JSON Lines (one object per line); read as a JSON array (rename it to "
        ".json, or convert it with `jq -c '.[]'`)"
    )
    assert result.warnings == [warning]
    assert result.items[2].where == f"{path} record 2"  # provenance as for a .json file
    examples, report = load_preference_data(path, tokenizer)
    assert len(examples) == 4 and report.warnings == [warning]
    assert validate_data(path).warnings == [warning]


def test_malformed_json_array_in_jsonl_is_one_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    text = json.dumps(ROWS, indent=2)
    path.write_text(text[: text.rindex("}")])  # cut off: the array never closes
    (error,) = validate_data(path).errors
    assert error.startswith(f"{path} line ") and "malformed JSON" in error


def test_jsonl_whose_first_line_is_a_list_stays_jsonl(write_jsonl):
    path = write_jsonl(["[1, 2]", GOOD])
    records, errors = read_records(path, warnings=(warnings := []))
    assert errors == [f"{path} line 1: expected a JSON object, got list"] and len(records) == 1
    assert warnings == []


# 5. a single file is the split it names


def test_eval_file_is_read_whatever_the_split(write_jsonl, tokenizer):
    path = write_jsonl(ROWS, "eval.jsonl")  # eval_data=eval.jsonl with the default eval_split 'test'
    examples, report = load_preference_data(path, tokenizer, split="test")
    assert report.n_kept == 4 and [e["index"] for e in examples] == [0, 1, 2, 3]
    assert validate_data(path, split="validation").ok
