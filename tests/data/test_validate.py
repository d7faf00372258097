"""Validation messages: one line, exact file + line + field, all errors collected before tokenizing."""

import json

import pytest

from alignlab.cli.validate import MAX_REPORTED_ERRORS
from alignlab.cli.validate import main as validate_data_main
from alignlab.data import load_preference_data, load_sft_data, validate_data
from alignlab.errors import DataError

GOOD = {"prompt": "p", "chosen": " c", "rejected": " r"}
MSG = [{"role": "user", "content": "hi"}]
A = [{"role": "assistant", "content": "yes"}]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"prompt": "p", "rejected": " r"}, "field 'chosen' is missing"),
        (
            {"prompt": "p", "chosen": 3, "rejected": " r"},
            "field 'chosen' must be a string or a list of messages, got int",
        ),
        (
            {"prompt": "p", "chosen": None, "rejected": " r"},
            "field 'chosen' must be a string or a list of messages, got null",
        ),
        ({"prompt": "p", "chosen": " c", "rejected": ""}, "field 'rejected' is empty"),
        ({"prompt": "p", "chosen": " c", "rejected": " \n "}, "field 'rejected' is empty"),
        ({"prompt": "", "chosen": " c", "rejected": " r"}, "field 'prompt' is empty"),
        (
            {"prompt": "p", "chosen": A, "rejected": " r"},
            "field 'chosen' must be a string in this format, got a list",
        ),
        (
            {"prompt": "p", "chosen": " c", "rejected": " r", "alpha": 1.5},
            "field 'alpha' must be a number in [0, 1], got 1.5",
        ),
        (
            {"prompt": "p", "chosen": " c", "rejected": " r", "votes": [1, -1]},
            "field 'votes' must be a list of non-negative integers, got [1, -1]",
        ),
    ],
)
def test_standard_field_errors(write_jsonl, bad, message):
    path = write_jsonl([GOOD, GOOD, bad])
    result = validate_data(path)
    assert result.errors == [f"{path} line 3: {message}"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {"prompt": [{"content": "hi"}], "chosen": A, "rejected": A},
            "field 'prompt' message 0 has no 'role'",
        ),
        (
            {"prompt": [{"role": "user"}], "chosen": A, "rejected": A},
            "field 'prompt' message 0 has no 'content'",
        ),
        (
            {"prompt": [{"role": "user", "content": 5}], "chosen": A, "rejected": A},
            "field 'prompt' message 0 'content' must be a string, got int",
        ),
        (
            {"prompt": ["hi"], "chosen": A, "rejected": A},
            "field 'prompt' message 0 must be an object with 'role' and 'content', got str",
        ),
        (
            {"prompt": MSG, "chosen": MSG, "rejected": A},
            "field 'chosen' message 0 must have role 'assistant', got 'user'",
        ),
        (
            {"prompt": MSG, "chosen": A, "rejected": [{"role": "assistant", "content": " "}]},
            "field 'rejected' message 0 (assistant) has empty content",
        ),
        ({"prompt": MSG, "chosen": A, "rejected": []}, "field 'rejected' is empty"),
        (
            {"prompt": MSG, "chosen": A, "rejected": " r"},
            ("field 'rejected' must be a list of messages in this format, got a string"),
        ),
    ],
)
def test_message_errors(write_jsonl, bad, message):
    path = write_jsonl([{"prompt": MSG, "chosen": A, "rejected": A}, bad])
    assert validate_data(path).errors == [f"{path} line 2: {message}"]


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            {
                "chosen": [{"role": "user", "content": "a"}] + A,
                "rejected": [{"role": "user", "content": "b"}] + A,
            },
            "implicit prompt: fields 'chosen' and 'rejected' share no leading turns (an empty prompt)",
        ),
        (
            {"chosen": MSG + A + MSG, "rejected": MSG + [{"role": "assistant", "content": "no"}] + MSG},
            (
                "implicit prompt: field 'chosen' message 2 after the common prefix must have role "
                "'assistant', got 'user'"
            ),
        ),
        (
            {"chosen": "Yes indeed", "rejected": "No way"},
            (
                "implicit prompt: fields 'chosen' and 'rejected' share no common prefix before a whitespace "
                "boundary (an empty prompt)"
            ),
        ),
        (
            {"chosen": "Q: a", "rejected": MSG + A},
            ("fields 'chosen' and 'rejected' must both be strings or both lists of messages"),
        ),
    ],
)
def test_implicit_errors(write_jsonl, bad, message):
    path = write_jsonl([{"chosen": MSG + A, "rejected": MSG + [{"role": "assistant", "content": "no"}]}, bad])
    assert validate_data(path).errors == [f"{path} line 2: {message}"]


