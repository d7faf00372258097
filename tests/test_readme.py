"""Every command in README.md's ```bash blocks runs, at smoke size, through the real CLI.

README.md is parsed at collection time (`\\` continuations joined, `# comments` dropped, whitespace collapsed),
and each command must be a key of SMOKE below, which gives its smoke form: the README command with placeholders
substituted (SUBSTITUTIONS, then the entry's own) and smoke options appended (later key=value overrides and
argparse options win). A README command missing from SMOKE fails with a message asking for its entry, so the
README cannot drift from what runs. Commands run in a fresh directory holding `recipes/` and
`alignlab/data/samples/` (links to the repository's), `prompts.txt`, `data.jsonl` and `runs/x` (a 2-step DPO
run trained once per session); `alignlab ...` runs in process through alignlab.cli.main, anything else
(`accelerate launch`) in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from alignlab.cli import main
from alignlab.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# key=value overrides that make any `alignlab train` run take a few seconds on the tiny model
TRAIN = ("max_steps=2 limit=16 micro_batch_size=2 eval_batch_size=4 max_length=64 max_prompt_length=32 "
         "tensorboard=false progress=false")
# placeholders in README commands -> what the smoke directory has
SUBSTITUTIONS = {"runs/quickstart-<time>/sft/final": "runs/x/final"}
# the installs in "## Two commands": CI and the slow quickstart test run them
INSTALL = re.compile(r"\bpip install\b")


@dataclass(frozen=True)
class Smoke:
    """The smoke form of one README command.

    extra: appended options; subs: substitutions after SUBSTITUTIONS; setup: commands run before it (smoke form,
    in the same directory); produces: globs that must match afterwards; offline: the command needs the network,
    so it must fail with one `alignlab: ...` line and exit code 2; check: a predicate on the directory
    afterwards.
    """

    extra: str = ""
    subs: tuple[tuple[str, str], ...] = ()
    setup: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    offline: bool = False
    check: Callable[[Path], bool] | None = None


SMOKE: dict[str, Smoke] = {
    # Training
    "alignlab train --config recipes/tdpo2.yaml": Smoke(TRAIN, produces=("runs/tdpo2-*/final",)),
    "alignlab train --config recipes/dpo.yaml beta=0.2 max_steps=50": Smoke(
        TRAIN, produces=("runs/dpo-*/final",)),
    "alignlab train --config recipes/dpo.yaml run_dir=runs/a --resume": Smoke(
        f"{TRAIN} max_steps=3",
        setup=(f"alignlab train --config recipes/dpo.yaml run_dir=runs/a {TRAIN} save_steps=1",),
        check=lambda d: _steps(d / "runs" / "a") == [0, 1, 2, 3, 3]),  # from checkpoint-1 to step 3
    "alignlab train method=dpo max_steps=20 run_dir=runs/dpo-defaults": Smoke(
        TRAIN, produces=("runs/dpo-defaults/final",)),
    "alignlab train --list-keys": Smoke(),
    "alignlab train --config recipes/online_dpo.yaml run_dir=runs/online": Smoke(
        "rounds=1 steps_per_round=1 prompts_per_round=8 micro_batch_size=4 max_new_tokens=6 eval_fraction=0.02 "
        "tensorboard=false progress=false", produces=("runs/online/online_metrics.jsonl",)),
    "accelerate launch --multi_gpu --num_processes 2 -m alignlab.cli train --config recipes/dpo.yaml": Smoke(
        TRAIN, produces=("runs/dpo-*/final",)),
    "accelerate launch --config_file recipes/accelerate/fsdp2.yaml --num_processes 2 -m alignlab.cli train "
    "--config recipes/dpo.yaml": Smoke(TRAIN, produces=("runs/dpo-*/final",)),
    # Data
    "alignlab validate-data data.jsonl": Smoke(),
    # Diagnostics
    "alignlab diagnose --model runs/x/final --ref alignlab/tiny-llama --data alignlab/data/samples/pairs.jsonl":
        Smoke("--max-pairs 16", produces=("diagnose/diagnose.json",)),
    "alignlab diagnose --model runs/x/final --ref alignlab/tiny-llama --data alignlab/data/samples/ranking.jsonl":
        Smoke("--max-pairs 16", produces=("diagnose/diagnose.json",)),
    # --run writes into the run by default (tests/test_cli.py), and runs/x is shared by the session: write beside it
    "alignlab diagnose --run runs/x": Smoke("--max-pairs 16 --out diagnose", produces=("diagnose/diagnose.json",)),
    "alignlab generate --model runs/x/final --ref alignlab/tiny-llama --prompts prompts.txt --n 4 "
    "--out samples.jsonl": Smoke("--max-new-tokens 8", produces=("samples.jsonl",)),
    "alignlab train --config recipes/dpo.yaml --track-flips 128 eval_steps=10": Smoke(
        f"--track-flips 4 eval_steps=1 {TRAIN}", produces=("runs/dpo-*/final",)),
    "alignlab score --model runs/x/final --ref alignlab/tiny-llama --data alignlab/data/samples/pairs.jsonl "
    "--out scores.jsonl": Smoke("--limit 8", produces=("scores.jsonl",)),
    # A run on one page (runs/x: a 2-step DPO run with a checkpoint and no tracked flips, so checkpoints are scored)
    "alignlab report runs/x": Smoke("--out report.html --max-pairs 8 --flip-pairs 8",
                                    produces=("report.html", "report.json")),
    "alignlab report runs/x --pairs 3,17 --generate 4 --out report.html": Smoke(
        "--data data.jsonl --max-pairs 8 --flip-pairs 8 --max-new-tokens 4", subs=(("3,17", "3,5"),),
        check=lambda d: [v["index"] for v in _json(d / "report.json")["token_views"]][:2] == [3, 5]
        and len(_json(d / "report.json")["generations"]) == 4),
    "alignlab inspect --model runs/x/final --ref alignlab/tiny-llama --data alignlab/data/samples/pairs.jsonl "
    "--index 3 --top 5": Smoke(),
    "alignlab push runs/x me/tiny-dpo": Smoke(offline=True),
    # Win rate against a baseline (judge.py is the README's; tests/judges/rules.py has the same function)
    "alignlab winrate --model runs/x/final --baseline alignlab/tiny-llama --prompts prompts.txt "
    "--judge py:judge.py:longer --temperatures 0.25,0.75,1.0 --out winrate.json": Smoke(
        "--max-new-tokens 4 --bootstrap 100",
        subs=(("py:judge.py:", f"py:{shlex.quote(str(ROOT / 'tests' / 'judges' / 'rules.py'))}:"),),
        check=lambda d: [r["temperature"] for r in _json(d / "winrate.json")["results"]] == [0.25, 0.75, 1.0]),
    # Frozen Lake
    "alignlab testbed frozenlake --seeds 5": Smoke(
        "--seeds 1 --steps 50", produces=("frozenlake/frozenlake.json",)),
    # Does DPO learn the ranking?
    "alignlab train --config recipes/dpo.yaml model=runs/quickstart-<time>/sft/final save_steps=9 "
    "save_total_limit=null eval_steps=9 epochs=2.0 run_dir=runs/dpo-flips --track-flips 128": Smoke(
        f"save_steps=1 eval_steps=1 --track-flips 4 {TRAIN}", produces=("runs/dpo-flips/checkpoint-1",)),
    "alignlab diagnose --run runs/dpo-flips": Smoke(
        "--max-pairs 16 --out diagnose", subs=(("runs/dpo-flips", "runs/x"),), produces=("diagnose/diagnose.json",)),
    "alignlab diagnose --model runs/dpo-flips/final --ref runs/quickstart-<time>/sft/final "
    "--data alignlab/data/samples/pairs.jsonl": Smoke(
        "--max-pairs 16", subs=(("runs/dpo-flips", "runs/x"),), produces=("diagnose/diagnose.json",)),
    # Sentiment testbed
    "alignlab testbed sentiment": Smoke("--smoke", produces=("sentiment-smoke/sentiment.json",)),
    "alignlab testbed sentiment --smoke": Smoke(produces=("sentiment-smoke/sentiment.json",)),
    "alignlab testbed sentiment --policy gpt2-large --reward-model siebert/sentiment-roberta-large-english "
    "--dataset imdb": Smoke(offline=True),
    # The two paper experiments on the sentiment testbed
    "alignlab testbed ranking-winrate": Smoke("--smoke", produces=("sentiment-smoke/ranking_winrate.json",
                                                                   "sentiment-smoke/ranking_winrate.png")),
    "alignlab testbed tdpo-table": Smoke("--smoke", produces=("sentiment-smoke/tdpo_table.json",
                                                              "sentiment-smoke/tdpo_table.png")),
}


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _steps(run: Path) -> list[int]:
    return [record["step"] for record in read_metrics(run)]


def parse_commands(text: str) -> list[tuple[str, str]]:
    """(section, command) for every command in the ```bash blocks of a Markdown text, in order.

    Continuation lines (ending in `\\`) are joined, `# comments` dropped and runs of whitespace collapsed.
    """
    commands = []
    section = ""
    in_block = False
    pending = ""
    for line in text.splitlines():
        if not in_block:
            if line.startswith("## "):
                section = line[3:].strip()
            in_block = line.strip() == "```bash"
            continue
        if line.strip() == "```":
            in_block = False
            continue
        line = re.sub(r"(^|\s)#.*$", "", line).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        command = " ".join((pending + line).split())
        pending = ""
        if command:
            commands.append((section, command))
    return commands


def readme_commands() -> list[str]:
    return [command for section, command in parse_commands(README.read_text(encoding="utf-8"))
            if not (section == "Two commands" and INSTALL.search(command))]


def smoke_form(command: str, smoke: Smoke) -> str:
    for old, new in (*SUBSTITUTIONS.items(), *smoke.subs):
        command = command.replace(old, new)
    return f"{command} {smoke.extra}".strip()


def _short_id(command: str) -> str:
    return re.sub(r"[^A-Za-z0-9=.<>/-]+", "_", command.removeprefix("alignlab "))[:80]


def _params():
    commands = readme_commands()
    out = []
    for command in commands:
        out.append(pytest.param(command, id=_short_id(command)))
    return out


# ---------------------------------------------------------------------------------------------------------------
# the smoke directory


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """runs/x: a 2-step DPO run of the tiny model with checkpoints (for --model runs/x/final and --run runs/x)."""
    base = tmp_path_factory.mktemp("readme-run")
    _link_repo(base)
    old = os.getcwd()
    os.chdir(base)
    try:
        code = main(shlex.split(f"train --config recipes/dpo.yaml run_dir=runs/x save_steps=1 {TRAIN}"))
    finally:
        os.chdir(old)
    assert code == 0
    return base / "runs" / "x"


def _link_repo(directory: Path) -> None:
    (directory / "recipes").symlink_to(ROOT / "recipes")
    (directory / "alignlab" / "data").mkdir(parents=True)
    (directory / "alignlab" / "data" / "samples").symlink_to(ROOT / "alignlab" / "data" / "samples")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    _link_repo(tmp_path)
    (tmp_path / "prompts.txt").write_text("Write a short review of the soup pot.\nHow do I fix a flat tyre?\n")
    pairs = (ROOT / "alignlab" / "data" / "samples" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    (tmp_path / "data.jsonl").write_text("\n".join(pairs[:8]) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(command: str, directory: Path) -> tuple[int, str]:
    """Run one smoke command in `directory`; (exit code, stderr). alignlab in process, anything else in a child."""
    argv = shlex.split(command)
    if argv[0] == "alignlab":
        code = main(argv[1:])
        return code, ""  # stderr is read by the caller from capsys
    executable = Path(sys.executable).parent / argv[0]
    argv[0] = str(executable) if executable.exists() else (shutil.which(argv[0]) or argv[0])
    # PYTHONSAFEPATH: `python -m alignlab.cli` must not import the directory's alignlab/ (links to the samples)
    env = {**os.environ, "PYTHONSAFEPATH": "1"}
    done = subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = done.stdout + done.stderr
    errors = [line for line in output.splitlines() if line.startswith("alignlab: ")]
    return done.returncode, "\n".join(errors) + "\n" + output[-3000:]


# ---------------------------------------------------------------------------------------------------------------
# tests


@pytest.mark.parametrize("command", _params())
def test_readme_command(command, workdir, request, capsys):
    smoke = SMOKE.get(command)
    if smoke is None:
        pytest.fail(
            f"README command not in the smoke table: {command!r}\nadd one line to SMOKE in tests/test_readme.py "
            f"with its smoke form (placeholders, smoke-size options, or offline=True if it needs the network)"
        )
    form = smoke_form(command, smoke)
    if any("runs/x" in text for text in (form, *smoke.setup)):
        (workdir / "runs").mkdir()
        (workdir / "runs" / "x").symlink_to(request.getfixturevalue("trained_run"))
    for step in smoke.setup:
        code, output = _run(step, workdir)
        assert code == 0, f"setup {step!r} exited {code}\n{output}{capsys.readouterr().err[-3000:]}"
    capsys.readouterr()
    code, output = _run(form, workdir)
    err = output or capsys.readouterr().err
    if smoke.offline:
        lines = err.strip().splitlines()
        assert code == 2, f"{form!r} exited {code}, expected 2 (offline)\n{err[-3000:]}"
        assert len(lines) == 1 and lines[0].startswith("alignlab: ") and "Traceback" not in err, err[-3000:]
        return
    assert code == 0, f"smoke form {form!r} exited {code}\n{err[-3000:]}"
    for pattern in smoke.produces:
        assert list(workdir.glob(pattern)), f"{form!r} left no {pattern}"
    assert smoke.check is None or smoke.check(workdir), f"{form!r}: its check failed"


def test_every_table_entry_is_in_the_readme():
    commands = set(readme_commands())
    stale = [command for command, smoke in SMOKE.items() if command not in commands]
    assert not stale, f"SMOKE entries no longer in README.md (remove or update them): {stale}"


def test_parse_commands_joins_continuations_and_drops_comments():
    text = (
        "## A\n\n```bash\nalignlab train --config x.yaml  # a recipe\n"
        "alignlab diagnose --model m \\\n    --data d   # two lines\n\n# a comment line\n```\n"
        "```python\nnot = 'bash'\n```\n## Two commands\n```bash\npip install -e . && alignlab train\n```\n"
    )
    assert parse_commands(text) == [
        ("A", "alignlab train --config x.yaml"),
        ("A", "alignlab diagnose --model m --data d"),
        ("Two commands", "pip install -e . && alignlab train"),
    ]
    assert smoke_form("alignlab x --model runs/quickstart-<time>/sft/final", Smoke("--n 1")) == (
        "alignlab x --model runs/x/final --n 1"
    )
