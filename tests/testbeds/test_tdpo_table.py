"""TDPO's Table 1 (arXiv 2404.11999) on the sentiment testbed: aggregation over seeds, the findings computed from
the numbers, and the end-to-end smoke run."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest

from alignlab.cli import main as cli_main
from alignlab.cli.testbed import tdpo_table_main as main
from alignlab.errors import AlignlabError
from alignlab.testbeds.sentiment import corpus, pipeline, tdpo_table

PNG = b"\x89PNG\r\n\x1a\n"


def test_mean_std_is_the_sample_standard_deviation():
    s = tdpo_table.mean_std([0.6, 0.7, 0.8])
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert tdpo_table.mean_std([2.0])["std"] is None
    with pytest.raises(ValueError):
        tdpo_table.mean_std([])


def _run(method, seed, accuracy, entropy):
    row = {"method": method, "seed": seed, "alpha": 0.5 if method == "tdpo2" else None,
           **{k: 0.0 for k in (*tdpo_table.EVAL_METRICS, *tdpo_table.SAMPLE_METRICS)}}
    row.update(accuracy=accuracy, accuracy_dpo=accuracy - 0.01, entropy=entropy)
    return row


def test_aggregate_and_findings_from_the_numbers():
    runs = [_run("fdpo", 0, 0.50, 4.0), _run("fdpo", 1, 0.54, 4.2),
            _run("dpo", 0, 0.60, 3.0), _run("dpo", 1, 0.62, 3.2),
            _run("tdpo2", 0, 0.70, 4.6), _run("tdpo2", 1, 0.66, 4.8)]
    table = tdpo_table.aggregate(runs, ["fdpo", "dpo", "tdpo2"])
    assert list(table) == ["fdpo", "dpo", "tdpo2"] and table["tdpo2"]["alpha"] == 0.5
    assert table["dpo"]["accuracy"]["mean"] == pytest.approx(0.61)
    assert table["dpo"]["accuracy"]["std"] == pytest.approx(statistics.stdev([0.60, 0.62]))
    assert table["tdpo2"]["entropy"]["values"] == [4.6, 4.8]
    f = tdpo_table.findings(table)
    assert f["order_accuracy"] == ["tdpo2", "dpo", "fdpo"] and f["order_entropy"] == ["tdpo2", "fdpo", "dpo"]
    assert f["tdpo2_leads_accuracy"] and f["tdpo2_leads_entropy"]
    diff = f["tdpo2_minus_dpo_accuracy"]
    pooled = math.sqrt((statistics.stdev([0.70, 0.66]) ** 2 + statistics.stdev([0.60, 0.62]) ** 2) / 2)
    assert diff["difference"] == pytest.approx(0.07) and diff["pooled_std"] == pytest.approx(pooled)
    assert diff["in_pooled_stds"] == pytest.approx(0.07 / pooled)
    assert "TDPO2 > DPO > f-DPO (FKL)" in f["statement"] and "accuracy +7.0 points" in f["statement"]
    # the claim fails when the numbers say so
    runs[4]["accuracy"], runs[5]["accuracy"] = 0.40, 0.42
    assert not tdpo_table.findings(tdpo_table.aggregate(runs, ["fdpo", "dpo", "tdpo2"]))["tdpo2_leads_accuracy"]
    with pytest.raises(ValueError, match="no runs of method 'tdpo1'"):
        tdpo_table.aggregate(runs, ["tdpo1"])


# ------------------------------------------------------------------------------------------------ end to end
SMOKE_ARGS = ["--smoke", "--seed", "0"]


@pytest.fixture(scope="module")
def smoke(sentiment_experiments_dir):
    out = sentiment_experiments_dir
    assert main([*SMOKE_ARGS, "--out", str(out)]) == 0
    return out, json.loads((out / "tdpo_table.json").read_text())


def test_smoke_json_schema_and_table(smoke):
    out, result = smoke
    assert result["experiment"] == "tdpo-table" and "2404.11999" in result["paper"]
    config = result["config"]
    assert (config["beta"], config["alpha"], config["seeds"]) == (0.1, 0.5, 2)  # the papers' beta and alpha
    assert list(result["table"]) == ["fdpo", "dpo", "tdpo1", "tdpo2"]
    assert [(r["method"], r["seed"]) for r in result["runs"]] == [(m, s) for m in result["table"] for s in (0, 1)]
    assert {r["alpha"] for r in result["runs"] if r["method"] != "tdpo2"} == {None}
    assert {r["alpha"] for r in result["runs"] if r["method"] == "tdpo2"} == {0.5}
    n_heldout = result["n_heldout_pairs"]
    for method, row in result["table"].items():
        for column in ("accuracy", "accuracy_dpo", "ranking_accuracy", "entropy", "entropy_1", "reward", "kl"):
            stat = row[column]
            assert stat["n"] == 2 and len(stat["values"]) == 2 and stat["std"] >= 0, (method, column)
            assert stat["mean"] == pytest.approx(statistics.fmean(stat["values"]))
            assert stat["values"] == [r[column] for r in result["runs"] if r["method"] == method]
        for column in ("accuracy", "accuracy_dpo", "ranking_accuracy"):
            for value in row[column]["values"]:  # a fraction of the held-out pairs
                assert 0 <= value <= 1 and (value * n_heldout) == pytest.approx(round(value * n_heldout))
        assert row["entropy"]["mean"] > 0
    assert result["reference"]["kl"] == pytest.approx(0.0, abs=1e-5) and result["reference"]["entropy"] > 0
    assert (out / "tdpo_table.png").read_bytes()[:8] == PNG


def test_smoke_heldout_pairs_come_from_the_test_prefixes(smoke):
    out, result = smoke
    lines = Path(result["heldout_pairs"]).read_text(encoding="utf-8").splitlines()
    heldout = [json.loads(line) for line in lines]
    assert len(heldout) == result["n_heldout_pairs"] >= 2
    data = next((out / "data").glob("synthetic-*"))
    # the pipeline's evaluation prefixes: the first n_eval_prompts test reviews (load_reviews shuffles under a limit)
    test_texts, _ = corpus.load_reviews(data, "test", limit=result["config"]["stages"]["n_eval_prompts"])
    prefixes = [corpus.review_prefix(t, 4) for t in test_texts]
    assert all(p["prompt"] == prefixes[p["prompt_index"]] for p in heldout)
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in heldout)
    assert result["heldout_pairs"] != result["pairs"]


def test_smoke_findings_are_computed_from_the_table(smoke):
    _, result = smoke
    assert pipeline.json_safe(tdpo_table.findings(result["table"])) == result["findings"]


def test_second_invocation_reuses_the_cache(smoke, monkeypatch, capsys):
    out, before = smoke

    def no_training(*args, **kwargs):
        raise AssertionError("a cached table must not train")

    monkeypatch.setattr(pipeline, "train", no_training)
    assert main([*SMOKE_ARGS, "--out", str(out), "--no-plot"]) == 0
    after = json.loads((out / "tdpo_table.json").read_text())
    assert after["runs_cached"] == len(after["runs"]) == 8 and after["table"] == before["table"]
    assert "8 runs (8 reused from the cache)" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1"], "--seeds must be >= 2"),
    (["--methods", "dpo,simpo"], "--methods: 'simpo' is not a list of distinct methods"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
    (["--alpha", "-1"], "--alpha must be in (0, 10]"),
])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path, capsys):
    code = cli_main(["testbed", "tdpo-table", *SMOKE_ARGS, "--out", str(tmp_path), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("alignlab: ") and message in err[-1]
    with pytest.raises(AlignlabError, match=re.escape(message)):
        main([*SMOKE_ARGS, "--out", str(tmp_path), *args])
    assert not list(tmp_path.iterdir())
