"""Collation: right padding, [chosen; rejected] stacking, labels -100 on padding, pad == EOS."""

import pytest
import torch

from alignlab.data import collate_preference, collate_sft, load_preference_data, load_sft_data

RECORDS = [
    {
        "prompt": "Hello there, how",
        "chosen": " are you doing today my friend?",
        "rejected": " no",
        "alpha": 0.9,
    },
    {"prompt": "Hi", "chosen": " fine", "rejected": " I would rather not say anything at all.", "alpha": 0.6},
    {
        "prompt": "A much longer prompt than the others, with café ☕",
        "chosen": " yes",
        "rejected": " nope",
        "alpha": 1.0,
    },
]


def scored(ids, labels):
    """(position, label) pairs a loss scores, from the unshifted labels."""
    return [(t, int(lab)) for t, lab in enumerate(labels) if int(lab) != -100]


@pytest.mark.parametrize("multiple", [None, 8])
def test_preference_batch(tokenizer, multiple):
    examples, _ = load_preference_data(RECORDS, tokenizer)
    batch = collate_preference(examples, tokenizer.pad_token_id, pad_to_multiple_of=multiple)
    b = len(examples)
    lengths = [len(e[f"{s}_input_ids"]) for s in ("chosen", "rejected") for e in examples]
    t = max(lengths) if multiple is None else -(-max(lengths) // multiple) * multiple
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape == (2 * b, t)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    assert batch["index"].tolist() == [0, 1, 2]
    assert batch["alpha"].tolist() == pytest.approx([0.9, 0.6, 1.0])
    # rows 0..B-1 chosen_1..B, rows B..2B-1 rejected_1..B, right-padded
    for row, (i, side) in enumerate([(i, "chosen") for i in range(b)] + [(i, "rejected") for i in range(b)]):
        ids, labels = examples[i][f"{side}_input_ids"], examples[i][f"{side}_labels"]
        n = len(ids)
        assert batch["input_ids"][row, :n].tolist() == ids
        assert batch["labels"][row, :n].tolist() == labels
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (t - n)
        assert batch["input_ids"][row, n:].eq(tokenizer.pad_token_id).all()
        assert batch["labels"][row, n:].eq(-100).all()
        # padding never changes which tokens are scored
        assert scored(batch["input_ids"][row], batch["labels"][row]) == scored(ids, labels)


def test_pad_equal_to_eos_keeps_genuine_eos_label(tokenizer):
    examples, _ = load_preference_data(RECORDS, tokenizer)
    eos = tokenizer.eos_token_id
    batch = collate_preference(examples, eos)
    for row in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][row].sum())
        assert batch["labels"][row, n - 1] == eos  # the appended EOS is scored
        assert batch["labels"][row, n:].eq(-100).all()  # the pad EOS ids are not
    # the old DPO reference padded labels with pad_token_id, which would score padding when pad == eos
    assert (batch["labels"] == eos).sum() == 2 * len(examples)


def test_sft_batch(tokenizer):
    examples, _ = load_sft_data(RECORDS, tokenizer)
    batch = collate_sft(examples, tokenizer.pad_token_id, pad_to_multiple_of=4)
    t = batch["input_ids"].shape[1]
    assert t % 4 == 0 and t >= max(len(e["input_ids"]) for e in examples)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == e["input_ids"]
        assert batch["labels"][row].tolist() == e["labels"] + [-100] * (t - n)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (t - n)
    assert batch["index"].tolist() == [0, 1, 2]


def test_collate_rejects_bad_input():
    with pytest.raises(ValueError):
        collate_sft([], 0)
    with pytest.raises(ValueError, match="differ in length"):
        collate_sft([{"input_ids": [1, 2], "labels": [1], "index": 0}], 0)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        collate_sft([{"input_ids": [1], "labels": [1], "index": 0}], 0, pad_to_multiple_of=0)
