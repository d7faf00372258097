"""The command line: exit codes and one-line errors (in process), and the quickstart end to end (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alignlab.cli import main
from alignlab.data import SAMPLES_DIR
from alignlab.errors import AlignlabError

ROOT = Path(__file__).resolve().parents[1]
# smoke-size keys for in-process training runs (tiny model, bundled samples, a step or two)
SMOKE = ["micro_batch_size=4", "max_length=64", "max_prompt_length=32", "eval_batch_size=8",
         "tensorboard=false", "progress=false"]


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
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "x"}\n'
                   '{"prompt": "a", "rejected": "y"}\n')
    assert main(["validate-data", str(bad)]) == 2
    captured = capsys.readouterr()
    # problems in the data are the command's output, one stdout line each, not an error of the CLI
    assert captured.err == ""
    out = captured.out.splitlines()
    assert out[:2] == [f"{bad} line 2: field 'rejected' is missing",
                       f"{bad} line 3: field 'chosen' is missing"]
    assert out[-1] == "bad.jsonl: 3 records, format 'standard': 2 errors, 0 warnings"


def test_testbed_requires_a_name(capsys):
    assert main(["testbed", "nope"]) == 2
    assert "unknown testbed 'nope'" in capsys.readouterr().err
    assert main(["testbed"]) == 2
    assert capsys.readouterr().err.startswith("usage: alignlab testbed")
    assert main(["testbed", "--help"]) == 0 and "usage:" in capsys.readouterr().out


def _user_errors(tmp: Path) -> dict[str, tuple[list[str], str]]:
    """One user error per command: argv and a fragment of its message."""
    missing = str(tmp / "missing.jsonl")
    return {
        "train": (["train", "--config", str(tmp / "missing.yaml")], "does not exist"),
        "validate-data": (["validate-data", str(SAMPLES_DIR / "pairs.jsonl"), "--columns", "{chosen"],
                          "--columns is not valid JSON"),
        "diagnose": (["diagnose", "--model", "alignlab/tiny-llama", "--data", missing, "--out",
                      str(tmp / "diagnose"), "--no-cache"], "missing.jsonl: file not found"),
        "generate": (["generate", "--model", "alignlab/tiny-llama", "--prompts", missing, "--device", "cpu"],
                     "missing.jsonl: file not found"),
        "testbed frozenlake": (["testbed", "frozenlake", "--scenarios", "maze", "--out", str(tmp / "fl")],
                               "scenario 'maze' is unknown"),
        "testbed sentiment": (["testbed", "sentiment", "--smoke", "--methods", "dpo,ppo", "--out",
                               str(tmp / "st")], "--methods: 'ppo' is not a method"),
    }


COMMAND_NAMES = list(_user_errors(Path(".")))


@pytest.mark.parametrize("command", COMMAND_NAMES)
def test_user_error_is_one_line_exit_2(command, tmp_path, capsys):
    argv, message = _user_errors(tmp_path)[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("alignlab: ") and not lines[0].startswith("alignlab: alignlab:")
    assert message in lines[0]


@pytest.mark.parametrize("command", COMMAND_NAMES)
@pytest.mark.parametrize("where", ["first", "last"])
def test_debug_anywhere_reraises(command, where, tmp_path, capsys):
    argv, message = _user_errors(tmp_path)[command]
    argv = ["--debug", *argv] if where == "first" else [*argv, "--debug"]
    with pytest.raises(AlignlabError) as info:
        main(argv)
    assert message in str(info.value) and not str(info.value).startswith("alignlab:")
    assert capsys.readouterr().err == ""  # the traceback is the report; nothing printed besides


def test_argparse_usage_errors_exit_2(capsys):
    assert main(["train", "--no-such-option"]) == 2
    assert "usage: alignlab train" in capsys.readouterr().err
    assert main(["generate", "--n", "x"]) == 2
    assert "usage: alignlab generate" in capsys.readouterr().err
    assert main(["validate-data", "--help"]) == 0


def test_library_errors_carry_no_prefix():
    """The CLI adds "alignlab: " once; a message that carries it too would print "alignlab: alignlab: ..."."""
    from alignlab.diagnostics.distance import weight_distance
    from alignlab.diagnostics.flips import flip_groups
    from alignlab.diagnostics.multi import multi_output_ranking_correct

    nan = torch.tensor([float("nan")])
    zero = torch.tensor([0.0])
    for call in (lambda: flip_groups(nan, zero, zero, zero),
                 lambda: multi_output_ranking_correct([[1.0]], []),
                 lambda: weight_distance({"w": torch.zeros(2)}, {"v": torch.zeros(2)})):
        with pytest.raises(AlignlabError) as info:
            call()
        assert not str(info.value).startswith("alignlab:"), str(info.value)


def test_bare_train_is_the_quickstart(monkeypatch, capsys):
    from alignlab.train import quickstart

    def fake_quickstart(*args, **kwargs):
        assert not args and "overrides" not in kwargs
        raise AlignlabError("quickstart called")

    monkeypatch.setattr(quickstart, "run_quickstart", fake_quickstart)
    assert main(["train"]) == 2
    assert capsys.readouterr().err == "alignlab: quickstart called\n"


def test_train_overrides_without_config_train_one_run(tmp_path, capsys):
    """key=value overrides without --config: one run from the config defaults (bundled pairs), not two."""
    run = tmp_path / "dpo"
    argv = ["train", "method=dpo", "max_steps=1", "limit=12", "eval_fraction=0", f"run_dir={run}", *SMOKE]
    assert main(argv) == 0, capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["method"] == "dpo" and saved["max_steps"] == 1 and saved["train_data"] is None
    assert (run / "final").is_dir() and not (run / "sft").exists()
    assert f"run directory: {run}" in capsys.readouterr().out


def test_quickstart_rejects_a_shared_run_dir(tmp_path):
    from alignlab.train.quickstart import run_quickstart

    with pytest.raises(AlignlabError, match="run_dir= would apply to both stages"):
        run_quickstart(tmp_path, overrides=[f"run_dir={tmp_path / 'x'}"])
    assert not any(tmp_path.iterdir())  # refused before the SFT stage trained


def test_train_resume_without_run_dir_is_a_user_error(capsys):
    assert main(["train", "method=dpo", "--resume"]) == 2
    assert capsys.readouterr().err.startswith("alignlab: --resume needs the run to continue: add run_dir=")


def test_track_flips_needs_a_preference_method(tmp_path, capsys):
    assert main(["train", "method=sft", "--track-flips", "4", f"run_dir={tmp_path / 'r'}"]) == 2
    assert "--track-flips needs a preference method" in capsys.readouterr().err
    assert main(["train", "method=dpo", "--track-flips", "-1"]) == 2
    assert "--track-flips takes a number of pairs >= 1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_track_flips_with_reference_free_simpo(tmp_path, capsys):
    """SimPO has no reference: flips count against the initial (step-0) policy instead of failing on NaN."""
    run = tmp_path / "simpo"
    argv = ["train", "--config", str(ROOT / "recipes" / "simpo.yaml"), "--track-flips", "6", "max_steps=2",
            "limit=12", "eval_fraction=0", "warmup_steps=0", "learning_rate=1e-3", f"run_dir={run}", *SMOKE]
    assert main(argv) == 0, capsys.readouterr().err
    assert "flips count against the initial policy" in capsys.readouterr().out
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    flips = [row for row in rows if "flips/n_pairs" in row]
    assert [row["step"] for row in flips] == [0, 2]
    first, last = flips
    assert all(row["flips/n_pairs"] == 6.0 and row["flips/ref_is_initial_policy"] == 1.0 for row in flips)
    # step 0: the policy is its own baseline, so nothing has crossed
    assert first["flips/ref_correct_model_incorrect"] == first["flips/ref_incorrect_model_correct"] == 0.0
    assert first["flips/ranking_accuracy"] == first["flips/ref_ranking_accuracy"]
    # the baseline stays the step-0 policy's ranking
    assert last["flips/ref_ranking_accuracy"] == first["flips/ref_ranking_accuracy"]
    groups = ("ref_correct_model_correct", "ref_correct_model_incorrect", "ref_incorrect_model_correct",
              "ref_incorrect_model_incorrect")
    assert sum(last[f"flips/{g}_count"] for g in groups) == 6.0


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
