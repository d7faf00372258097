"""Packed rows (prefix sharing, packing): every logical token is in the rows once, at its own position, each
pair's prompt once; rows respect the token budget; the padded batch itself is unchanged."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.data import SAMPLES_DIR, collate_preference, collate_sft, load_preference_data, load_sft_data
from alignlab.data.collate import collate_unpaired

PAD = 1


@pytest.fixture(scope="module")
def pairs(tokenizer):
    examples, _ = load_preference_data(str(SAMPLES_DIR / "pairs_hh.jsonl"), tokenizer, limit=8, max_length=128,
                                       max_prompt_length=64)
    return examples


def _check_rows(batch):
    """The rows hold each logical token once, with its own id, label and position; nothing else but padding."""
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"].bool()
    gather = batch["packed_gather_index"]
    flat = {k: batch[f"packed_{k}"].reshape(-1) for k in ("input_ids", "labels", "position_ids")}
    valid = gather[mask]
    assert torch.equal(flat["input_ids"][valid], ids[mask])
    assert torch.equal(flat["labels"][valid], labels[mask])
    positions = torch.arange(ids.shape[1]).expand_as(ids)
    assert torch.equal(flat["position_ids"][valid], positions[mask])
    # a row token no logical token maps to is padding: at the row's end, a segment of its own
    used = torch.zeros(flat["input_ids"].shape[0], dtype=torch.bool)
    used[valid] = True
    used = used.view_as(batch["packed_input_ids"])
    for row, real in zip(batch["packed_segment_ids"], used):
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()
        assert (row[n:] > (int(row[:n].max()) if n else -1)).all()
    assert (batch["packed_input_ids"][~used] == PAD).all()
    return used


def _segment_length(e):
    """[common prefix; chosen tail; rejected tail] (ids and labels agree on the prefix here)."""
    c, r = e["chosen_input_ids"], e["rejected_input_ids"]
    p = next((i for i, (a, b) in enumerate(zip(c, r)) if a != b), min(len(c), len(r)))
    return len(c) + len(r) - p


def _prompt_free_tokens(examples):
    return sum(_segment_length(e) for e in examples)


@pytest.mark.parametrize("packing", [False, True])
def test_prefix_sharing_stores_each_prompt_once(pairs, packing):
    padded = collate_preference(pairs, PAD)
    options = {"packing": True, "packing_tokens": 320} if packing else {}
    batch = collate_preference(pairs, PAD, prefix_sharing=True, **options)
    for key in padded:  # the logical batch is the padded batch
        assert torch.equal(batch[key], padded[key])
    assert int(_check_rows(batch).sum()) == _prompt_free_tokens(pairs)
    assert _prompt_free_tokens(pairs) <= int(padded["attention_mask"].sum()) - sum(
        len(e["prompt_input_ids"]) for e in pairs)
    rows = batch["packed_input_ids"].shape[0]
    assert rows == len(pairs) if not packing else rows < len(pairs)
    # a tail continues after the prefix; the rejected tail's first position follows the prompt, not the chosen tail
    assert (batch["packed_branch_ids"].max() == 2) and (batch["packed_position_ids"].max() < padded["input_ids"].shape[1])


@given(lengths=st.lists(st.tuples(st.integers(1, 9), st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=6),
       budget=st.one_of(st.none(), st.integers(1, 40)), sharing=st.booleans(), data=st.data())
@settings(max_examples=60, deadline=None)
def test_any_pairs_pack_exactly(lengths, budget, sharing, data):
    """Random prompts and tails (identical first tokens, empty tails, budgets below a segment) pack exactly."""
    examples = []
    for i, (p, c, r) in enumerate(lengths):
        def draw(n):  # few distinct ids: responses often start alike, so sharing runs past the prompt
            return data.draw(st.lists(st.integers(2, 6), min_size=n, max_size=n))

        prompt, chosen, rejected = draw(p), draw(c), draw(r)
        examples.append({"chosen_input_ids": prompt + chosen, "chosen_labels": [-100] * p + chosen,
                         "rejected_input_ids": prompt + rejected, "rejected_labels": [-100] * p + rejected,
                         "index": i})
    batch = collate_preference(examples, PAD, prefix_sharing=sharing, packing=True, packing_tokens=budget)
    real = _check_rows(batch)
    segments = ([_segment_length(e) for e in examples] if sharing else
                [len(e[k]) for e in examples for k in ("chosen_input_ids", "rejected_input_ids")])
    for seg, used in zip(batch["packed_segment_ids"], real):  # more than one segment only within the budget
        if used.any() and int(seg[used].max()) > 0:
            assert int(used.sum()) <= (budget if budget is not None else max(segments))
    assert int(real.sum()) == sum(segments)


def test_sft_and_unpaired_rows(tokenizer):
    examples, _ = load_sft_data(str(SAMPLES_DIR / "sft.jsonl"), tokenizer, limit=6, max_length=64,
                                max_prompt_length=32)
    batch = collate_sft(examples, PAD, packing=True)
    assert torch.equal(batch["labels"], collate_sft(examples, PAD)["labels"])
    _check_rows(batch)
    assert int(batch["packed_branch_ids"].max()) == 0  # single sequences share nothing
    unpaired = [{"prompt_input_ids": [5, 6], "input_ids": [5, 6, 7 + i], "labels": [-100, -100, 7 + i],
                 "label": i % 2 == 0, "index": i} for i in range(3)]
    batch = collate_unpaired(unpaired, PAD, packing=True)
    _check_rows(batch)
    _check_rows({k[3:]: v for k, v in batch.items() if k.startswith("kl_")})


def test_packing_options_are_checked(pairs):
    with pytest.raises(ValueError, match="packing_tokens applies only with packing"):
        collate_preference(pairs, PAD, prefix_sharing=True, packing_tokens=64)
    with pytest.raises(ValueError, match="positive integer"):
        collate_preference(pairs, PAD, packing=True, packing_tokens=0)
