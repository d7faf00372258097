"""RewardModelJudge on tiny random GPT-2 classifiers: batched equals one text at a time, and the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignlab.diagnostics import win_rate
from alignlab.errors import AlignlabError, ConfigError
from alignlab.judges import RewardModelJudge, load_judge, load_reward_model_judge
from tests.judges.conftest import gpt2_classifier


def _one_by_one(model, tokenizer, texts, label_index):
    """Each text alone, no padding, in float64: the reference rewards."""
    rewards = []
    with torch.no_grad():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            logits = model(input_ids=ids).logits[0].double()
            rewards.append(
                logits[0].item() if label_index is None else logits.softmax(-1)[label_index].item()
            )
    return rewards


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_single_output_batched_equals_unbatched(tokenizer, padding_side):
    tokenizer.padding_side = padding_side
    model = gpt2_classifier(tokenizer, num_labels=1)
    model.train()  # the judge must score in eval mode and restore the mode afterwards
    judge = RewardModelJudge(model, tokenizer, batch_size=3)
    prompts = ["q: ", "q: ", "question: ", "q: ", ""]
    completions = ["the cat", "a helpful answer explains the reason why", "mat", "the model prefers", "one"]
    got = judge.score_batch(prompts, completions)
    assert model.training
    model.eval()
    expected = _one_by_one(model, tokenizer, [p + c for p, c in zip(prompts, completions)], None)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert judge("q: ", "the cat") == pytest.approx(expected[0], rel=1e-4, abs=1e-5)
    assert judge.pairwise is False
    # in win_rate: A wins where its reward is higher
    result = win_rate(completions[:2], completions[2:4], judge, prompts=prompts[:2], n_bootstrap=20)
    rewards_b = _one_by_one(model, tokenizer, [p + c for p, c in zip(prompts[:2], completions[2:4])], None)
    assert result.scores == [float(expected[0] > rewards_b[0]), float(expected[1] > rewards_b[1])]


def test_label_probability(tokenizer):
    tokenizer.padding_side = "right"
    model = gpt2_classifier(tokenizer, num_labels=2)
    judge = RewardModelJudge(
        model, tokenizer, label_index=1, batch_size=2, format_fn=lambda p, c: f"{p} | {c}"
    )
    texts = [("a", "the cat sat"), ("b", "preference learning ranks responses well"), ("c", "x")]
    got = judge.score_batch([p for p, _ in texts], [c for _, c in texts])
    expected = _one_by_one(model, tokenizer, [f"{p} | {c}" for p, c in texts], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert all(0.0 < value < 1.0 for value in got)


def test_constructor_errors(tokenizer):
    single, double = gpt2_classifier(tokenizer, 1), gpt2_classifier(tokenizer, 2)
    with pytest.raises(AlignlabError, match="single output"):
        RewardModelJudge(single, tokenizer, label_index=0)
    with pytest.raises(AlignlabError, match="pass label_index"):
        RewardModelJudge(double, tokenizer)
    with pytest.raises(AlignlabError, match="pass label_index"):
        RewardModelJudge(double, tokenizer, label_index=2)
    with pytest.raises(AlignlabError, match="batch_size"):
        RewardModelJudge(double, tokenizer, label_index=0, batch_size=0)
    with pytest.raises(AlignlabError, match="2 prompts"):
        RewardModelJudge(double, tokenizer, label_index=0).score_batch(["a", "b"], ["c"])
    single.config.pad_token_id = tokenizer.eos_token_id
    with pytest.raises(AlignlabError, match="differs from the reward model"):
        RewardModelJudge(single, tokenizer)


def test_loaded_from_a_directory_scores_as_the_model_does(tokenizer, classifier_dir):
    tokenizer.padding_side = "right"
    judge = load_judge(f"rm:{classifier_dir}")
    assert isinstance(judge, RewardModelJudge) and judge.max_length is None  # no limit declared: none applied
    assert isinstance(load_judge(str(classifier_dir)), RewardModelJudge)  # a model directory is a reward model
    texts = ["the cat sat on the mat", "preference learning"]
    expected = _one_by_one(gpt2_classifier(tokenizer, num_labels=1), tokenizer, texts, None)
    np.testing.assert_allclose(judge.score_batch(["", ""], texts), expected, rtol=1e-4, atol=1e-5)


def test_loader_refuses_a_model_without_a_trained_head(tokenizer, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        pad_token_id=tokenizer.pad_token_id)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=r"no trained classification head \(score.weight"):
        load_judge({"kind": "reward_model", "model": str(tmp_path)})


def test_loader_needs_label_index_for_a_classifier(tokenizer, tmp_path):
    gpt2_classifier(tokenizer, num_labels=2).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="classifier with 2 labels .*set label_index"):
        load_reward_model_judge(tmp_path)
    judge = load_judge({"kind": "reward_model", "model": str(tmp_path), "label_index": 1, "batch_size": 1})
    assert all(0 < r < 1 for r in judge.score_batch(["a", "b"], ["the cat", "mat"]))


@pytest.mark.parametrize(("field", "value"), [("batch_size", 0), ("label_index", -1), ("max_length", "8"),
                                              ("device", 0)])
def test_loader_checks_fields_before_loading(field, value, tmp_path):
    # tmp_path holds no model: the field is reported, not the missing weights
    with pytest.raises(ConfigError, match=field):
        load_judge({"kind": "reward_model", "model": str(tmp_path), field: value})


@pytest.mark.parametrize("label_index", [None, 1], ids=["reward-model", "classifier"])
def test_a_nan_logit_is_a_one_line_error(tokenizer, monkeypatch, label_index):
    tokenizer.padding_side = "right"
    model = gpt2_classifier(tokenizer, num_labels=1 if label_index is None else 2).to(torch.bfloat16)
    forward = model.forward

    def poisoned(input_ids, attention_mask):  # a bf16 forward whose logits overflow for the texts ending "bad"
        out = forward(input_ids=input_ids, attention_mask=attention_mask)
        texts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
        out.logits[torch.tensor([text.endswith("bad") for text in texts])] = float("nan")
        return out

    monkeypatch.setattr(model, "forward", poisoned)
    model.train()
    judge = RewardModelJudge(model, tokenizer, label_index=label_index, batch_size=2)
    assert all(np.isfinite(judge.score_batch(["q: "] * 3, ["the cat", "a reply", "the mat"])))
    with pytest.raises(AlignlabError) as info:
        judge.score_batch(["q: "] * 4, ["the cat", "a reply", "too bad", "the mat"])  # the NaN in the 2nd batch
    assert str(info.value) == ("reward model GPT2ForSequenceClassification returned nan for example 2; a reward "
                               "must be a finite number")
    assert model.training  # restored after the error too
    with pytest.raises(AlignlabError, match="returned nan for example 1"):  # its batch of a then b, through win_rate
        win_rate(["the cat"], ["too bad"], judge)
