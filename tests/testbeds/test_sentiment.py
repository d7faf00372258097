"""TDPO controlled-sentiment testbed: corpus, classifier, pairs, frontiers, and the end-to-end smoke sweep."""

from __future__ import annotations

import itertools
import json
import math
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.cli import main as cli_main
from alignlab.cli.testbed import sentiment_main as main
from alignlab.errors import AlignlabError
from alignlab.testbeds.sentiment import corpus, frontier, models, pipeline

NEGATIVE_WORDS = set(corpus.NEGATIVE_ADJECTIVES) | set(corpus.NEGATIVE_VERBS)
POSITIVE_WORDS = set(corpus.POSITIVE_ADJECTIVES) | set(corpus.POSITIVE_VERBS)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


# ------------------------------------------------------------------------------------------------ corpus
def test_corpus_is_deterministic_by_seed_and_split():
    a, b = corpus.make_corpus(50, seed=3), corpus.make_corpus(50, seed=3)
    assert a == b
    assert [r["text"] for r in corpus.make_corpus(50, seed=4)] != [r["text"] for r in a]
    assert [r["text"] for r in corpus.make_corpus(50, seed=3, split="test")] != [r["text"] for r in a]
    assert len({r["text"] for r in corpus.make_corpus(400, seed=0)}) > 390  # variety, not a few templates


def test_polarity_is_controlled_and_labels_follow_the_majority():
    rng = random.Random(0)
    for _ in range(200):
        pos = corpus.make_review(rng, 1.0)
        neg = corpus.make_review(rng, 0.0)
        assert pos["label"] == corpus.POSITIVE and not _words(pos["text"]) & NEGATIVE_WORDS
        assert neg["label"] == corpus.NEGATIVE and not _words(neg["text"]) & POSITIVE_WORDS
    for review in corpus.make_corpus(500, seed=1):
        n_pos, n_neg = review["n_positive"], review["n_negative"]
        assert 2 <= n_pos + n_neg <= 4
        expected = 1 if n_pos > n_neg else 0 if n_neg > n_pos else -1
        assert review["label"] == expected
        if n_neg == 0:
            assert not _words(review["text"]) & NEGATIVE_WORDS
        if n_pos == 0:
            assert not _words(review["text"]) & POSITIVE_WORDS
    # the knob: the positive share of evaluative sentences tracks `positivity`
    for p in (0.2, 0.8):
        reviews = [corpus.make_review(rng, p) for _ in range(400)]
        share = sum(r["n_positive"] for r in reviews) / sum(r["n_positive"] + r["n_negative"] for r in reviews)
        assert abs(share - p) < 0.05
    with pytest.raises(ValueError):
        corpus.make_review(rng, 1.5)


def test_dataset_files_round_trip_and_prefixes(tmp_path):
    corpus.write_dataset(tmp_path, n_train=30, n_test=10, seed=2)
    texts, labels = corpus.load_reviews(tmp_path, "test")
    expected = corpus.make_corpus(10, 2, "test")
    assert texts == [r["text"] for r in expected] and labels == [r["label"] for r in expected]
    assert corpus.review_prefix("  One two\tthree four five ", 4) == "One two three four"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.jsonl").write_text('{"text": "fine", "label": 1}\n{"text": "x", "label": "pos"}\n')
    with pytest.raises(Exception, match=r"line 2: field 'label'"):
        corpus.load_reviews(bad, "train")


# -------------------------------------------------------------------------------------------- classifier
@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    train = corpus.make_corpus(600, seed=0)
    texts = [r["text"] for r in train]
    tokenizer = models.build_review_tokenizer(texts, vocab_size=512)
    directory = tmp_path_factory.mktemp("classifier")
    return models.train_classifier(texts, [r["label"] for r in train], tokenizer, directory, seed=0, steps=120)


def test_classifier_is_accurate_on_held_out_reviews_through_the_judge_path(classifier_dir):
    judge = models.load_reward_judge(str(classifier_dir))  # AutoModelForSequenceClassification + RewardModelJudge
    assert judge.label_index == 1 and judge.model.config.id2label[1] == "POSITIVE"
    test = [r for r in corpus.make_corpus(300, seed=0, split="test") if r["label"] != corpus.NO_MAJORITY]
    rewards = judge.score_batch([""] * len(test), [r["text"] for r in test])
    assert all(0.0 <= r <= 1.0 for r in rewards)
    accuracy = sum((r > 0.5) == (t["label"] == 1) for r, t in zip(rewards, test)) / len(test)
    assert accuracy > 0.85, accuracy
    # prompt + completion is scored as one text: splitting a review anywhere gives the same reward
    text = test[0]["text"]
    cut = len(text) // 2
    assert judge.score_batch([text[:cut]], [text[cut:]])[0] == pytest.approx(rewards[0], abs=1e-5)


