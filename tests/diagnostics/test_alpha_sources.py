"""alpha per record for idealized accuracy: mixed sources, ranking vote counts expanded per pair, missing sources."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
import torch

from alignlab.assets import load_tokenizer
from alignlab.cli import main
from alignlab.data import SAMPLES_DIR, load_preference_data, validate_data
from alignlab.diagnostics.diagnose import summarize
from alignlab.diagnostics.ranking import alignment_gap
from alignlab.diagnostics.scoring import PairScores, example_alphas
from alignlab.diagnostics.votes import alpha_from_response_votes, alphas_from_records
from alignlab.errors import DataError

RANKING = SAMPLES_DIR / "ranking.jsonl"


def _expected_alphas(records: list[dict]) -> dict[tuple[int, tuple[int, int]], float]:
    """(record index, (chosen, rejected)) -> alpha, computed from the raw JSON with exact fractions."""
    out = {}
    for index, record in enumerate(records):
        ranks = record["ranks"]
        for i in range(len(ranks)):
            for j in range(len(ranks)):
                if ranks[i] >= ranks[j]:
                    continue
                if "alpha" in record:
                    out[index, (i, j)] = record["alpha"]
                else:
                    total = record["votes"][i] + record["votes"][j]
                    out[index, (i, j)] = float(Fraction(record["votes"][i], total)) if total else math.nan
    return out


@pytest.fixture(scope="module")
def ranking_examples():
    examples, _ = load_preference_data(RANKING, load_tokenizer(), max_length=64, max_prompt_length=32)
    return examples


def test_mixed_alpha_and_vote_count_records(ranking_examples):
    records = [json.loads(line) for line in RANKING.read_text(encoding="utf-8").splitlines()]
    assert {"alpha" in r for r in records} == {True, False}  # the bundled file mixes both sources
    alphas = example_alphas(ranking_examples, dataset=str(RANKING))
    got = {(e["index"], tuple(e["pair"])): a for e, a in zip(ranking_examples, alphas.tolist())}
    # by hand, from the file's first lines
    assert got[0, (1, 0)] == 0.59  # 2 responses, ranks [2, 1], alpha 0.59: the better one is chosen
    assert got[1, (2, 0)] == 1.0  # votes [0, 0, 5, 0]: 5 / (5 + 0)
    assert math.isnan(got[1, (1, 0)])  # 0 / (0 + 0): no rater compared them
    assert got[3, (0, 3)] == 0.875  # votes [7, 0, 0, 1]: 7 / 8
    assert got[5, (0, 2)] == 0.6  # votes [3, 0, 2, 0]: 3 / 5
    assert got[5, (2, 1)] == 1.0
    assert got[19, (2, 0)] == 0.625  # votes [3, 0, 5]: 5 / 8
    assert got[27, (0, 1)] == 0.5  # votes [1, 1, 6]: a tie between the two middling responses
    expected = _expected_alphas(records)
    assert got.keys() == expected.keys() and len(got) == 142
    for key, value in expected.items():
        assert (math.isnan(got[key]) and math.isnan(value)) or got[key] == pytest.approx(value, abs=1e-15), key
    assert sum(math.isnan(v) for v in got.values()) == 28


def test_per_record_sources_in_one_dataset():
    records = [
        {"alpha": 0.75},
        {"votes": [1, 1, 2, 2, 1]},  # per rater, on a pair record
        {"votes_chosen": 1, "votes_rejected": 3},
        {"votes": [0, 4, 1], "pair": (1, 2)},  # per response, on a ranking pair
        {"votes": [0, 4, 0, 0], "pair": (2, 0)},
    ]
    alphas = alphas_from_records(records, dataset="d").tolist()
    assert alphas[:4] == [0.75, 0.6, 0.25, 0.8] and math.isnan(alphas[4])
    assert alpha_from_response_votes([2, 0, 6], 2, 0) == 0.75


def test_a_record_without_a_source_is_an_error_naming_it():
    examples = [{"index": 0, "alpha": 0.7}, {"index": 4, "votes": [3, 1], "pair": (0, 1)}, {"index": 7}]
    with pytest.raises(DataError) as info:
        example_alphas(examples, dataset="data/x.jsonl")
    message = str(info.value)
    assert message.startswith("data/x.jsonl record 7: field 'alpha' is missing") and "\n" not in message
    assert "'votes' (one count per response)" not in message and "2 of 3 pairs" in message
    with pytest.raises(DataError, match="^x.jsonl line 9: field 'alpha' is missing"):
        alphas_from_records([{"alpha": 0.7}, {"where": "x.jsonl line 9", "pair": (0, 1)}], dataset="x.jsonl")
    # no record with a source: idealized accuracy is undefined, not an error
    assert example_alphas([{"index": 0}, {"index": 1}]) is None


def test_ranking_votes_must_match_responses_and_alpha_needs_two(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(
        json.dumps({"prompt": "Q", "responses": [" a", " b", " c"], "ranks": [1, 2, 3], "votes": [2, 1]})
        + "\n"
        + json.dumps({"prompt": "Q", "responses": [" a", " b", " c"], "ranks": [1, 2, 3], "alpha": 0.8})
        + "\n"
    )
    errors = validate_data(path).errors
    assert len(errors) == 2
    assert "line 1: field 'votes' must hold one vote count per response (3), got 2" in errors[0]
    assert "line 2: field 'alpha' is one pair's preference proportion" in errors[1]


def _scores(alpha, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = alpha.numel()
    logps = -10 * torch.rand(4, n, generator=generator, dtype=torch.float64)
    lengths = torch.randint(1, 9, (2, n), generator=generator)
    policy = PairScores(torch.arange(n), logps[0], logps[1], lengths[0], lengths[1], alpha)
    ref = PairScores(torch.arange(n), logps[2], logps[3], lengths[0], lengths[1], alpha)
    return policy, ref


def test_undefined_alpha_pairs_are_excluded_and_counted():
    alpha = torch.tensor([0.8, math.nan, 0.5, 0.3, math.nan, 1.0, 0.9], dtype=torch.float64)
    policy, ref = _scores(alpha)
    summary = summarize(policy, ref, beta=0.1)
    keep = ~torch.isnan(alpha)
    expected = alignment_gap(
        policy.chosen_logps[keep], policy.rejected_logps[keep], ref.chosen_logps[keep], ref.rejected_logps[keep],
        alpha[keep], chosen_lengths=policy.chosen_lengths[keep], rejected_lengths=policy.rejected_lengths[keep],
    )
    assert summary["alignment_gap"] == expected.to_dict()
    assert summary["alignment_gap"]["n_pairs"] == 4 and summary["alignment_gap"]["n_tied_excluded"] == 1
    assert summary["alpha"]["n_undefined_excluded"] == 2 and "2 of 7 pairs excluded" in summary["alpha"]["message"]
    assert summary["n_pairs"] == 7  # the other diagnostics keep every pair
    every = summarize(*_scores(torch.full((3,), math.nan, dtype=torch.float64)), beta=0.1)
    assert every["alignment_gap"] is None and every["alpha"]["n_undefined_excluded"] == 3


def test_diagnose_on_the_bundled_ranking_file(tmp_path, capsys):
    """The README's `alignlab diagnose ... --data alignlab/data/samples/ranking.jsonl`, every pair, short texts."""
    argv = ["diagnose", "--model", "alignlab/tiny-llama", "--ref", "alignlab/tiny-llama", "--data", str(RANKING),
            "--out", str(tmp_path), "--max-pairs", "0", "--max-length", "48", "--max-prompt-length", "24",
            "--cache-dir", str(tmp_path / "cache")]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "diagnose.json").read_text())
    assert report["n_pairs"] == 142 and report["alpha"]["n_undefined_excluded"] == 28
    gap = report["alignment_gap"]
    assert gap["n_tied_excluded"] == 2 and gap["n_pairs"] == 142 - 28 - 2
    assert "idealized R* min/median/max" in out and "28 without votes" in out


def test_diagnose_names_the_record_without_alpha(tmp_path, capsys):
    records = [json.loads(line) for line in RANKING.read_text(encoding="utf-8").splitlines()[:4]]
    del records[2]["alpha"]
    data = tmp_path / "ranking.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    code = main(["diagnose", "--model", "alignlab/tiny-llama", "--ref", "alignlab/tiny-llama", "--data", str(data),
                 "--out", str(tmp_path), "--no-cache", "--max-length", "48", "--max-prompt-length", "24"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"alignlab: {data} ")
    assert f"{data} line 3: field 'alpha' is missing" in lines[0]
