"""Loading raw records from local files or `datasets`, keeping where each record came from.

Sources
- a local ``.jsonl`` file (one JSON object per line; blank lines are skipped), a ``.json`` file (an array of
  objects, or ``{"data": [...]}``) or a ``.parquet`` file. A ``.jsonl`` file that holds one JSON array (it
  starts with a ``[`` line, or parses whole as an array) is read as a ``.json`` array, with a warning.
- a local directory holding ``<split>.jsonl`` / ``<split>.json`` / ``<split>.parquet``: ``split`` picks the
  file.
- a directory written by ``datasets``' ``save_to_disk``: read with ``datasets.load_from_disk`` (``split``
  picks the split of a DatasetDict).
- anything else (a hub name, a loading-script path, a builder name such as ``"json"`` with ``data_files=``, a
  directory of data files without ``<split>.*`` names) goes to ``datasets.load_dataset(source, split=split,
  data_files=data_files)``. A local directory with no data file at all (say, only a README) is an error here,
  naming what was looked for and what is there: ``datasets`` would read a ``.txt`` in it (notes, a README.txt)
  as a ``text`` dataset. Data files have a suffix of ``DATASETS_SUFFIXES`` (possibly compressed) and are
  outside hidden folders.
- a list of dicts (in-memory records, mostly for tests and notebooks).

Splits: a source that is one split (a local file, in-memory records) is the data whatever ``split`` names, so
``eval_data=test.jsonl`` needs no matching ``eval_split``. ``split`` selects only where a source holds several
(a split directory, a DatasetDict, a ``datasets`` source), and a split it lacks is an error there.

Local files are read here, not through ``datasets``, so that every record keeps its provenance: the path and
the 1-based line number for JSONL (``data/train.jsonl line 12``), the 0-based record index for JSON, Parquet
and ``datasets`` sources (``data/train.parquet record 11``). Lines that are not valid UTF-8 or not valid JSON
do not raise here: they become one-line errors returned next to the records, so that validation reports all
problems of a file at once.

Order: records are read in file order, then shuffled with ``random.Random(shuffle_seed)`` if a seed is given,
then cut to the first ``limit``. ``Record.index`` is the record's position in the source (before shuffling),
so it is stable across seeds and limits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError, DataError

LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
# what datasets.load_dataset reads as structured data from a directory (a .txt would become a `text` dataset)
DATASETS_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv", ".arrow")


@dataclass(frozen=True)
class Record:
    """One raw record: its fields, its 0-based position in the source and a human-readable location."""

    data: dict[str, Any]
    index: int
    where: str  # e.g. "data/train.jsonl line 12" or "data/train.parquet record 11"


def _jsonl_records(path: Path, warnings: list[str]) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    errors: list[str] = []
    raw = path.read_bytes()
    if _is_json_array(raw):
        # a pretty-printed array would give one "malformed JSON" error per line; read it as .json does
        warnings.append(
            f"{path}: holds a JSON array, not JSON Lines (one object per line); read as a JSON array "
            "(rename it to .json, or convert it with `jq -c '.[]'`)"
        )
        return _json_records(path, raw)
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        where = f"{path} line {lineno}"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            errors.append(f"{where}: not valid UTF-8 (byte 0x{line[e.start]:02x} at column {e.start + 1})")
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: malformed JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(obj, dict):
            errors.append(f"{where}: expected a JSON object, got {_json_type(obj)}")
            continue
        records.append(Record(obj, len(records), where))
    return records, errors


def _is_json_array(raw: bytes) -> bool:
    """A first line of just ``[`` (a pretty-printed array, even a malformed one), or a whole-file array."""
    head = raw.lstrip()
    if not head.startswith(b"["):
        return False
    if head.split(b"\n", 1)[0].strip() == b"[":
        return True
    try:
        return isinstance(json.loads(raw), list)
    except (UnicodeDecodeError, json.JSONDecodeError):  # JSON Lines whose first line is a list, or broken
        return False


def _json_records(path: Path, raw: bytes | None = None) -> tuple[list[Record], list[str]]:
    raw = path.read_bytes() if raw is None else raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        return [], [f"{path} line {line}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {column})"]
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [f"{path} line {e.lineno}: malformed JSON ({e.msg} at column {e.colno})"]
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        obj = obj["data"]
    if not isinstance(obj, list):
        return [], [f'{path}: expected a JSON array of objects or {{"data": [...]}}, got {_json_type(obj)}']
    return _from_dicts(obj, str(path))


def _parquet_records(path: Path) -> tuple[list[Record], list[str]]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as e:  # pyarrow: ArrowIOError (OSError), ArrowInvalid (ValueError)
        return [], [f"{path}: cannot read Parquet ({type(e).__name__}: {str(e).splitlines()[0]})"]
    return _from_dicts(rows, str(path))


def _from_dicts(rows: Sequence[Any], name: str) -> tuple[list[Record], list[str]]:
    records: list[Record] = []
    errors: list[str] = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            records.append(Record(dict(row), i, f"{name} record {i}"))
        else:
            errors.append(f"{name} record {i}: expected an object, got {_json_type(row)}")
    return records, errors


def _json_type(obj: Any) -> str:
    return {dict: "object", list: "list", type(None): "null"}.get(type(obj), type(obj).__name__)


def _read_local_file(path: Path, warnings: list[str]) -> tuple[list[Record], list[str]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path, warnings)
    if suffix == ".json":
        return _json_records(path)
    if suffix == ".parquet":
        return _parquet_records(path)
    raise ConfigError(f"{path}: unsupported data file type '{suffix}' (use .jsonl, .json or .parquet)")


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _is_data_file(path: Path, root: Path) -> bool:
    hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
    # any suffix, so that compressed files (train.jsonl.gz) count
    return path.is_file() and not hidden and any(x.lower() in DATASETS_SUFFIXES for x in path.suffixes)


def _split_file(path: Path, split: str, data_files: Any) -> Path | None:
    """The ``<split>.*`` file of a local directory; None where ``datasets`` should read the directory. A
    directory with no data file at all (and no ``data_files=`` naming one) is a DataError naming what was
    looked for and what is there."""
    found = [p for p in (path / f"{split}{suffix}" for suffix in LOCAL_SUFFIXES) if p.is_file()]
    if len(found) > 1:
        raise ConfigError(f"{path}: several files for split '{split}': {', '.join(p.name for p in found)}")
    if found:
        return found[0]
    if data_files is not None or _is_saved_dataset(path):
        return None
    if any(_is_data_file(p, path) for p in path.rglob("*")):
        return None
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    more = f" and {len(names) - 8} more" if len(names) > 8 else ""
    there = ", ".join(names[:8]) + more if names else "nothing"
    raise DataError(
        f"{path}: no data file for split '{split}': looked for "
        f"{', '.join(split + suffix for suffix in LOCAL_SUFFIXES)} or any {', '.join(DATASETS_SUFFIXES)} "
        f"file, found {there} (put the data in {path / (split + '.jsonl')}, or pass the data file itself)"
    )


def _read_datasets(source: str, split: str, data_files: Any) -> tuple[list[Record], list[str]]:
    import datasets

    path = Path(source)
    if path.is_dir() and _is_saved_dataset(path):
        if data_files is not None:
            raise ConfigError(
                f"{source}: data_files= cannot be used with a directory written by save_to_disk"
            )
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ConfigError(f"{source}: no split '{split}' (available: {', '.join(ds.keys())})")
            ds = ds[split]
    else:
        try:
            ds = datasets.load_dataset(source, split=split, data_files=data_files)
        except (OSError, ValueError) as e:  # not found, offline hub, bad data_files
            raise DataError(
                f"{source}: cannot load with datasets.load_dataset ({str(e).splitlines()[0]})"
            ) from e
    return _from_dicts(ds.to_list(), f"{source}[{split}]")


def read_records(
    source: str | Path | Sequence[Mapping[str, Any]],
    *,
    split: str = "train",
    data_files: Any = None,
    shuffle_seed: int | None = None,
    limit: int | None = None,
    warnings: list[str] | None = None,
) -> tuple[list[Record], list[str]]:
    """Read raw records and the one-line errors of unreadable lines (malformed JSON, bad UTF-8).

    Returns (records, errors). Records are in source order, then shuffled with ``shuffle_seed`` (if not None),
    then cut to ``limit`` (if not None). ``split`` selects only in sources that hold several splits (module
    docstring). ``data_files`` is passed to ``datasets.load_dataset`` and is rejected for local files and
    directories, which name their files themselves. One-line warnings about a source that was read anyway (a
    JSON array in a ``.jsonl`` file) are appended to ``warnings`` when a list is given.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative integer, got {limit!r}")
    if shuffle_seed is not None and not isinstance(shuffle_seed, int):
        raise ConfigError(f"shuffle_seed must be an integer or None, got {shuffle_seed!r}")
    warnings = [] if warnings is None else warnings
    if isinstance(source, (str, Path)):
        path = Path(source)
        local_dir_file = _split_file(path, split, data_files) if path.is_dir() else None
        if path.is_file() or local_dir_file is not None:
            if data_files is not None:
                raise ConfigError(
                    f"{source}: data_files= is only for datasets.load_dataset sources, not local files"
                )
            records, errors = _read_local_file(local_dir_file or path, warnings)
        elif path.suffix.lower() in LOCAL_SUFFIXES and not path.exists():
            raise DataError(f"{source}: file not found")
        else:
            records, errors = _read_datasets(str(source), split, data_files)
    elif isinstance(source, Sequence):
        if data_files is not None:
            raise ConfigError("data_files= is only for datasets.load_dataset sources, not in-memory records")
        records, errors = _from_dicts(source, "<records>")
    else:
        raise ConfigError(f"unsupported data source of type {type(source).__name__}")

    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(records)
    if limit is not None:
        records = records[:limit]
    return records, errors