def test_positive_label_index_reads_the_config():
    from transformers import RobertaConfig

    assert models.positive_label_index(RobertaConfig(id2label={0: "NEGATIVE", 1: "POSITIVE"})) == 1
    assert models.positive_label_index(RobertaConfig(id2label={0: "positive", 1: "negative"})) == 0
    assert models.positive_label_index(RobertaConfig(num_labels=2)) == 1
    with pytest.raises(ValueError, match="POSITIVE"):
        models.positive_label_index(RobertaConfig(num_labels=3))


# ---------------------------------------------------------------------------------------------- pairs
def test_make_pairs_takes_best_and_worst_and_skips_ties_and_blanks():
    records, rewards = [], []
    spec = {0: [(" good", 0.2), (" great", 0.9), (" meh", 0.5)],
            1: [(" a", 0.4), (" b", 0.4)],                      # all tied: no pair
            2: [(" ", 0.99), (" fine", 0.1), (" ok", 0.3)],      # best is blank: no pair
            3: [(" x", 0.7), (" y", 0.7), (" z", 0.1)]}          # tie for best: the earlier sample
    for i, samples in spec.items():
        for s, (completion, reward) in enumerate(samples):
            records.append({"prompt_index": i, "sample_index": s, "prompt": f"p{i}", "completion": completion})
            rewards.append(reward)
    pairs = pipeline.make_pairs(records, rewards)
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [("p0", " great", " good"),
                                                                        ("p3", " x", " z")]
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)


# -------------------------------------------------------------------------------------------- frontiers
points = st.lists(st.tuples(st.floats(0, 20), st.floats(0, 1)), min_size=1, max_size=12)


@given(points)
@settings(max_examples=60, deadline=None)
def test_pareto_front_matches_brute_force(pts):
    front = frontier.pareto_front(pts)
    dominated = {p for p in pts if any(q[0] <= p[0] and q[1] > p[1] for q in pts)}
    assert set(front) <= set(pts) - dominated
    for p in set(pts) - dominated:  # each undominated point is on the front, or ties one there in both axes
        assert p in front or any(q[1] == p[1] and q[0] <= p[0] for q in front)
    assert [k for k, _ in front] == sorted(k for k, _ in front)
    assert all(r1 > r0 for (_, r0), (_, r1) in itertools.pairwise(front))


def test_compare_frontiers_known_gaps():
    ref = (0.0, 0.5)
    low = [ref, (4.0, 0.7)]           # reward 0.5 + 0.05 k
    high = [ref, (2.0, 0.8), (4.0, 0.9)]
    assert frontier.frontier_reward(frontier.pareto_front(low), 2.0) == pytest.approx(0.6)
    assert math.isnan(frontier.frontier_reward(frontier.pareto_front(low), 5.0))
    c = frontier.compare_frontiers(high, low)
    assert c["dominates"] and c["kl_range"] == [0.0, 4.0]
    # gap(k) = 0.1 k on (0, 2], 0.2 - 0.0 ... : high is 0.5 + 0.15k then 0.7 + 0.05k; low is 0.5 + 0.05k
    grid = [4.0 * (i + 1) / 200 for i in range(200)]
    gaps = [(0.1 * k if k <= 2 else 0.2) for k in grid]
    assert c["mean_gap"] == pytest.approx(sum(gaps) / 200, abs=1e-9)
    assert c["max_gap"] == pytest.approx(0.2) and c["min_gap"] == pytest.approx(0.002)
    reverse = frontier.compare_frontiers(low, high)
    assert not reverse["dominates"] and reverse["mean_gap"] == pytest.approx(-c["mean_gap"])
    crossing = frontier.compare_frontiers([ref, (4.0, 0.9)], [ref, (1.0, 0.8), (4.0, 0.85)])
    assert not crossing["dominates"] and crossing["min_gap"] < 0 < crossing["max_gap"]


# ------------------------------------------------------------------------------------------- end to end
SMOKE_ARGS = ["--smoke", "--seed", "0"]


@pytest.fixture(scope="module")
def smoke_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment-smoke")
    assert main([*SMOKE_ARGS, "--out", str(out)]) == 0
    return out


