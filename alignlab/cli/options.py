"""Option syntax and cheap checks shared by the commands.

One column-map syntax for every command that takes one (`--columns prompt=question,chosen=good`; a recipe's
`columns` key is the same map in YAML). The checks here run before a command imports torch or transformers, so
that a mistyped path or option is reported at once rather than after seconds of imports.
"""

from __future__ import annotations

from pathlib import Path

from alignlab.data.sources import LOCAL_SUFFIXES
from alignlab.errors import ConfigError, DataError

COLUMNS_HELP = ("column renames, canonical=source pairs separated by commas, e.g. prompt=question,chosen=good "
                "(a recipe's columns key, as YAML: {prompt: question, chosen: good})")


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
