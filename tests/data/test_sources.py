"""Sources: JSONL / JSON / Parquet / directories / datasets, provenance, column mapping, shuffling, limit."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alignlab.data import load_preference_data, read_records
from alignlab.errors import ConfigError, DataError

ROWS = [
    {"prompt": f"Question {i}?", "chosen": f" Good answer {i}.", "rejected": f" Bad {i}."} for i in range(6)
]


def chosen_texts(tok, examples):
    return [tok.decode(e["chosen_input_ids"][len(e["prompt_input_ids"]) : -1]) for e in examples]


def test_jsonl_provenance_skips_blank_lines(write_jsonl):
    path = write_jsonl([ROWS[0], "", ROWS[1]])
    records, errors = read_records(path)
    assert errors == []
    assert [(r.index, r.where) for r in records] == [(0, f"{path} line 1"), (1, f"{path} line 3")]


@pytest.mark.parametrize("wrap", [False, True])
def test_json_array_and_data_object(tmp_path, tokenizer, wrap):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"data": ROWS} if wrap else ROWS))
    examples, report = load_preference_data(path, tokenizer)
    assert report.n_kept == 6 and chosen_texts(tokenizer, examples)[2] == " Good answer 2."
    records, _ = read_records(path)
    assert records[3].where == f"{path} record 3"


def test_parquet(tmp_path, tokenizer):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    examples, _report = load_preference_data(path, tokenizer)
    assert chosen_texts(tokenizer, examples) == [r["chosen"] for r in ROWS]
    assert read_records(path)[0][5].where == f"{path} record 5"


def test_directory_split_picks_file(tmp_path, tokenizer, write_jsonl):
    write_jsonl(ROWS[:4], "train.jsonl")
    write_jsonl(ROWS[4:], "test.jsonl")
    assert load_preference_data(tmp_path, tokenizer)[1].n_kept == 4
    examples, _ = load_preference_data(tmp_path, tokenizer, split="test")
    assert chosen_texts(tokenizer, examples) == [" Good answer 4.", " Good answer 5."]


def test_datasets_load_dataset_json_with_data_files(tmp_path, tokenizer, write_jsonl):
    path = write_jsonl(ROWS)
    examples, _report = load_preference_data("json", tokenizer, data_files=str(path))
    assert chosen_texts(tokenizer, examples) == [r["chosen"] for r in ROWS]
    assert read_records("json", data_files=str(path))[0][1].where == "json[train] record 1"


def test_datasets_directory_of_data_files(tmp_path, tokenizer):
    # a directory without <split>.* names: datasets infers the split from the file names
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    _examples, report = load_preference_data(str(tmp_path), tokenizer)
    assert report.n_kept == 6


def test_datasets_save_to_disk(tmp_path, tokenizer):
    import datasets

    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS[:5]), "test": datasets.Dataset.from_list(ROWS[5:])}
    ).save_to_disk(str(tmp_path / "saved"))
    assert load_preference_data(tmp_path / "saved", tokenizer, split="test")[1].n_kept == 1
    with pytest.raises(ConfigError, match="no split 'validation'"):
        load_preference_data(tmp_path / "saved", tokenizer, split="validation")


def test_column_mapping(tokenizer):
    rows = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in ROWS]
    examples, report = load_preference_data(
        rows, tokenizer, columns={"prompt": "question", "chosen": "good", "rejected": "bad"}
    )
    assert report.format == "standard"
    assert chosen_texts(tokenizer, examples) == [r["chosen"] for r in ROWS]
    with pytest.raises(DataError, match="<records> record 0: field 'good' is missing"):
        load_preference_data(ROWS, tokenizer, format="standard", columns={"chosen": "good"})


def test_shuffle_is_seeded_and_limit_applies_after(tokenizer):
    a, _ = load_preference_data(ROWS, tokenizer, shuffle_seed=3)
    b, _ = load_preference_data(ROWS, tokenizer, shuffle_seed=3)
    c, _ = load_preference_data(ROWS, tokenizer, shuffle_seed=4)
    order = [e["index"] for e in a]
    assert order == [e["index"] for e in b] and sorted(order) == list(range(6))
    assert order != list(range(6)) and order != [e["index"] for e in c]
    limited, report = load_preference_data(ROWS, tokenizer, shuffle_seed=3, limit=2)
    assert [e["index"] for e in limited] == order[:2] and report.n_records == 2
    # the index names the source record whatever the order
    assert all(chosen_texts(tokenizer, [e])[0] == ROWS[e["index"]]["chosen"] for e in a)


def test_option_conflicts_and_missing_files(tmp_path, tokenizer, write_jsonl):
    path = write_jsonl(ROWS)
    with pytest.raises(ConfigError, match="data_files"):
        load_preference_data(path, tokenizer, data_files="x.jsonl")
    with pytest.raises(DataError, match="file not found"):
        load_preference_data(tmp_path / "missing.jsonl", tokenizer)
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="unsupported data file type '.csv'"):
        read_records(tmp_path / "d.csv")


def test_unknown_dataset_name_is_one_line_data_error(tokenizer):
    with pytest.raises(DataError, match=r"^no-such-dataset-here: cannot load with datasets.load_dataset \("):
        load_preference_data("no-such-dataset-here", tokenizer)


def test_split_selects_only_where_a_source_has_several(tmp_path, tokenizer, write_jsonl):
    # a file (or a list of records) is the data whatever split names: eval_data=pairs.jsonl with the default
    # eval_split 'test' must read the file (it used to be refused)
    path = write_jsonl(ROWS, "pairs.jsonl")
    for split in ("train", "test", "validation"):
        assert load_preference_data(path, tokenizer, split=split)[1].n_kept == 6
        assert load_preference_data(ROWS, tokenizer, split=split)[1].n_kept == 6
    # a directory of split files still selects, and a split it lacks is an error
    write_jsonl(ROWS[:2], "train.jsonl")
    assert load_preference_data(tmp_path, tokenizer, split="train")[1].n_kept == 2
    with pytest.raises(DataError, match=r"Unknown split \"test\""):
        load_preference_data(tmp_path, tokenizer, split="test")
    with pytest.raises(ConfigError, match="shuffle_seed"):
        load_preference_data(ROWS, tokenizer, shuffle_seed="3")
