"""Rater proportions from votes, the four flip groups, and the parameter distance to the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from alignlab.diagnostics import (
    alpha_from_counts,
    alpha_from_votes,
    alphas_from_records,
    find_alpha_source,
    flip_groups,
    group_votes,
    require_alpha_source,
    weight_distance,
)
from alignlab.errors import AlignlabError, DataError

# --- votes ----------------------------------------------------------------------------------------------------


def test_alpha_from_votes_and_counts():
    summary = alpha_from_votes([1, 1, 2, 1])
    assert (summary.alpha, summary.n_votes, summary.majority, summary.alpha_majority) == (0.75, 4, 1, 0.75)
    assert not summary.is_tie
    summary = alpha_from_votes([2, 2, 1])
    assert summary.alpha == pytest.approx(1 / 3) and summary.majority == 2
    assert summary.alpha_majority == pytest.approx(2 / 3)
    assert alpha_from_votes([1, 2, 2, 1]).is_tie and alpha_from_votes([1, 2, 2, 1]).alpha == 0.5
    assert alpha_from_votes([2]).alpha == 0.0 and alpha_from_votes([2]).alpha_majority == 1.0
    assert alpha_from_counts(3, 1) == alpha_from_votes([1, 2, 1, 1])
    assert alpha_from_counts(np.int64(0), np.int64(5)).majority == 2


@pytest.mark.parametrize("votes", [[1, 3], [0, 1], [True, 2], [1.5], "12", []])
def test_alpha_from_votes_rejects_bad_votes(votes):
    with pytest.raises(AlignlabError):
        alpha_from_votes(votes)


@pytest.mark.parametrize(("first", "second"), [(-1, 2), (1.0, 2), (0, 0), (True, 1)])
def test_alpha_from_counts_rejects_bad_counts(first, second):
    with pytest.raises(AlignlabError):
        alpha_from_counts(first, second)


def test_group_votes_alpacafarm_style():
    rows = [
        {"instruction": "q1", "output_1": "a", "output_2": "b", "preference": 1},
        {"instruction": "q2", "output_1": "c", "output_2": "d", "preference": 2},
        {"instruction": "q1", "output_1": "a", "output_2": "b", "preference": 1},
        {"instruction": "q1", "output_1": "a", "output_2": "b", "preference": 2},
        {"instruction": "q2", "output_1": "c", "output_2": "d", "preference": 1.0},
        {"instruction": "q1", "output_1": "a", "output_2": "b", "preference": 1},
    ]
    grouped = group_votes(rows)
    assert list(grouped) == [("q1", "a", "b"), ("q2", "c", "d")]
    assert grouped[("q1", "a", "b")].alpha == 0.75 and grouped[("q1", "a", "b")].n_votes == 4
    assert grouped[("q2", "c", "d")].is_tie
    with pytest.raises(DataError, match="vote row 1: field 'preference' is 3"):
        group_votes([rows[0], {**rows[1], "preference": 3}])
    with pytest.raises(DataError, match="vote row 0: field 'output_2' is missing"):
        group_votes([{"instruction": "q", "output_1": "a", "preference": 1}])


def test_alpha_sources_and_the_no_alpha_error():
    assert find_alpha_source(["prompt", "chosen", "rejected", "alpha"]) == "alpha"
    assert find_alpha_source(["prompt", "votes"]) == "votes"
    assert find_alpha_source(["votes_chosen", "votes_rejected"]) == "votes_chosen+votes_rejected"
    assert find_alpha_source(["prompt", "chosen", "rejected"]) is None
    with pytest.raises(DataError, match=r"dataset 'hh' has neither 'alpha' nor annotator votes"):
        require_alpha_source(["prompt", "chosen", "rejected"], dataset="hh")
    with pytest.raises(DataError, match="has neither"):
        alphas_from_records([{"prompt": "x", "chosen": "a", "rejected": "b"}], dataset="hh")


def test_alphas_from_records():
    alphas = alphas_from_records([{"alpha": 0.75}, {"alpha": 1}], dataset="d")
    assert alphas.dtype == torch.float64 and alphas.tolist() == [0.75, 1.0]
    assert alphas_from_records([{"votes": [1, 1, 2]}, {"votes": [2]}], dataset="d").tolist() == pytest.approx(
        [2 / 3, 0.0]
    )
    counts = [{"votes_chosen": 3, "votes_rejected": 1}]
    assert alphas_from_records(counts, dataset="d").tolist() == [0.75]
    with pytest.raises(DataError, match="record 1: alpha = 1.5 is outside"):
        alphas_from_records([{"alpha": 0.75}, {"alpha": 1.5}], dataset="d")
    # each record has its own source; a record with none is an error naming it
    assert alphas_from_records([{"votes": [1]}, {"alpha": 0.5}], dataset="d").tolist() == [1.0, 0.5]
    with pytest.raises(DataError, match="^d record 1: field 'alpha' is missing"):
        alphas_from_records([{"votes": [1]}, {"chosen": "a"}], dataset="d")


# --- flip groups ----------------------------------------------------------------------------------------------


def test_flip_groups_counts_against_independent_loop():
    rng = np.random.default_rng(0)
    n = 300
    ref_chosen, ref_rejected = rng.normal(-50, 10, n), rng.normal(-50, 10, n)
    policy_chosen, policy_rejected = ref_chosen + rng.normal(2, 4, n), ref_rejected + rng.normal(-2, 4, n)
    policy_chosen[:5] = policy_rejected[:5]  # ties count as incorrect
    beta = 0.1
    groups = flip_groups(
        torch.tensor(ref_chosen), torch.tensor(ref_rejected), torch.tensor(policy_chosen),
        torch.tensor(policy_rejected), beta=beta,
    )  # fmt: skip
    expected: dict[str, list[int]] = {}
    for i in range(n):
        before = "correct" if ref_chosen[i] > ref_rejected[i] else "incorrect"
        after = "correct" if policy_chosen[i] > policy_rejected[i] else "incorrect"
        expected.setdefault(f"{before}_to_{after}", []).append(i)
    for name in groups.counts:
        members = expected.get(name, [])
        assert groups.counts[name] == len(members)
        assert groups.fractions[name] == pytest.approx(len(members) / n)
        h = [(policy_chosen[i] - ref_chosen[i]) - (policy_rejected[i] - ref_rejected[i]) for i in members]
        assert groups.mean_loss[name] == pytest.approx(np.mean([math.log1p(math.exp(-beta * x)) for x in h]))
        assert groups.mean_reward_margin[name] == pytest.approx(beta * np.mean(h))
    wrong_before = len(expected["incorrect_to_correct"]) + len(expected["incorrect_to_incorrect"])
    assert groups.flipped_fraction == pytest.approx(len(expected["incorrect_to_correct"]) / wrong_before)
    assert sum(groups.counts.values()) == n
    assert groups.to_dict()["counts"] == groups.counts


def test_flip_groups_edge_cases():
    groups = flip_groups([0.0, 0.0], [-1.0, -2.0], [0.0, -5.0], [-1.0, 0.0])
    assert groups.counts == {
        "correct_to_correct": 1, "correct_to_incorrect": 1, "incorrect_to_correct": 0, "incorrect_to_incorrect": 0
    }  # fmt: skip
    assert groups.flipped_fraction is None and groups.mean_loss is None
    with pytest.raises(AlignlabError, match="shape"):
        flip_groups([0.0], [0.0], [0.0, 1.0], [0.0])


# --- weight distance ------------------------------------------------------------------------------------------


def _pair_of_models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    return model, ref


def test_weight_distance_matches_numpy():
    model, ref = _pair_of_models()
    distance = weight_distance(model, ref)
    per_name = {
        name: np.sqrt(((p.detach().double().numpy() - q.detach().double().numpy()) ** 2).sum())
        for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters())
    }
    assert distance.per_parameter.keys() == per_name.keys()
    for name, value in per_name.items():
        assert distance.per_parameter[name] == pytest.approx(value, rel=1e-12)
    flat = np.concatenate(
        [
            (p.detach().double() - q.detach().double()).numpy().ravel()
            for p, q in zip(model.parameters(), ref.parameters())
        ]
    )
    assert distance.total == pytest.approx(np.linalg.norm(flat), rel=1e-12)
    assert distance.squared == pytest.approx(np.dot(flat, flat), rel=1e-12)
    # state dicts work too, and a model is at distance 0 from itself
    assert weight_distance(model.state_dict(), ref.state_dict()).total == pytest.approx(distance.total)
    assert weight_distance(model, model).total == 0.0


def test_weight_distance_mismatch_errors():
    model, ref = _pair_of_models()
    state = dict(ref.state_dict())
    state["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(AlignlabError, match=r"parameter '0.weight' has shape \[3, 4\] in model but \[5, 4\]"):
        weight_distance(model, state)
    del state["0.weight"]
    with pytest.raises(AlignlabError, match=r"only in model: \['0.weight'\]"):
        weight_distance(model, state)
    with pytest.raises(AlignlabError, match="only in ref_model"):
        weight_distance(nn.Linear(2, 2, bias=False), nn.Linear(2, 2))
    with pytest.raises(AlignlabError, match="nn.Module or a state dict"):
        weight_distance(model, [1, 2])
