"""The command line: exit codes and one-line errors (in process), and the quickstart end to end (slow)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignlab.cli import main
from alignlab.data import SAMPLES_DIR

ROOT = Path(__file__).resolve().parents[1]


def test_help_and_unknown_command(capsys):
    assert main([]) == 0 and "commands:" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err


def test_train_errors_are_one_line(capsys, tmp_path):
    assert main(["train", "--config", str(ROOT / "recipes" / "dpo.yaml"), "bta=0.3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "alignlab: command line: 'bta' is not a config key (did you mean 'beta'?)"
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_list_keys(capsys):
    assert main(["train", "--list-keys"]) == 0
    out = capsys.readouterr().out
    assert "precompute_ref_logps" in out and "tdpo_alpha" in out


def test_validate_data_accepts_the_samples():
    assert main(["validate-data", str(SAMPLES_DIR / "pairs.jsonl")]) == 0


def test_validate_data_names_file_line_field(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "x"}\n')
    assert main(["validate-data", str(bad)]) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "line 2" in text and "'rejected'" in text


def test_testbed_requires_a_name(capsys):
    assert main(["testbed", "nope"]) == 2
    assert "unknown testbed 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path):
    """`alignlab train` with no arguments: both stages, the table, a final model that reloads."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "alignlab.cli", "train"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=900, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    for label in ("loss", "reward margin", "ranking accuracy", "sequence KL"):
        assert label in out.stdout
    finals = list(tmp_path.glob("runs/quickstart-*/tdpo2/final"))
    assert len(finals) == 1
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(finals[0])


@pytest.mark.slow
def test_frozenlake_default_comparison(tmp_path):
    from alignlab.testbeds.frozenlake import run_frozenlake

    results = run_frozenlake(seeds=5, out_dir=str(tmp_path))
    assert (tmp_path / "frozenlake.json").is_file()
    assert results["runtime_s"] < 180
