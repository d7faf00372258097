"""`alignlab diagnose`: model mode on the bundled pairs, alpha data, run mode on a fake run directory, errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from alignlab.cli import diagnose
from alignlab.cli import main as cli_main
from alignlab.cli.diagnose import main as diagnose_main
from alignlab.diagnostics import scoring
from alignlab.diagnostics.diagnose import NO_ALPHA_MESSAGE
from alignlab.diagnostics.scoring import PairScores
from alignlab.train.config import TrainConfig
from tests.diagnostics._scoring_helpers import PAIRS, perturbed, save_model, tiny_model, write_jsonl

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory):
    return save_model(perturbed(tiny_model(), scale=0.02, seed=1), tmp_path_factory.mktemp("ref") / "ref")


def _run(argv, capsys):
    # through the CLI, which prints a user error (AlignlabError) as one line with exit code 2
    code = cli_main(["diagnose", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_model_mode_writes_json_and_plot(tmp_path, ref_dir, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    argv = [
        "--model",
        "alignlab/tiny-llama",
        "--ref",
        ref_dir,
        "--data",
        PAIRS,
        "--out",
        out_dir,
        "--max-pairs",
        20,
        "--batch-size",
        8,
        "--beta",
        0.5,
        "--cache-dir",
        tmp_path / "cache",
    ]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert "ranking accuracy R" in out and "reward accuracy" in out and "mean flip threshold" in out
    assert " ".join(NO_ALPHA_MESSAGE.split()[:8]) in " ".join(out.split())
    report = json.loads((out_dir / "diagnose.json").read_text())
    assert report["n_pairs"] == 20 and report["beta"] == 0.5 and report["strict"] is True
    assert report["alignment_gap"] is None and report["alpha"]["source"] is None
    png = out_dir / "loss_vs_ref_logratio.png"
    assert report["plots"] == [str(png)] and png.read_bytes()[:8] == PNG
    # independent check against the cached per-pair scores
    policy = PairScores.from_table(pq.read_table(report["score_cache"]["model"]))
    ref = PairScores.from_table(pq.read_table(report["score_cache"]["ref"]))
    assert len(policy) == 20
    acc = (policy.chosen_logps > policy.rejected_logps).double().mean().item()
    assert report["ranking_accuracy"]["raw"] == pytest.approx(acc)
    groups = report["flip_groups"]
    assert sum(groups["counts"].values()) == 20
    assert groups["fractions"]["correct_to_correct"] + groups["fractions"][
        "incorrect_to_correct"
    ] == pytest.approx(acc)
    c = ref.rejected_logps - ref.chosen_logps
    assert report["mean_flip_threshold"] == pytest.approx(torch.log1p(torch.exp(-0.5 * c)).mean().item())
    reward = (
        (policy.chosen_logps - ref.chosen_logps) > (policy.rejected_logps - ref.rejected_logps)
    ).double()
    assert report["reward_accuracy"] == pytest.approx(reward.mean().item())

    # a second run reads the cache: no model is loaded
    def refuse(*args, **kwargs):
        raise AssertionError("model loaded although the scores are cached")

    monkeypatch.setattr(scoring, "load_scoring_model", refuse)
    code, _, err = _run(argv, capsys)
    assert code == 0, err


def test_model_mode_without_ref(tmp_path, capsys):
    code, out, err = _run(
        [
            "--model",
            "alignlab/tiny-llama",
            "--data",
            PAIRS,
            "--out",
            tmp_path,
            "--max-pairs",
            6,
            "--no-cache",
        ],
        capsys,
    )
    assert code == 0, err
    report = json.loads((tmp_path / "diagnose.json").read_text())
    assert (
        report["reward_accuracy"] is None and report["plots"] == [] and report["score_cache"]["model"] is None
    )
    assert "needs --ref" in out


def test_alpha_data_gives_idealized_accuracy(tmp_path, ref_dir, capsys):
    records = [json.loads(line) for line in PAIRS.read_text().splitlines()[:8]]
    for i, record in enumerate(records):
        record["votes"] = [[1, 1, 1, 2], [1, 1, 2], [1, 2], [1, 1, 1]][i % 4]
    data = write_jsonl(tmp_path / "votes.jsonl", records)
    code, out, err = _run(
        ["--model", "alignlab/tiny-llama", "--ref", ref_dir, "--data", data, "--out", tmp_path, "--no-cache"],
        capsys,
    )
    assert code == 0, err
    report = json.loads((tmp_path / "diagnose.json").read_text())
    gap = report["alignment_gap"]
    assert gap["n_pairs"] == 6 and gap["n_tied_excluded"] == 2
    raw = gap["raw"]
    assert raw["idealized_min"] <= raw["idealized_median"] <= raw["idealized_max"]
    assert raw["gap_median"] == pytest.approx(raw["idealized_median"] - raw["observed"])
    assert "idealized R* min/median/max" in out and "no alpha" not in out


def _write_run(run, ref, config):
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    save_model(perturbed(ref, scale=0.01, seed=5), run / "checkpoint-2")
    save_model(perturbed(ref, scale=0.03, seed=6), run / "checkpoint-4")
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 0.69}) + "\n" for s in (1, 2, 3, 4))
    )


def test_run_mode_plots_flip_groups(tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig.from_values(
        {"method": "dpo", "model": "alignlab/tiny-llama", "run_dir": str(run), "max_length": 128,
         "max_prompt_length": 64}
    )
    _write_run(run, tiny_model(), config)
    code, out, err = _run(["--run", run, "--out", tmp_path / "out", "--max-pairs", 16, "--no-cache"], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "diagnose.json").read_text())
    assert report["beta"] == 0.1 and report["n_pairs"] == 16 and report["method"] == "dpo"
    rows = report["checkpoints"]
    assert [r["step"] for r in rows] == [0, 2, 4]
    assert [r["label"] for r in rows] == ["reference", "checkpoint-2", "checkpoint-4"]
    assert rows[0]["counts"]["correct_to_incorrect"] == rows[0]["counts"]["incorrect_to_correct"] == 0
    for row in rows:
        assert sum(row["fractions"].values()) == pytest.approx(1.0)
    assert (tmp_path / "out" / "flip_groups.png").read_bytes()[:8] == PNG
    assert "flipped at the last checkpoint" in out


def test_run_mode_final_dir_and_errors(tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig.from_values({"method": "simpo", "model": "alignlab/tiny-llama", "run_dir": str(run)})
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    code, _, err = _run(["--run", run, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "no checkpoint-<step>/ or final/" in err
    save_model(perturbed(tiny_model(), scale=0.01, seed=7), run / "final")
    (run / "metrics.jsonl").write_text('{"step": 3}\n')
    code, _, err = _run(
        ["--run", run, "--out", tmp_path / "out", "--max-pairs", 4, "--no-cache", "--beta", 1], capsys
    )
    assert code == 0, err
    report = json.loads((tmp_path / "out" / "diagnose.json").read_text())
    assert [(r["step"], r["label"]) for r in report["checkpoints"]] == [(0, "reference"), (3, "final")]
    assert report["beta"] == 1.0
    (run / "metrics.jsonl").write_text('{"step": 3}\nnot json\n')
    code, _, err = _run(["--run", run, "--out", tmp_path / "out"], capsys)
    assert code == 2 and "metrics.jsonl line 2" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "/no/such/model", "--data", PAIRS], "cannot load tokenizer from '/no/such/model'"),
        (
            [
                "--model",
                "alignlab/tiny-llama",
                "--ref",
                "/no/such/ref",
                "--data",
                PAIRS,
                "--max-pairs",
                2,
                "--no-cache",
            ],
            "cannot load model from '/no/such/ref'",
        ),
        (["--model", "alignlab/tiny-llama"], "needs --model and --data"),
        (["--run", "/no/such/run"], "run directory '/no/such/run' does not exist"),
        (["--run", ".", "--model", "alignlab/tiny-llama"], "--model cannot be combined with --run"),
        (["--run", ".", "--max-length", "64"], "--max-length cannot be combined with --run"),
        (["--model", "m", "--data", "d", "--max-pairs", "-1"], "--max-pairs must be >= 0"),
        (["--model", "m", "--data", "d", "--beta", "0"], "--beta must be a number > 0"),
        (["--model", "m", "--data", "d", "--columns", "prompt"], "--columns item 'prompt'"),
        (["--model", "alignlab/tiny-llama", "--data", "/no/such/data.jsonl"], "/no/such/data.jsonl"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    code, _, err = _run([*argv, "--out", tmp_path], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("alignlab: ") and message in lines[0], err


def test_argparse_errors_exit_2(capsys):
    assert diagnose_main(["--batch-size", "x"]) == 2
    assert "usage: alignlab diagnose" in capsys.readouterr().err
    assert diagnose.USAGE.startswith("alignlab diagnose --model PATH")
