"""Ranking accuracy and win rate vs distance from the reference (arXiv 2405.19534, Fig. 4) on the sentiment
testbed: the statistics, the finding computed from the numbers, and the end-to-end smoke run."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.cli import main as cli_main
from alignlab.cli.testbed import ranking_winrate_main as main
from alignlab.errors import AlignlabError
from alignlab.testbeds.sentiment import pipeline, ranking_winrate

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ statistics
def _spearman_textbook(x, y):
    """1 - 6 sum d^2 / (n (n^2 - 1)), exact for values without ties."""
    rank_x = {v: i for i, v in enumerate(sorted(x))}
    rank_y = {v: i for i, v in enumerate(sorted(y))}
    d2 = sum((rank_x[a] - rank_y[b]) ** 2 for a, b in zip(x, y))
    n = len(x)
    return 1 - 6 * d2 / (n * (n * n - 1))


distinct = st.lists(st.floats(-100, 100, allow_nan=False), min_size=3, max_size=15, unique=True)


@given(distinct, st.randoms(use_true_random=False))
@settings(max_examples=80, deadline=None)
def test_spearman_matches_the_textbook_formula_without_ties(x, rnd):
    y = list(x)
    rnd.shuffle(y)
    assert ranking_winrate.spearman(x, y) == pytest.approx(_spearman_textbook(x, y), abs=1e-9)
    # invariant under an increasing transform of either side (here one exact in floats: cubes of the ranks)
    order = sorted(x)
    assert ranking_winrate.spearman([order.index(v) ** 3 for v in x], y) == pytest.approx(
        ranking_winrate.spearman(x, y), abs=1e-9)


def test_spearman_and_pearson_known_values_ties_and_undefined():
    assert ranking_winrate.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ranking_winrate.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share mean ranks: x ranks (1.5, 1.5, 3, 4) against y ranks (1, 2, 3, 4)
    rx, ry = np.array([1.5, 1.5, 3, 4]), np.array([1, 2, 3, 4.0])
    expected = np.corrcoef(rx, ry)[0, 1]
    assert ranking_winrate.spearman([5, 5, 7, 9], [1, 2, 3, 4]) == pytest.approx(expected, abs=1e-12)
    assert ranking_winrate.pearson([1, 2, 4], [2, 4, 8]) == pytest.approx(1.0)
    assert ranking_winrate.pearson([0, 1, 2, 3], [1, 3, 2, 5]) == pytest.approx(np.corrcoef([0, 1, 2, 3],
                                                                                            [1, 3, 2, 5])[0, 1])
    assert ranking_winrate.spearman([1, 2], [1, 2]) is None  # too few points
    assert ranking_winrate.spearman([1, 2, 3], [0.5, 0.5, 0.5]) is None  # a constant side
    with pytest.raises(ValueError, match="3 values but y has 2"):
        ranking_winrate.pearson([1, 2, 3], [1, 2])


def test_spearman_p_value_matches_exact_enumeration():
    x = [0.1, 0.4, 0.2, 0.9, 0.7, 0.5]
    y = [0.3, 0.5, 0.1, 0.8, 0.4, 0.9]
    rho = ranking_winrate.spearman(x, y)
    exact = sum(abs(ranking_winrate.spearman(x, list(p))) >= abs(rho) - 1e-12
                for p in itertools.permutations(y)) / math.factorial(6)
    assert ranking_winrate.spearman_p_value(x, y, n_permutations=20000) == pytest.approx(exact, abs=0.015)
    # a perfect order of 5 points: 2 of the 120 orders reach |rho| = 1
    assert ranking_winrate.spearman_p_value([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(2 / 120, abs=0.005)
    assert ranking_winrate.spearman_p_value([1, 2], [1, 2]) is None


def test_paired_difference_interval():
    a = [1.0, 1.0, 0.5, 0.0, 1.0, 0.0, 1.0, 0.5] * 25
    b = [1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0, 0.5] * 25
    d = ranking_winrate.paired_difference(a, b, n_bootstrap=300, seed=0)
    assert d["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert d["ci"][0] < d["difference"] < d["ci"][1] and d["n"] == 200
    same = ranking_winrate.paired_difference(a, a, n_bootstrap=50, seed=0)
    assert same["difference"] == 0 and same["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="one length"):
        ranking_winrate.paired_difference([1.0], [1.0, 0.0], n_bootstrap=10, seed=0)


def test_known_rewards_asks_the_judge_only_for_new_completions():
    asked = []

    class Judge:
        def score_batch(self, prompts, completions):
            asked.append(list(completions))
            return [float(len(c)) for c in completions]

    known = ranking_winrate.KnownRewards(Judge(), {("p", "a"): 0.25})
    assert known.score_batch(["p", "p", "q"], ["a", "bbb", "a"]) == [0.25, 3.0, 1.0]
    assert asked == [["bbb", "a"]] and known("p", "bbb") == 3.0 and len(asked) == 1
    assert not known.pairwise


def _rows(distance, ranking, wins):
    return [{"step": 10 * i, "distance": d, "ranking_accuracy": r, "win_rate": w}
            for i, (d, r, w) in enumerate(zip(distance, ranking, wins))]


def test_near_far_finds_the_papers_pattern_from_the_numbers():
    # both rise up to distance 4, then ranking accuracy keeps rising while win rate falls (Fig. 4's shape)
    distance = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    ranking = [0.50, 0.52, 0.55, 0.57, 0.60, 0.62, 0.65, 0.67, 0.70, 0.72]
    wins = [0.50, 0.55, 0.60, 0.66, 0.70, 0.68, 0.66, 0.63, 0.61, 0.60]
    f = ranking_winrate.near_far(_rows(distance, ranking, wins))
    assert f["split_distance"] == 4.5 and f["near"]["n"] == 5 and f["far"]["n"] == 5
    assert f["near"]["spearman_ranking_winrate"] == pytest.approx(1.0)
    assert f["far"]["spearman_ranking_winrate"] == pytest.approx(-1.0)
    assert f["far"]["spearman_winrate_distance"] == pytest.approx(-1.0)
    assert f["together_near"] and f["diverge_far"] and f["reproduces"]
    assert f["peak"] == {"step": 40, "distance": 4, "win_rate": 0.70, "ranking_accuracy": 0.60}
    assert f["after_peak"]["ranking_accuracy_change"] == pytest.approx(0.12)
    assert f["after_peak"]["win_rate_change"] == pytest.approx(-0.10)
    assert "+1.00 near the reference" in f["statement"] and "-1.00 far from it" in f["statement"]
    assert "as the paper finds" in f["statement"]


def test_near_far_reports_when_the_pattern_is_absent():
    distance = [0, 1, 2, 3, 4, 5]
    rising = [0.5, 0.6, 0.65, 0.7, 0.8, 0.9]
    f = ranking_winrate.near_far(_rows(distance, rising, [0.5, 0.55, 0.6, 0.7, 0.75, 0.8]))
    assert f["together_near"] and not f["diverge_far"] and not f["reproduces"]
    assert "do not diverge far from it, unlike the paper" in f["statement"]
    # too few points in a half: the correlation is undefined, and so is the claim
    f = ranking_winrate.near_far(_rows([0, 1, 2, 3], [0.5, 0.6, 0.7, 0.8], [0.5, 0.6, 0.5, 0.4]))
    assert f["near"]["spearman_ranking_winrate"] is None and not f["reproduces"]
    assert "undefined near the reference" in f["statement"]
    decline = {"difference": -0.02, "ci": [-0.05, 0.01], "confidence": 0.95}
    assert "interval [-0.050, +0.010]" in ranking_winrate.near_far(_rows(distance, rising, rising), decline)[
        "statement"]


def test_online_checkpoints_offset_each_round_by_the_rounds_before(tmp_path):
    for r, names in enumerate((["checkpoint-2", "final"], ["checkpoint-2", "checkpoint-4", "final"])):
        for name in names:
            (tmp_path / "rounds" / f"round-{r:03d}" / "train" / name).mkdir(parents=True)
    found = ranking_winrate.online_checkpoints(tmp_path, 8)  # 2 rounds of 4 steps
    assert [(step, d.relative_to(tmp_path).as_posix()) for step, d in found] == [
        (2, "rounds/round-000/train/checkpoint-2"), (4, "rounds/round-000/train/final"),
        (6, "rounds/round-001/train/checkpoint-2"), (8, "rounds/round-001/train/checkpoint-4")]
    assert ranking_winrate.online_checkpoints(tmp_path / "nothing", 8) == []


# ------------------------------------------------------------------------------------------------ end to end
SMOKE_ARGS = ["--smoke", "--seed", "0"]


@pytest.fixture(scope="module")
def smoke(sentiment_experiments_dir):
    out = sentiment_experiments_dir
    assert main([*SMOKE_ARGS, "--out", str(out)]) == 0
    return out, json.loads((out / "ranking_winrate.json").read_text())


def test_smoke_json_schema_and_rows(smoke):
    out, result = smoke
    assert result["experiment"] == "ranking-winrate" and "2405.19534" in result["paper"]
    assert result["config"]["beta"] == 0.1 and result["config"]["stages"]["out"] == str(out)
    offline, online = result["arms"]
    assert (offline["arm"], offline["label"], online["arm"], online["label"]) == (
        "dpo", "offline DPO", "online-dpo", "online DPO")
    # the online arm: 2 rounds of 3 steps on 3 x 4 prompts each, the classifier as judge, the same DPO settings
    section = online["keys"]["online"]
    assert (section["rounds"], section["steps_per_round"], section["prompts_per_round"]) == (2, 3, 12)
    assert section["judge"]["model"] == result["assets"]["reward_model"] and section["judge"]["label_index"] == 1
    run = Path(online["run_dir"])
    assert sorted(p.name for p in (run / "rounds").iterdir()) == ["round-000", "round-001"]
    assert all((run / "rounds" / r / "pairs.jsonl").is_file() for r in ("round-000", "round-001"))
    n = result["n_comparisons"]
    assert n == 2 * 8  # eval_samples x the smoke's test prefixes
    for arm in result["arms"]:
        # the reference, a checkpoint every 6 // 5 = 1 step, final/ at 6 (online: 1, 2, final 3 of each round)
        assert [row["step"] for row in arm["rows"]] == [0, 1, 2, 3, 4, 5, 6]
        _check_rows(arm["rows"], n)
    assert (out / "ranking_winrate.png").read_bytes()[:8] == PNG


def _check_rows(rows, n):
    for row in rows:
        assert set(row) >= {"distance", "distance_squared", "ranking_accuracy", "ranking_accuracy_normalized",
                            "win_rate", "win_rate_ci", "wins", "ties", "losses", "reward", "kl"}
        assert 0 <= row["ranking_accuracy"] <= 1 and 0 <= row["win_rate"] <= 1
        assert row["win_rate_ci"][0] <= row["win_rate"] <= row["win_rate_ci"][1]
        assert row["wins"] + row["ties"] + row["losses"] == n
        assert row["distance_squared"] == pytest.approx(row["distance"] ** 2)
        # win rate = (wins + ties / 2) / n for a reward judge
        assert row["win_rate"] == pytest.approx((row["wins"] + row["ties"] / 2) / n)
    ref = rows[0]
    # the reference against itself: zero distance, identical samples (shared noise), all ties
    assert ref["distance"] == 0 and ref["ties"] == n and ref["win_rate"] == 0.5 and abs(ref["kl"]) < 1e-5
    assert all(row["distance"] > 0 for row in rows[1:])


def test_smoke_finding_is_computed_from_the_rows(smoke):
    _, result = smoke
    for arm in result["arms"]:
        paired = arm["finding"]["after_peak"]["win_rate_change_paired"]
        recomputed = ranking_winrate.near_far(arm["rows"], paired)
        assert json.loads(json.dumps(pipeline.json_safe(recomputed))) == arm["finding"]
        assert paired["difference"] == pytest.approx(arm["finding"]["after_peak"]["win_rate_change"])


def test_smoke_ranking_accuracy_matches_a_plain_forward(smoke):
    # step 0's ranking accuracy is the reference's own: recompute it from the pairs file with a plain Hugging Face
    # forward in float64 (log_softmax, shift, sum over labelled tokens), not alignlab's scoring engine
    import torch

    from alignlab.assets import load_model, load_tokenizer
    from alignlab.data import load_preference_data

    _, result = smoke
    reference = result["assets"]["reference"]
    max_new_tokens = result["config"]["stages"]["max_new_tokens"]
    examples, _ = load_preference_data(result["pairs"], load_tokenizer(reference),
                                       max_length=64 + max_new_tokens + 8, max_prompt_length=64)
    assert len(examples) == result["n_training_pairs"]
    model = load_model(reference).double().eval()

    def logp(ids, labels):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1]
        target = torch.tensor(labels[1:])
        mask = target != -100
        return float(logits.log_softmax(-1)[mask].gather(-1, target[mask, None]).sum())

    correct = [logp(e["chosen_input_ids"], e["chosen_labels"]) > logp(e["rejected_input_ids"], e["rejected_labels"])
               for e in examples]
    assert result["arms"][0]["rows"][0]["ranking_accuracy"] == pytest.approx(sum(correct) / len(correct))


def test_second_invocation_reuses_the_cache(smoke, monkeypatch, capsys):
    out, before = smoke

    def no_training(*args, **kwargs):
        raise AssertionError("a cached experiment must not train")

    monkeypatch.setattr(pipeline, "train", no_training)
    assert main([*SMOKE_ARGS, "--out", str(out), "--no-plot"]) == 0
    after = json.loads((out / "ranking_winrate.json").read_text())
    assert after["arms_cached"] == 2 and after["arms"] == before["arms"]
    assert "reused from the cache" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--checkpoints", "6"], "--checkpoints must be in [1, --steps)"),
    (["--beta", "0"], "--beta must be a number > 0"),
    (["--eval-samples", "0"], "--eval-samples must be >= 1"),
    (["--bootstrap", "0"], "--bootstrap must be >= 1"),
    (["--confidence", "1"], "--confidence must be in (0, 1)"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--online-rounds", "4"], "--online-rounds must be 0 (no online arm) or divide --steps (6)"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path, capsys):
    code = cli_main(["testbed", "ranking-winrate", *SMOKE_ARGS, "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("alignlab: ") and message in err[-1]
    with pytest.raises(AlignlabError, match=re.escape(message)):
        main([*SMOKE_ARGS, "--out", str(tmp_path), *args])
    assert not list(tmp_path.iterdir())  # rejected before anything was built
