"""`alignlab winrate` end to end on the tiny offline models: a Python judge and the HTTP judge on a local server."""

from __future__ import annotations

import json
import shutil

import pytest

from alignlab.assets import resolve
from alignlab.cli import main
from tests.judges.chat_server import TEMPLATE, ChatServer
from tests.judges.test_python_function import RULES_FILE

SMALL = ["--max-new-tokens", "4", "--n", "2", "--bootstrap", "200"]


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("Write a short review of the soup pot.\nHow do I fix a flat tyre?\n")
    return path


def test_a_model_against_its_copy_ties_at_every_temperature(tmp_path, prompts, capsys):
    """The same weights under another name are sampled with the same row seeds: every pair is identical, so a
    reward judge scores 0.5 everywhere and the interval collapses to it."""
    copy = tmp_path / "copy"
    shutil.copytree(resolve("alignlab/tiny-llama"), copy)
    out = tmp_path / "winrate.json"
    argv = ["winrate", "--model", "alignlab/tiny-llama", "--baseline", str(copy), "--prompts", str(prompts),
            "--judge", f"py:{RULES_FILE}:longer", "--temperatures", "0.25,1.0", "--out", str(out), *SMALL]
    assert main(argv) == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert [r["temperature"] for r in report["results"]] == [0.25, 1.0]
    for result in report["results"]:
        assert (result["win_rate"], result["ci_low"], result["ci_high"]) == (0.5, 0.5, 0.5)
        assert (result["n"], result["n_groups"], result["ties"], result["pairwise"]) == (4, 2, 4, False)
        assert all(p["completion"] == p["baseline_completion"] for p in result["pairs"])
        assert [(p["prompt_index"], p["sample_index"]) for p in result["pairs"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # the two temperatures sample differently (a check that the sweep reaches the sampler)
    assert [p["completion"] for p in report["results"][0]["pairs"]] != [
        p["completion"] for p in report["results"][1]["pairs"]]
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[:2] == ["temperature", "win"] and len(rows) == 4
    assert rows[2].split()[:2] == ["0.25", "0.500"] and rows[3].split()[:2] == ["1.0", "0.500"]


def test_http_judge_end_to_end_and_a_rerun_asks_nothing(tmp_path, prompts, capsys, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = ChatServer(fail=2)  # the first two calls fail (503): retried
    try:
        spec = tmp_path / "judge.yaml"
        spec.write_text(json.dumps({"kind": "http", "base_url": server.base_url, "model": "m", "template": TEMPLATE,
                                    "backoff": 0.001, "cache_dir": str(tmp_path / "cache")}))
        out = tmp_path / "winrate.json"
        argv = ["winrate", "--model", "alignlab/tiny-llama", "--baseline", "alignlab/tiny-gpt2", "--prompts",
                str(prompts), "--judge", str(spec), "--temperatures", "1.0", "--out", str(out), *SMALL]
        assert main(argv) == 0, capsys.readouterr().err
        (result,) = json.loads(out.read_text())["results"]
        assert result["pairwise"] and result["randomized_order"]
        # the server prefers the longer text in either order, so each score is that rule, swaps undone
        for pair in result["pairs"]:
            ours, theirs = len(pair["completion"]), len(pair["baseline_completion"])
            assert pair["score"] == (1.0 if ours > theirs else 0.0 if ours < theirs else 0.5), pair
        asked = len(server.requests)
        distinct = {(p["prompt"], p["completion"], p["baseline_completion"]) for p in result["pairs"]}
        assert asked == 2 + sum(1 if a == b else 2 for _, a, b in distinct)  # two failures, then both orders
        assert f"judge: {asked} requests, 0 answers from the cache" in capsys.readouterr().err
        assert main(argv) == 0
        assert len(server.requests) == asked  # everything came from the cache
        assert "judge: 0 requests" in capsys.readouterr().err
        assert json.loads(out.read_text())["results"][0]["pairs"] == result["pairs"]
    finally:
        server.close()


@pytest.mark.parametrize(("extra", "message"), [
    (["--temperatures", "0.5,hot"], "--temperatures item 'hot' is not a temperature"),
    (["--temperatures", "-1"], "--temperatures item '-1'"),
    (["--judge", "py:nosuchmodule_xyz:f"], "no module named 'nosuchmodule_xyz'"),
    (["--judge", "rm"], "judge 'rm' is not a judge spec"),
    (["--bootstrap", "0"], "--bootstrap must be an integer >= 1"),
    (["--confidence", "1"], "--confidence must be in (0, 1)"),
    (["--n", "0"], "n must be an integer >= 1"),
])
def test_user_errors_are_one_line(extra, message, prompts, tmp_path, capsys):
    argv = ["winrate", "--model", "alignlab/tiny-llama", "--baseline", "alignlab/tiny-llama", "--prompts",
            str(prompts), "--judge", f"py:{RULES_FILE}:longer", "--out", str(tmp_path / "o.json"), *extra]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("alignlab: ") and message in lines[0], lines
    assert not (tmp_path / "o.json").exists()
