"""DataSpec: every setting that decides how a source's records become examples, as one validated object.

The training config's data section builds one (``DataConfig.spec``), the loaders read the source with it and
hand it to the tokenizer; no stage passes the settings one by one. Library callers may also name settings as
keywords: ``load_preference_data(path, tok, max_length=256)`` is ``DataSpec(max_length=256)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alignlab.data.formats import FORMATS
from alignlab.errors import ConfigError

PROMPT_TRUNCATIONS = ("keep_end", "keep_start")
RESPONSE_TRUNCATIONS = ("truncate", "drop_example")
SFT_TURNS = ("all", "last")


@dataclass(frozen=True)
class DataSpec:
    """How one source is read, validated and tokenized (rules: formats.py, tokenization.py, sources.py).

    split: the split to read (a single local file is that split). format: ``auto`` or one of ``FORMATS``.
    columns: canonical name -> source column. data_files: passed to ``datasets.load_dataset``.
    max_length / max_prompt_length / prompt_truncation / response_truncation: the truncation rule.
    sft_turns: messages data for SFT, all assistant turns or the last. shuffle_seed / limit: record order and
    count before validation. drop_identical_pairs: drop pairs whose chosen and rejected responses are equal.
    """

    split: str = "train"
    format: str = "auto"
    columns: Mapping[str, str] | None = None
    data_files: Any = None
    max_length: int = 512
    max_prompt_length: int = 256
    prompt_truncation: str = "keep_end"
    response_truncation: str = "truncate"
    sft_turns: str = "all"
    shuffle_seed: int | None = None
    limit: int | None = None
    drop_identical_pairs: bool = True

    def __post_init__(self) -> None:
        _check_int("max_length", self.max_length, least=2)
        if not _is_int(self.max_prompt_length) or not 1 <= self.max_prompt_length <= self.max_length:
            raise ConfigError(f"max_prompt_length must be an integer in [1, max_length={self.max_length}], "
                              f"got {self.max_prompt_length!r}")
        _check_choice("prompt_truncation", self.prompt_truncation, PROMPT_TRUNCATIONS)
        _check_choice("response_truncation", self.response_truncation, RESPONSE_TRUNCATIONS)
        _check_choice("sft_turns", self.sft_turns, SFT_TURNS)
        _check_choice("format", self.format, ("auto", *FORMATS))
        if not isinstance(self.split, str) or not self.split:
            raise ConfigError(f"split must be a non-empty string, got {self.split!r}")
        if self.columns is not None and not (
            isinstance(self.columns, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.columns.items())
        ):
            raise ConfigError(f"columns must map canonical names to source column names, got {self.columns!r}")
        # a private copy: the caller's dict can change without changing the spec; {} is no renaming
        object.__setattr__(self, "columns", dict(self.columns) if self.columns else None)
        if self.limit is not None:
            _check_int("limit", self.limit, least=0)
        if self.shuffle_seed is not None and not _is_int(self.shuffle_seed):
            raise ConfigError(f"shuffle_seed must be an integer or None, got {self.shuffle_seed!r}")
        if not isinstance(self.drop_identical_pairs, bool):
            raise ConfigError(f"drop_identical_pairs must be true or false, got {self.drop_identical_pairs!r}")

    def __hash__(self) -> int:
        columns = tuple(sorted(self.columns.items())) if self.columns else None
        return hash((*(getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("columns",
                                                                                             "data_files")),
                     columns, repr(self.data_files)))

    @classmethod
    def of(cls, spec: DataSpec | None = None, **settings: Any) -> DataSpec:
        """``spec`` (default: the defaults) with the named settings replaced; an unknown name is a ConfigError."""
        if spec is not None and not isinstance(spec, DataSpec):
            raise ConfigError(f"the data settings must be a DataSpec, got {type(spec).__name__} {spec!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ConfigError(f"'{unknown[0]}' is not a data setting (settings: {', '.join(sorted(names))})")
        return dataclasses.replace(spec or cls(), **settings)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value: Any, *, least: int) -> None:
    if not _is_int(value) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


__all__ = ["PROMPT_TRUNCATIONS", "RESPONSE_TRUNCATIONS", "SFT_TURNS", "DataSpec"]
