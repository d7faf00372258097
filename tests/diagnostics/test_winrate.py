"""Win rate with reward and pairwise judges, the bootstrap interval, and RewardModelJudge on a tiny random model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignlab.diagnostics import RewardModelJudge, win_rate
from alignlab.errors import AlignlabError


def _length_reward(prompt: str, completion: str) -> float:
    return float(len(completion))


def test_reward_judge_wins_ties_and_losses():
    a = ["xxxx", "xx", "x", "xxx"]
    b = ["xx", "xx", "xxx", "x"]
    result = win_rate(a, b, _length_reward, n_bootstrap=200)
    assert (result.wins, result.ties, result.losses) == (2, 1, 1)
    assert result.scores == [1.0, 0.5, 0.0, 1.0]
    assert result.win_rate == pytest.approx(2.5 / 4)
    assert not result.pairwise and not result.randomized_order


def test_reward_judge_receives_prompts():
    seen = []

    def judge(prompt, completion):
        seen.append((prompt, completion))
        return 1.0 if completion.startswith(prompt) else 0.0

    result = win_rate(["p1 yes", "no"], ["no", "p2 yes"], judge, prompts=["p1", "p2"], n_bootstrap=10)
    assert result.scores == [1.0, 0.0]
    assert ("p1", "p1 yes") in seen and ("p2", "p2 yes") in seen
    win_rate(["a"], ["b"], lambda prompt, completion: seen.append(prompt) or 0.0, n_bootstrap=1)
    assert seen[-1] == ""  # no prompts: the judge gets ""


def test_bootstrap_interval_matches_numpy():
    rng = np.random.default_rng(5)
    rewards_a, rewards_b = rng.normal(0.3, 1, 80), rng.normal(0, 1, 80)
    a, b = [str(x) for x in rewards_a], [str(x) for x in rewards_b]
    result = win_rate(a, b, lambda prompt, completion: float(completion), n_bootstrap=500, seed=7)
    scores = np.where(rewards_a > rewards_b, 1.0, 0.0)
    # the same resampling done by hand: default_rng(seed), indices [n_bootstrap, n], percentile interval
    indices = np.random.default_rng(7).integers(0, 80, size=(500, 80))
    means = scores[indices].mean(axis=1)
    assert result.win_rate == pytest.approx(scores.mean())
    assert result.ci_low == pytest.approx(np.percentile(means, 2.5))
    assert result.ci_high == pytest.approx(np.percentile(means, 97.5))
    assert result.ci_low <= result.win_rate <= result.ci_high
    # the interval is about +-2 standard errors wide
    stderr = scores.std() / np.sqrt(80)
    assert 3 * stderr < result.ci_high - result.ci_low < 5 * stderr
    again = win_rate(a, b, lambda prompt, completion: float(completion), n_bootstrap=500, seed=7)
    assert (again.ci_low, again.ci_high) == (result.ci_low, result.ci_high)
    narrower = win_rate(
        a, b, lambda prompt, completion: float(completion), n_bootstrap=500, seed=7, confidence=0.5
    )
    assert result.ci_low <= narrower.ci_low <= narrower.ci_high <= result.ci_high


def test_pairwise_judge_probabilities_bools_and_order_randomisation():
    a = ["long answer", "short", "medium one", "x"]
    b = ["short", "long answer", "tiny", "yy"]

    def prefers_longer(prompt, first, second):
        return len(first) > len(second)

    result = win_rate(a, b, prefers_longer, pairwise=True, n_bootstrap=50)
    assert result.scores == [1.0, 0.0, 1.0, 0.0] and result.randomized_order
    fixed = win_rate(a, b, prefers_longer, pairwise=True, randomize_order=False, n_bootstrap=50)
    assert fixed.scores == result.scores and not fixed.randomized_order

    def first_position(prompt, first, second):  # a judge with pure position bias
        return 0.9

    biased = win_rate(["a"] * 400, ["b"] * 400, first_position, pairwise=True, randomize_order=False)
    assert biased.win_rate == pytest.approx(0.9)
    debiased = win_rate(["a"] * 400, ["b"] * 400, first_position, pairwise=True, seed=3)
    swaps = np.random.default_rng([3, 1]).random(400) < 0.5
    assert debiased.win_rate == pytest.approx(np.where(swaps, 0.1, 0.9).mean())
    assert abs(debiased.win_rate - 0.5) < 0.1


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((["a"], ["b", "c"], _length_reward), {}, "completions_b has 2"),
        (([], [], _length_reward), {}, "empty"),
        ((["a"], ["b"], _length_reward), {"prompts": ["p", "q"]}, "prompts has 2"),
        ((["a"], ["b"], _length_reward), {"n_bootstrap": 0}, "n_bootstrap"),
        ((["a"], ["b"], _length_reward), {"confidence": 1.0}, "confidence"),
        ((["a"], ["b"], _length_reward), {"randomize_order": True}, "pairwise judges only"),
        ((["a"], ["b"], lambda p, c: float("nan")), {}, "completion a of example 0"),
        ((["a"], ["b"], lambda p, x, y: 1.5), {"pairwise": True}, "expected a probability"),
        (("a", ["b"], _length_reward), {}, "list of strings"),
    ],
)
def test_win_rate_errors(args, kwargs, message):
    with pytest.raises(AlignlabError, match=message):
        win_rate(*args, **kwargs)


# --- RewardModelJudge -----------------------------------------------------------------------------------------

SENTENCES = [
    "the cat sat on the mat",
    "a helpful answer explains the reason",
    "preference learning ranks responses",
    "the model prefers the chosen reply over the rejected one",
]


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(SENTENCES, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def _gpt2_classifier(tokenizer, num_labels: int):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=2, num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    return GPT2ForSequenceClassification(config).eval()


def _one_by_one(model, tokenizer, texts, label_index):
    """Each text alone, no padding: the reference rewards."""
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
def test_reward_model_judge_single_output_batched_equals_unbatched(tokenizer, padding_side):
    tokenizer.padding_side = padding_side
    model = _gpt2_classifier(tokenizer, num_labels=1)
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
    # in win_rate: A wins where its reward is higher
    result = win_rate(completions[:2], completions[2:4], judge, prompts=prompts[:2], n_bootstrap=20)
    rewards_b = _one_by_one(model, tokenizer, [p + c for p, c in zip(prompts[:2], completions[2:4])], None)
    assert result.scores == [float(expected[0] > rewards_b[0]), float(expected[1] > rewards_b[1])]


def test_reward_model_judge_label_probability(tokenizer):
    tokenizer.padding_side = "right"
    model = _gpt2_classifier(tokenizer, num_labels=2)
    judge = RewardModelJudge(
        model, tokenizer, label_index=1, batch_size=2, format_fn=lambda p, c: f"{p} | {c}"
    )
    texts = [("a", "the cat sat"), ("b", "preference learning ranks responses well"), ("c", "x")]
    got = judge.score_batch([p for p, _ in texts], [c for _, c in texts])
    expected = _one_by_one(model, tokenizer, [f"{p} | {c}" for p, c in texts], 1)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert all(0.0 < value < 1.0 for value in got)


def test_reward_model_judge_errors(tokenizer):
    single, double = _gpt2_classifier(tokenizer, 1), _gpt2_classifier(tokenizer, 2)
    with pytest.raises(AlignlabError, match="single output"):
        RewardModelJudge(single, tokenizer, label_index=0)
    with pytest.raises(AlignlabError, match="pass label_index"):
        RewardModelJudge(double, tokenizer)
    with pytest.raises(AlignlabError, match="pass label_index"):
        RewardModelJudge(double, tokenizer, label_index=2)
    single.config.pad_token_id = tokenizer.eos_token_id
    with pytest.raises(AlignlabError, match="differs from the reward model"):
        RewardModelJudge(single, tokenizer)
    with pytest.raises(AlignlabError, match="batch_size"):
        RewardModelJudge(double, tokenizer, label_index=0, batch_size=0)
