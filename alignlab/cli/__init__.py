"""Command line: parse, call the library, print. Every argparse parser and every user-facing print of alignlab
lives in this package, one module per command (train, score, validate, diagnose, generate, winrate, report,
inspect, push, testbed) and options.py, the option syntax and cheap checks they share; the library takes
arguments and returns results.

`main` is the one place that turns an AlignlabError into output: one stderr line `alignlab: <message>` and
exit code 2 (with --debug anywhere on the command line it re-raises, so the traceback shows). An OSError (with
its path), malformed JSON or a corrupt safetensors file raised below alignlab is reported the same way; any
other exception is a bug and keeps its traceback. Subcommand mains and the library raise; they never print
errors.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from alignlab.errors import AlignlabError, RunInterrupted

USAGE = """alignlab <command> [options]

commands:
  train           train with a recipe: alignlab train --config recipes/dpo.yaml [key=value ...]
                  (no --config: one run from the config defaults and the key=value overrides;
                  bare `alignlab train`: the quickstart, SFT then TDPO2 on the tiny offline model)
  validate-data   check a data file: alignlab validate-data data.jsonl [--sft]
  diagnose        ranking diagnostics: alignlab diagnose --model M [--ref R] --data D | --run RUN_DIR
  generate        sample completions: alignlab generate --model M --prompts FILE [--n 4 ...]
  winrate         judged win rate: alignlab winrate --model M --baseline B --prompts FILE --judge SPEC
  score           per-record log-probs: alignlab score --model M --data FILE --out scores.jsonl [--ref R]
  report          one HTML page of a run: alignlab report RUN_DIR [--ref R] [--data FILE] [--out report.html]
  inspect         a pair token by token: alignlab inspect --model M --ref R --data FILE --index I [--top K]
  push            upload a run's final/ to the Hub: alignlab push RUN_DIR REPO_ID
  testbed         run a testbed: alignlab testbed frozenlake [--seeds 5] | alignlab testbed sentiment

add --help after a command for its options; --debug shows tracebacks.
"""


def _quiet_libraries() -> None:
    # Through the environment, which the libraries read when first imported: importing transformers here would
    # delay every error found before a command needs it (a missing file, a bad option) by seconds.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # imported already (a caller in process): the environment is read
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


# Each command's module is imported only when that command runs: `alignlab --help` and a mistyped command stay
# instant, and a command pays only for the libraries (torch, transformers, datasets) it uses.
def _train(argv: list[str]) -> int:
    from alignlab.cli.train import main as train_main

    return train_main(argv)


def _validate(argv: list[str]) -> int:
    from alignlab.cli.validate import main as validate_main

    return validate_main(argv)


def _diagnose(argv: list[str]) -> int:
    from alignlab.cli.diagnose import main as diagnose_main

    return diagnose_main(argv)


def _generate(argv: list[str]) -> int:
    from alignlab.cli.generate import main as generate_main

    return generate_main(argv)


def _winrate(argv: list[str]) -> int:
    from alignlab.cli.winrate import main as winrate_main

    return winrate_main(argv)


def _score(argv: list[str]) -> int:
    from alignlab.cli.score import main as score_main

    return score_main(argv)


def _report(argv: list[str]) -> int:
    from alignlab.cli.report import main as report_main

    return report_main(argv)


def _inspect(argv: list[str]) -> int:
    from alignlab.cli.inspect import main as inspect_main

    return inspect_main(argv)


def _push(argv: list[str]) -> int:
    from alignlab.cli.push import main as push_main

    return push_main(argv)


def _testbed(argv: list[str]) -> int:
    from alignlab.cli.testbed import main as testbed_main

    return testbed_main(argv)


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": _train, "validate-data": _validate, "diagnose": _diagnose, "generate": _generate, "score": _score,
    "winrate": _winrate, "report": _report, "inspect": _inspect, "push": _push, "testbed": _testbed,
}


def _one_line(exc: BaseException) -> str:
    # a message may wrap (e.g. a quoted library error); the contract is one stderr line per error
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _library_error(exc: Exception) -> str | None:
    """One line for an error from below alignlab that names its own cause (a file that cannot be read or written,
    malformed JSON, a corrupt safetensors file), or None for anything else: a bug, whose traceback is the report."""
    if isinstance(exc, OSError):
        if exc.filename is None:
            return _one_line(exc) or type(exc).__name__
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
        return f"{where}: {exc.strerror or _one_line(exc)}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg}: line {exc.lineno} column {exc.colno})"
    safetensors = sys.modules.get("safetensors")  # never imported: nothing can have raised its error
    if safetensors is not None and isinstance(exc, safetensors.SafetensorError):
        return f"cannot read a safetensors file ({_one_line(exc)})"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit code (0 ok, 2 user error or usage error, 130 / 143 interrupted by
    SIGINT / SIGTERM: training first writes a checkpoint)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"alignlab: unknown command '{command}'\n\n{USAGE}", file=sys.stderr)
        return 2
    _quiet_libraries()
    try:
        return COMMANDS[command](rest)
    except AlignlabError as exc:
        if debug:
            raise
        print(f"alignlab: {_one_line(exc)}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        raise
    except RunInterrupted as exc:  # a checkpoint was written: the message says how to resume
        print(f"alignlab: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("alignlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _library_error(exc)
        if message is None or debug:
            raise
        print(f"alignlab: {message} (--debug for the traceback)", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "USAGE", "main"]
