"""Option syntax and cheap checks shared by the commands.

One column-map syntax for every command that takes one (`--columns prompt=question,chosen=good`; a recipe's
`columns` key is the same map in YAML). The checks here run before a command imports torch or transformers, so
that a mistyped path or option is reported at once rather than after seconds of imports.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alignlab.data.formats import FORMATS
from alignlab.data.sources import LOCAL_SUFFIXES
from alignlab.data.spec import PROMPT_TRUNCATIONS, RESPONSE_TRUNCATIONS, SFT_TURNS, DataSpec
from alignlab.errors import ConfigError, DataError

COLUMNS_HELP = ("column renames, canonical=source pairs separated by commas, e.g. prompt=question,chosen=good "
                "(a recipe's columns key, as YAML: {prompt: question, chosen: good})")


def add_data_options(parser: argparse.ArgumentParser, *, sft_turns: bool = False, limit: str | None = None) -> None:
    """The options of training's data section (same names and defaults) for a command that reads data as
    training does; `data_spec` turns them into the loaders' DataSpec. `limit`: the --limit help, when offered."""
    parser.add_argument("--split", default="train", help="split of a directory or datasets source (a single file is "
                                                         "its own split)")
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS),
                        help="data format (default: detected, as in training)")
    parser.add_argument("--columns", default=None, help=COLUMNS_HELP)
    parser.add_argument("--max-length", type=int, default=512, help="max tokens of prompt + response")
    parser.add_argument("--max-prompt-length", type=int, default=256, help="max prompt tokens of a long record")
    parser.add_argument("--prompt-truncation", default="keep_end", choices=PROMPT_TRUNCATIONS,
                        help="which end of a long prompt is kept")
    parser.add_argument("--response-truncation", default="truncate", choices=RESPONSE_TRUNCATIONS,
                        help="long responses: cut at the end, or drop the record")
    if sft_turns:
        parser.add_argument("--sft-turns", default="all", choices=SFT_TURNS,
                            help="messages data: all assistant turns or the last")
    if limit:
        parser.add_argument("--limit", type=int, default=None, help=limit)


def add_sampling_options(parser: argparse.ArgumentParser, *, n: int, n_help: str) -> None:
    """The sampling, prompt-source and device options alignlab generate and alignlab winrate share (the
    temperature is each command's own: one value, or winrate's sweep)."""
    add = parser.add_argument
    add("--n", type=int, default=n, help=n_help)
    add("--top-p", "--top_p", dest="top_p", type=float, default=1.0)
    add("--top-k", "--top_k", dest="top_k", type=int, default=0, help="0 disables top-k")
    add("--max-new-tokens", "--max_new_tokens", dest="max_new_tokens", type=int, default=48)
    add("--batch-size", "--batch_size", dest="batch_size", type=int, default=16, help="sequences per forward")
    add("--prompt-column", "--prompt_column", dest="prompt_column", default="prompt")
    add("--split", default=None, help="split of a directory or datasets source (default: train)")
    add("--limit", type=int, default=None, help="use the first N prompts")
    add("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add("--dtype", default=None, help="model dtype, e.g. float32 (default), bfloat16")


def data_spec(args: argparse.Namespace) -> DataSpec:
    """The DataSpec of the options add_data_options added."""
    return DataSpec(split=args.split, format=args.format, columns=parse_columns(args.columns),
                    max_length=args.max_length, max_prompt_length=args.max_prompt_length,
                    prompt_truncation=args.prompt_truncation, response_truncation=args.response_truncation,
                    sft_turns=getattr(args, "sft_turns", "all"), limit=getattr(args, "limit", None))


def parse_columns(text: str | None, flag: str = "--columns") -> dict[str, str] | None:
    """The column map of `canonical=source[,canonical=source...]` (None for None).

    A malformed map (an item without `=`, an empty name, a canonical name given twice) raises a one-line
    ConfigError naming the item and the expected form; which canonical names exist is the data layer's check.
    """
    if text is None:
        return None
    columns: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value or "=" in value:
            raise ConfigError(f"{flag} item '{item.strip()}' must look like canonical=source "
                              "(e.g. prompt=question,chosen=good)")
        if key in columns:
            raise ConfigError(f"{flag} maps '{key}' twice ('{columns[key]}' and '{value}'); give it once")
        columns[key] = value
    return columns


def parse_indices(text: str | None, flag: str) -> tuple[int, ...]:
    """Record indices `3,17` as a tuple (empty for None); a malformed item is a one-line ConfigError."""
    if text is None:
        return ()
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit():
            raise ConfigError(f"{flag} item '{item}' is not a record index (a whole number >= 0, e.g. {flag} 3,17)")
        out.append(int(item))
    return tuple(dict.fromkeys(out))


def check_local_file(source: str, suffixes: tuple[str, ...] = LOCAL_SUFFIXES) -> None:
    """Raise DataError `<source>: file not found` when `source` names a local data file that is not there.

    Mirrors what alignlab.data.read_records decides for a path with one of `suffixes` (anything else may be a
    directory or a datasets name, which only the loader can tell), with the same message.
    """
    path = Path(source)
    if path.suffix.lower() in suffixes and not path.exists():
        raise DataError(f"{source}: file not found")


__all__ = ["COLUMNS_HELP", "check_local_file", "parse_columns", "parse_indices"]
