"""Pairs from judged samples (alignlab.online.pairs), against a brute-force reading of the rules; the pairs train
on exactly the sampled token ids."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alignlab.assets import load_tokenizer
from alignlab.data import load_preference_data
from alignlab.online import build_pairs, pair_indices


def test_best_vs_worst_pairs_the_extremes_and_skips_ties():
    assert pair_indices([1.0, 3.0, 0.0, 2.0], ["a", "b", "c", "d"], rule="best_vs_worst") == [(1, 2)]
    assert pair_indices([2.0, 2.0, 2.0], ["a", "b", "c"], rule="best_vs_worst") == []  # all tied
    assert pair_indices([1.0, 3.0, 0.0], ["a", "b", "c"], rule="best_vs_worst", min_margin=3.0) == []  # not > 3
    assert pair_indices([1.0, 3.0, 0.0], ["a", "b", "c"], rule="best_vs_worst", min_margin=2.5) == [(1, 2)]
    # equal rewards at the top or bottom: the first of them
    assert pair_indices([3.0, 0.0, 3.0, 0.0], ["a", "b", "c", "d"], rule="best_vs_worst") == [(0, 1)]


def test_all_pairs_keeps_ordered_pairs_above_the_margin():
    rewards, texts = [0.0, 2.0, 2.0, 5.0], ["a", "b", "c", "d"]
    assert pair_indices(rewards, texts, rule="all_pairs") == [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2)]
    assert pair_indices(rewards, texts, rule="all_pairs", min_margin=2.5) == [(3, 0), (3, 1), (3, 2)]


def test_equal_or_empty_completions_never_pair():
    # a judge that scores one text twice differently gives no preference; training holds no empty response
    assert pair_indices([1.0, 0.0, 5.0], ["same", "same", "  "], rule="all_pairs") == []
    assert pair_indices([1.0, 0.0, 5.0], ["x", "y", ""], rule="best_vs_worst") == [(0, 1)]


def test_best_vs_worst_looks_past_extremes_with_equal_texts():
    # x is both the best (3) and the worst (0): the pair is x over z, the largest gap between different texts
    assert pair_indices([3.0, 0.0, 1.0, 0.5], ["x", "x", "y", "z"], rule="best_vs_worst") == [(0, 3)]
    assert pair_indices([3.0, 0.0, 1.0, 0.5], ["x", "x", "y", "z"], rule="best_vs_worst", min_margin=2.5) == []
    assert pair_indices([3.0, 0.0], ["x", "x"], rule="best_vs_worst") == []


@given(st.lists(st.tuples(st.integers(-3, 3), st.sampled_from(["a", "b", "c", " "])), min_size=2, max_size=6),
       st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_the_rules_are_the_strictly_better_pairs_of_different_texts(samples, margin):
    rewards, texts = [float(r) for r, _ in samples], [t for _, t in samples]
    # every ordered pair of different, non-blank texts, in (i, j) order
    different = [(i, j) for i, j in itertools.product(range(len(samples)), repeat=2)
                 if texts[i] != texts[j] and texts[i].strip() and texts[j].strip()]
    better = [(i, j) for i, j in different if rewards[i] > rewards[j] + margin]
    assert pair_indices(rewards, texts, rule="all_pairs", min_margin=margin) == better
    gap = max((rewards[i] - rewards[j] for i, j in different), default=None)
    widest = [(i, j) for i, j in different if rewards[i] - rewards[j] == gap][:1]  # the first of equal gaps
    assert pair_indices(rewards, texts, rule="best_vs_worst", min_margin=margin) == (
        widest if gap is not None and gap > margin else [])


def test_build_pairs_writes_training_pairs_in_the_prompts_format():
    chat = [{"role": "user", "content": "hi"}]
    samples = [{"prompt_index": p, "sample_index": s, "prompt": prompt, "prompt_ids": [p + 10], "completion": text,
                "completion_ids": [p, s], "finished": s == 0, "reward": reward}
               for p, prompt, group in ((0, "Q?", [("a", 1.0), ("bb", 4.0), ("c", 2.0)]),
                                        (1, chat, [("x", 0.0), ("y", 0.0)]),
                                        (2, chat, [("u", 1.0), ("v", 0.0)]))
               for s, (text, reward) in enumerate(group)]
    pairs = build_pairs(list(reversed(samples)), rule="best_vs_worst")
    assert pairs == [
        {"prompt": chat, "chosen": [{"role": "assistant", "content": "u"}],
         "rejected": [{"role": "assistant", "content": "v"}], "prompt_ids": [12], "chosen_ids": [2, 0],
         "rejected_ids": [2, 1], "chosen_finished": True, "rejected_finished": False, "prompt_index": 2,
         "chosen_sample": 0, "rejected_sample": 1, "chosen_reward": 1.0, "rejected_reward": 0.0, "margin": 1.0},
        {"prompt": "Q?", "chosen": "bb", "rejected": "a", "prompt_ids": [10], "chosen_ids": [0, 1],
         "rejected_ids": [0, 0], "chosen_finished": False, "rejected_finished": True, "prompt_index": 0,
         "chosen_sample": 1, "rejected_sample": 0, "chosen_reward": 4.0, "rejected_reward": 1.0, "margin": 3.0},
    ]  # prompt 1 tied: no pair
    with pytest.raises(ValueError, match="rule must be one of"):
        build_pairs(samples, rule="best")


def test_pairs_train_on_the_sampled_ids_and_no_eos_is_added_to_a_cut_off_sample(tmp_path):
    tok = load_tokenizer("alignlab/tiny-llama")
    piece = tok.convert_tokens_to_ids
    prompt_ids = tok.encode("Question: say hello. Answer:", add_special_tokens=False)
    # "H" "e" "l" decodes to "Hel", which encodes again as two other ids; a lone byte of "é" decodes to U+FFFD
    split = [piece("H"), piece("e"), piece("l")]
    byte = [piece("Ã")]
    assert tok.encode(tok.decode(split), add_special_tokens=False) != split
    assert "\ufffd" in tok.decode(byte)
    samples = [
        {"prompt_index": 0, "sample_index": 0, "prompt": "Question: say hello. Answer:", "prompt_ids": prompt_ids,
         "completion": tok.decode(split), "completion_ids": split, "finished": False, "reward": 2.0},
        {"prompt_index": 0, "sample_index": 1, "prompt": "Question: say hello. Answer:", "prompt_ids": prompt_ids,
         "completion": tok.decode(byte), "completion_ids": [*byte, tok.eos_token_id], "finished": True,
         "reward": 0.0},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in build_pairs(samples, rule="best_vs_worst")))
    examples, report = load_preference_data(str(path), tok)
    assert report.format == "tokenized" and len(examples) == 1
    example = examples[0]
    assert example["prompt_input_ids"] == prompt_ids
    assert example["chosen_input_ids"] == prompt_ids + split  # cut off: no EOS
    assert example["rejected_input_ids"] == prompt_ids + byte + [tok.eos_token_id]  # finished: its one EOS
    assert example["chosen_labels"] == [-100] * len(prompt_ids) + split
    assert example["rejected_labels"] == [-100] * len(prompt_ids) + byte + [tok.eos_token_id]
