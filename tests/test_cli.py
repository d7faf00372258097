"""The command line: exit codes and one-line errors (in process), and the quickstart end to end (slow)."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from alignlab.cli import COMMANDS, main
from alignlab.data import SAMPLES_DIR
from alignlab.errors import AlignlabError, ConfigError

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
    # problems in the data are the command's report: one stderr line each (no "alignlab:" prefix: not an error of
    # the CLI), then the summary, the one stdout line
    assert captured.err.splitlines() == [f"{bad} line 2: field 'rejected' is missing",
                                         f"{bad} line 3: field 'chosen' is missing"]
    assert captured.out.splitlines() == ["bad.jsonl: 3 records, format 'standard': 2 errors, 0 warnings"]


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
        "validate-data": (["validate-data", str(SAMPLES_DIR / "pairs.jsonl"), "--columns", "chosen"],
                          "--columns item 'chosen' must look like canonical=source"),
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


# ---------------------------------------------------------------------------------------------------------------
# error paths that stay fast, errors from below alignlab, defaults that do not overwrite, help, column maps, the hub

PAIRS = SAMPLES_DIR / "pairs.jsonl"
HEAVY = ("torch", "transformers", "datasets")
# Runs alignlab.cli.main on each argv of argv[1] (JSON) in a fresh interpreter; prints, per argv, the exit code,
# the stderr and which heavy libraries had been imported by then.
_IMPORTS_AFTER_ERRORS = f"""
import contextlib, io, json, sys
from alignlab.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([argv, code, err.getvalue(), [m for m in {HEAVY!r} if m in sys.modules]])
print("results:", json.dumps(results))
"""


def test_user_errors_before_heavy_imports(tmp_path):
    """A missing file or a bad option is reported before torch, transformers or datasets is imported, which is
    what makes it instant (the imports take seconds); each is one stderr line, exit code 2."""
    missing = ["train", "--config", "missing.yaml"]
    commands = [
        missing,
        ["train", "nosuchkey=1"],
        ["score", "--model", "M", "--data", "missing.jsonl", "--out", "x.jsonl"],
        ["score", "--model", "M", "--data", "d.jsonl", "--out", "x.jsonl", "--columns", "prompt"],
        ["validate-data", "missing.jsonl"],
        ["diagnose", "--model", "M", "--data", "missing.jsonl"],
        ["generate", "--model", "M", "--prompts", "missing.txt"],
        ["winrate", "--model", "M", "--baseline", "B", "--prompts", "missing.txt", "--judge", "py:m:f"],
        ["winrate", "--model", "M", "--baseline", "B", "--prompts", str(PAIRS), "--judge", "rm"],
        ["winrate", "--model", "M", "--baseline", "B", "--prompts", str(PAIRS), "--judge", "https://h/v1"],
        ["winrate", "--model", "M", "--baseline", "B", "--prompts", str(PAIRS), "--judge", "py:m:f",
         "--temperatures", "0.5,x"],
        ["report", "missing-run"],
        ["report", "missing-run", "--judge", "py:m:f"],  # a judge scores --generate samples
        ["report", "stages"],  # a directory of runs (the quickstart's): names them
        ["report", "stages/sft", "--pairs", "3,x"],
        ["report", "stages/sft", "--data", "missing.jsonl"],
        ["report", "stages/sft", "--out", "no/such/dir/report.html"],
        ["inspect", "--model", "M", "--ref", "R", "--data", "missing.jsonl", "--index", "0"],
        ["inspect", "--model", "M", "--ref", "R", "--data", "d.jsonl", "--index", "-1"],
        ["push", "missing-run", "owner/name"],
        ["push", "stages/sft", "not a repo id"],
    ]
    (tmp_path / "stages" / "sft" / "final").mkdir(parents=True)
    (tmp_path / "stages" / "sft" / "config.yaml").write_text("method: sft\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", _IMPORTS_AFTER_ERRORS, json.dumps(commands)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [line for line in done.stdout.splitlines() if line.startswith("results: ")]
    assert len(results) == 1, done.stdout[-3000:]
    for argv, code, err, heavy in json.loads(results[0].removeprefix("results: ")):
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("alignlab: "), (argv, err)
        assert heavy == [], f"{argv}: {heavy} imported before the error {lines[0]!r}"


@pytest.mark.parametrize(("exc", "line"), [
    (OSError(errno.EACCES, "Permission denied", "data/train.jsonl"),
     "alignlab: data/train.jsonl: Permission denied (--debug for the traceback)"),
    (OSError("We couldn't connect to the hub"), "alignlab: We couldn't connect to the hub (--debug for the traceback)"),
    (json.JSONDecodeError("Expecting value", '{"a": }', 6),
     "alignlab: not valid JSON (Expecting value: line 1 column 7) (--debug for the traceback)"),
], ids=["oserror-with-path", "oserror", "json"])
def test_library_errors_are_one_line(exc, line, monkeypatch, capsys):
    """An OSError, malformed JSON (or a corrupt safetensors file, below) raised under a command is one stderr
    line and exit code 2; --debug re-raises it; any other exception is a bug and keeps its traceback."""
    from alignlab.cli import validate

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(validate, "validate_data", fail)
    assert main(["validate-data", str(PAIRS)]) == 2
    assert capsys.readouterr().err.splitlines() == [line]
    with pytest.raises(type(exc)):
        main(["validate-data", str(PAIRS), "--debug"])

    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(validate, "validate_data", bug)
    with pytest.raises(KeyError):
        main(["validate-data", str(PAIRS)])


def test_corrupt_safetensors_is_one_line(tmp_path, capsys):
    from alignlab.assets import resolve

    model = tmp_path / "model"
    shutil.copytree(resolve("alignlab/tiny-llama"), model)
    (model / "model.safetensors").write_bytes(b"not a safetensors file" * 4)
    argv = ["score", "--model", str(model), "--data", str(PAIRS), "--out", str(tmp_path / "s.jsonl"), "--limit", "2"]
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "Loading weights" not in line]
    assert len(lines) == 1 and lines[0].startswith("alignlab: cannot read a safetensors file ("), lines


def _fake_run(run: Path) -> Path:
    """A run directory diagnose can read: config.yaml and a final/ model (the tiny model itself)."""
    from alignlab.assets import load_model, load_tokenizer

    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "dpo", "model": "alignlab/tiny-llama",
                                                     "max_length": 64, "max_prompt_length": 32}))
    load_model("alignlab/tiny-llama").save_pretrained(run / "final")
    load_tokenizer().save_pretrained(run / "final")
    return run


def test_diagnose_run_writes_into_the_run_and_never_overwrites(tmp_path, monkeypatch, capsys):
    run = _fake_run(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    argv = ["diagnose", "--run", str(run), "--max-pairs", "4", "--no-cache"]
    assert main(argv) == 0, capsys.readouterr().err
    report = run / "diagnose" / "diagnose.json"
    assert report.is_file() and not (tmp_path / "diagnose").exists()
    before = report.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2  # the default directory holds a report: refused, untouched
    err = capsys.readouterr().err.splitlines()
    assert err == [(f"alignlab: {report} exists (an earlier diagnose): pass --out DIR to write elsewhere, or "
                    "--out with this directory to replace it")]
    assert report.read_bytes() == before
    assert main([*argv, "--out", str(run / "diagnose")]) == 0, capsys.readouterr().err  # named: replaced
    assert json.loads(report.read_text())["run"] == str(run)


def test_diagnose_model_default_out_is_never_overwritten(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "diagnose").mkdir()
    (tmp_path / "diagnose" / "diagnose.json").write_text("{}\n")
    assert main(["diagnose", "--model", "alignlab/tiny-llama", "--data", str(PAIRS), "--no-cache"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("alignlab: diagnose/diagnose.json exists"), err
    assert (tmp_path / "diagnose" / "diagnose.json").read_text() == "{}\n"


def test_testbed_help_lists_each_testbed(capsys):
    assert main(["testbed", "--help"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name in ("frozenlake", "sentiment"):
        described = [line.split() for line in out if line.split()[:1] == [name]]
        assert len(described) == 1 and len(described[0]) > 4, out  # the name, then a one-line description


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: alignlab {command}")


@pytest.mark.parametrize(("argv", "hint"), [
    ([str(SAMPLES_DIR / "sft.jsonl")], "hint: sft.jsonl is valid SFT data (format 'prompt_completion'): pass --sft"),
    ([str(SAMPLES_DIR / "sft_messages.jsonl")],
     "hint: sft_messages.jsonl is valid SFT data (format 'messages'): pass --sft"),
    ([str(SAMPLES_DIR / "unpaired.jsonl")],
     "hint: unpaired.jsonl is valid unpaired preference data (format 'unpaired'): pass --unpaired"),
    ([str(SAMPLES_DIR / "unpaired.jsonl"), "--sft"],
     "hint: unpaired.jsonl is valid unpaired preference data (format 'unpaired'): pass --unpaired instead of --sft"),
    ([str(PAIRS), "--unpaired"], "hint: pairs.jsonl is valid preference data (format 'standard'): drop --unpaired"),
])
def test_validate_data_suggests_the_flag_that_fits(argv, hint, capsys):
    assert main(["validate-data", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1] == hint
    assert len(captured.out.splitlines()) == 1  # the summary alone on stdout


def test_validate_data_hints_nothing_for_broken_pairs(tmp_path, capsys):
    # a pair file with a missing side also passes as SFT (its chosen side): that is not SFT data, so no hint
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "x"}\n')
    assert main(["validate-data", str(bad)]) == 2
    assert not [line for line in capsys.readouterr().err.splitlines() if line.startswith("hint:")]


def test_parse_columns():
    from alignlab.cli.options import parse_columns

    assert parse_columns(None) is None
    assert parse_columns("prompt=question, chosen = good") == {"prompt": "question", "chosen": "good"}
    for bad, item in (("prompt", "prompt"), ("prompt=", "prompt="), ("=question", "=question"),
                      ("prompt=question,", ""), ("prompt=a=b", "prompt=a=b"), ('{"prompt": "q"}', '{"prompt": "q"}')):
        with pytest.raises(ConfigError, match=f"--columns item '{item}' must look like canonical=source"):
            parse_columns(bad)
    with pytest.raises(ConfigError, match="--columns maps 'prompt' twice"):
        parse_columns("prompt=a,prompt=b")


def test_parse_indices():
    from alignlab.cli.options import parse_indices

    assert parse_indices(None, "--pairs") == () and parse_indices("3, 17,3", "--pairs") == (3, 17)
    for bad in ("3,x", "-1", "3,,4"):
        with pytest.raises(ConfigError, match="is not a record index"):
            parse_indices(bad, "--pairs")


@pytest.mark.parametrize("command", [
    ["validate-data", str(PAIRS)],
    ["score", "--model", "alignlab/tiny-llama", "--data", str(PAIRS), "--out", "x.jsonl"],
    ["diagnose", "--model", "alignlab/tiny-llama", "--data", str(PAIRS)],
    ["inspect", "--model", "alignlab/tiny-llama", "--ref", "alignlab/tiny-llama", "--data", str(PAIRS), "--index", "0"],
], ids=lambda argv: argv[0])
def test_one_column_map_syntax(command, tmp_path, monkeypatch, capsys):
    """Every command that takes a column map reads `canonical=source,...` with the same parser and message."""
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--columns", "prompt=question,chosen"]) == 2
    assert capsys.readouterr().err == ("alignlab: --columns item 'chosen' must look like canonical=source "
                                       "(e.g. prompt=question,chosen=good)\n")


def test_validate_data_reads_a_column_map(tmp_path, capsys):
    renamed = tmp_path / "renamed.jsonl"
    rows = [json.loads(line) for line in PAIRS.read_text().splitlines()[:3]]
    renamed.write_text("".join(json.dumps({"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"]})
                               + "\n" for r in rows))
    assert main(["validate-data", str(renamed), "--columns", "prompt=question,chosen=good,rejected=bad"]) == 0, (
        capsys.readouterr().err)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed on return: connecting is refused


_UNREACHABLE_HUB = """
import json, sys
from alignlab.assets import load_model, load_tokenizer
from alignlab.cli import main
from alignlab.errors import AlignlabError
messages = {}
for load in (load_tokenizer, load_model):
    try:
        load("nobody/no-model")
    except AlignlabError as exc:
        messages[load.__name__] = [type(exc).__name__, str(exc)]
print(json.dumps(messages))
sys.exit(main(sys.argv[1:]))
"""


def test_unreachable_hub_fails_once_in_one_line(tmp_path):
    """With the hub allowed but unreachable, a hub id fails at once with one line naming it (not after a minute of
    huggingface_hub retries, a warning line each), for the tokenizer and the model alike."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}", HF_HUB_CACHE=str(tmp_path / "hub"))
    argv = ["score", "--model", "nobody/no-model", "--data", str(PAIRS), "--out", str(tmp_path / "s.jsonl")]
    done = subprocess.run([sys.executable, "-c", _UNREACHABLE_HUB, *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("alignlab: cannot load tokenizer from 'nobody/no-model': the hub at http://127.0.0.1:")
    messages = json.loads(done.stdout)
    for what in ("tokenizer", "model"):
        kind, message = messages[f"load_{what}"]
        assert kind == "ConfigError" and f"cannot load {what} from 'nobody/no-model'" in message
        assert "unreachable" in message and "HF_HUB_OFFLINE=1" in message


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