def test_sft_errors(write_jsonl):
    path = write_jsonl([{"messages": MSG + A}, {"messages": MSG}, {"messages": [{"role": "user"}]}])
    assert validate_data(path, task="sft").errors == [
        f"{path} line 2: field 'messages' has no assistant turn to train on",
        f"{path} line 3: field 'messages' message 0 has no 'content'",
    ]


def test_malformed_json_and_bad_utf8(write_jsonl):
    path = write_jsonl(
        [
            GOOD,
            '{"prompt": "p", "chosen": ',
            b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}',
            "[1, 2]",
            GOOD,
        ]
    )
    result = validate_data(path)
    assert result.errors == [
        f"{path} line 2: malformed JSON (Expecting value at column 27)",
        f"{path} line 3: not valid UTF-8 (byte 0xe9 at column 16)",
        f"{path} line 4: expected a JSON object, got list",
    ]
    assert result.n_records == 2


def test_json_file_errors_name_the_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"prompt": "p"},\n {"prompt": }\n]')
    assert validate_data(path).errors == [f"{path} line 3: malformed JSON (Expecting value at column 13)"]
    path.write_text(json.dumps([GOOD, {"prompt": "p", "chosen": " c"}]))
    assert validate_data(path).errors == [f"{path} record 1: field 'rejected' is missing"]


def test_errors_are_collected_and_raised_as_one_before_tokenizing(write_jsonl):
    bad = [{"prompt": "p", "chosen": " c"} for _ in range(25)]
    path = write_jsonl([GOOD] + bad)

    class NoTokenizing:
        eos_token_id = 0

        def encode(self, *a, **k):
            raise AssertionError("tokenized before validation finished")

    with pytest.raises(DataError) as e:
        load_preference_data(path, NoTokenizing())
    assert str(e.value) == f"{path} line 2: field 'rejected' is missing (and 24 more errors)"
    assert len(e.value.errors) == 25 and e.value.errors[-1] == f"{path} line 26: field 'rejected' is missing"
    with pytest.raises(DataError, match="line 2: field 'rejected' is missing"):
        load_sft_data(path, NoTokenizing())


def test_identical_pairs_are_dropped_with_a_warning_and_a_count(write_jsonl):
    path = write_jsonl(
        [
            GOOD,
            {"prompt": "p", "chosen": " same", "rejected": " same"},
            {"prompt": "q", "chosen": " x", "rejected": " x"},
        ]
    )
    result = validate_data(path)
    assert result.ok and result.errors == []
    assert result.warnings == [
        (
            f"2 pairs have identical chosen and rejected responses (first: {path} line 2); "
            "they carry no preference signal and are dropped (set drop_identical_pairs to false to keep them)"
        )
    ]
    (kept,) = validate_data(path, drop_identical_pairs=False).warnings
    assert kept.endswith("they carry no preference signal and are kept (drop_identical_pairs is false)")


def test_validate_data_main(write_jsonl, capsys):
    path = write_jsonl([GOOD] + [{"prompt": "p", "chosen": 1, "rejected": " r"}] * (MAX_REPORTED_ERRORS + 3))
    assert validate_data_main([str(path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()  # the errors go to stderr, the summary alone to stdout
    assert err[0] == f"{path} line 2: field 'chosen' must be a string or a list of messages, got int"
    assert len([line for line in err if "must be a string" in line]) == MAX_REPORTED_ERRORS
    assert "... and 3 more errors" in err
    assert captured.out.splitlines() == ["data.jsonl: 24 records, format 'standard': 23 errors, 0 warnings"]

    good = write_jsonl([{"q": "p", "c": " c", "r": " r"}], name="good.jsonl")
    assert validate_data_main([str(good), "--columns", "prompt=q,chosen=c,rejected=r"]) == 0
    assert capsys.readouterr().out.strip() == "good.jsonl: 1 records, format 'standard': OK, 0 warnings"
    assert validate_data_main([str(good)]) == 2  # fields not mapped: the format cannot be detected
    assert "cannot detect the data format" in capsys.readouterr().err


def test_corrupt_parquet_is_one_line(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet at all")
    (error,) = validate_data(path).errors
    assert error.startswith(f"{path}: cannot read Parquet (") and "\n" not in error


def test_tied_ranking_records_warn(write_jsonl):
    path = write_jsonl(
        [
            {"prompt": "p", "responses": [" a", " b"], "ranks": [1, 2]},
            {"prompt": "q", "responses": [" a", " b"], "ranks": [1, 1]},
        ]
    )
    assert validate_data(path).warnings == [
        (f"1 ranking records have all ranks tied (first: {path} line 2); they give no pairs")
    ]
    assert validate_data(path, task="sft").warnings == []


def test_broken_first_record_gets_a_field_error(write_jsonl):
    path = write_jsonl([{"prompt": "p", "rejected": " r"}, GOOD])
    result = validate_data(path)
    assert (result.format, result.errors) == ("standard", [f"{path} line 1: field 'chosen' is missing"])