def test_smoke_sweep_writes_json_and_plots(smoke_out, capsys):
    result = json.loads((smoke_out / "sentiment.json").read_text())
    runs = result["runs"]
    assert {(r["method"], r["alpha"]) for r in runs} == {("dpo", None), ("tdpo1", None), ("tdpo2", 0.5),
                                                        ("fdpo", None), ("simpo", None)}
    for r in runs + [result["reference"]]:
        for key in ("reward", "kl", "kl_sample", "entropy", "distinct_1", "distinct_2"):
            assert math.isfinite(r[key]), (r["method"], key)
        assert 0.0 <= r["reward"] <= 1.0 and r["kl"] >= -1e-6
    assert result["reference"]["kl"] == pytest.approx(0.0, abs=1e-5)  # the reference against itself
    tdpo = next(r for r in runs if r["method"] == "tdpo2")
    assert tdpo["seqkl"][0]["step"] == 0 and tdpo["seqkl"][-1]["step"] == 4  # before, every 2 steps, after
    assert all(row["kl_chosen"] >= 0 for row in tdpo["seqkl"])
    for name in ("frontier.png", "seqkl_chosen.png", "seqkl_rejected.png", "seqkl_margin.png"):
        assert (smoke_out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "TDPO2 vs DPO" in result["comparisons"]


def test_pairs_chosen_reward_exceeds_rejected_under_the_classifier(smoke_out):
    result = json.loads((smoke_out / "sentiment.json").read_text())
    pairs_file = next((smoke_out / "pairs").glob("pairs-*/pairs.jsonl"))
    pairs = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    assert len(pairs) == result["pairs_summary"]["pairs"] >= 8
    judge = models.load_reward_judge(result["assets"]["reward_model"])
    chosen = judge.score_batch([p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
    rejected = judge.score_batch([p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
    for p, c, r in zip(pairs, chosen, rejected):
        assert c > r and c == pytest.approx(p["chosen_reward"], abs=1e-5)


def test_second_invocation_reuses_the_cache(smoke_out, monkeypatch, capsys):
    def no_training(*args, **kwargs):
        raise AssertionError("a cached sweep must not train")

    monkeypatch.setattr(pipeline, "train", no_training)
    monkeypatch.setattr(models, "train_classifier", no_training)
    before = json.loads((smoke_out / "sentiment.json").read_text())
    assert main([*SMOKE_ARGS, "--out", str(smoke_out)]) == 0
    after = json.loads((smoke_out / "sentiment.json").read_text())
    assert after["runs_cached"] == len(after["runs"]) == 5
    assert [r["reward"] for r in after["runs"]] == [r["reward"] for r in before["runs"]]
    assert "reused from the cache" in capsys.readouterr().out


def test_real_path_arguments_with_local_stand_ins(smoke_out, classifier_dir, tmp_path):
    # The paper's command is --policy gpt2-large --reward-model siebert/... --dataset imdb; the same options
    # take local directories: a causal LM, a sequence classifier, and a dataset with train/test text+label.
    dataset = next((smoke_out / "data").glob("synthetic-*"))
    policy = next((smoke_out / "models").glob("policy-init-*"))
    out = tmp_path / "real"
    args = ["--policy", str(policy), "--reward-model", str(classifier_dir), "--dataset", str(dataset),
            "--out", str(out), "--methods", "tdpo2", "--alphas", "0.5", "--betas", "0.1", "--steps", "2",
            "--batch-size", "4", "--eval-steps", "1", "--sft-examples", "200", "--sft-steps", "2",
            "--n-prompts", "20", "--samples-per-prompt", "2", "--max-new-tokens", "8", "--n-eval-prompts", "4",
            "--eval-samples", "1", "--no-plot"]
    assert main(args) == 0
    result = json.loads((out / "sentiment.json").read_text())
    assert result["assets"]["reward_model"] == str(classifier_dir)
    assert result["assets"]["policy"] == str(policy)
    built = sorted(p.name.split("-")[0] for p in (out / "models").iterdir())
    assert built == ["sft", "sft"]  # the SFT run and its data; no policy or classifier built
    assert not (out / "data").exists() and not list(out.glob("*.png"))
    assert [(r["method"], r["beta"], r["alpha"]) for r in result["runs"]] == [("tdpo2", 0.1, 0.5)]


@pytest.mark.parametrize("args, message", [
    (["--methods", "dpo,ppo"], "--methods: 'ppo' is not a method"),
    (["--betas", "0.1,x"], "--betas: '0.1,x' is not a comma-separated list"),
    (["--samples-per-prompt", "1"], "--samples-per-prompt must be >= 2"),
    (["--reward-model", "no/such-classifier-dir"], "cannot load"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path, capsys, smoke_out):
    out = smoke_out if "--reward-model" in args else tmp_path
    # through the CLI: main raises the AlignlabError, alignlab.cli.main prints it as one line with exit code 2
    code = cli_main(["testbed", "sentiment", *SMOKE_ARGS, "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("alignlab: ") and message in err[-1]
    assert not err[-1].startswith("alignlab: alignlab:")
    with pytest.raises(AlignlabError, match=re.escape(message)):
        main([*SMOKE_ARGS, "--out", str(out), *args])
