"""Content keys, fingerprints and atomic writes: the one place every cache and output file of alignlab uses.

- Where: `cache_dir()` is the root of alignlab's user cache (`$ALIGNLAB_CACHE_DIR`, else the XDG cache).
- Keys: `content_key(payload)` is the sha256 of the payload's canonical JSON (sorted keys, no whitespace), so
  two payloads that are equal as data give the same key whatever their dict order.
- Fingerprints: `model_fingerprint(location)` identifies a model's weights without reading them (LoRA-aware: an
  adapter directory includes its base model's fingerprint); `data_fingerprint(examples, settings)` identifies
  tokenized preference pairs.
- Files: `write_atomically(path, write)` lets `write(tmp)` fill a temporary file in the same directory, fsyncs
  it and renames it onto `path`, so a reader sees the old file or the complete new one, never half of one; the
  temporary file is removed on any failure. `write_text_atomically`, `write_bytes_atomically`,
  `write_json_atomically` and `write_jsonl_atomically` are the common cases; Parquet and torch files pass a
  callback (`lambda tmp: torch.save(obj, tmp)`).
- Directories: `build_dir_atomically(target, build)` builds in a temporary sibling directory and renames it into
  place; concurrent builders each build privately and the first rename wins. With `barrier` the build is shared
  by several processes (a checkpoint under accelerate: every rank writes its shard into one directory). Files
  in the committed directory get the umask's usual modes, whatever the library that wrote them used.
- Leftovers: `remove_temporaries(directory)` deletes what a killed writer left there (`.tmp-*` build
  directories, `write_atomically`'s temporary files).

This module sits below every other alignlab package: it imports only alignlab.errors and third-party libraries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alignlab.errors import AlignlabError

_TMP_PREFIX = ".tmp-"
# write_atomically's temporary file: `.<name>.<12 hex digits>.tmp`
_TMP_FILE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
# A private temporary build directory older than this is left over from a crashed build and may be removed.
_STALE_TMP_SECONDS = 6 * 3600


# ------------------------------------------------------------------------------------------------------ where
def cache_dir() -> Path:
    """Root of alignlab's cache: ``$ALIGNLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/alignlab``, else
    ``~/.cache/alignlab``. Not created here.
    """
    explicit = os.environ.get("ALIGNLAB_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "alignlab"
    return Path.home() / ".cache" / "alignlab"


# ------------------------------------------------------------------------------------------------------ keys
def content_key(payload: Any) -> str:
    """sha256 (hex) of `payload` as canonical JSON: sorted keys, compact separators, ASCII.

    Values JSON cannot encode (paths, dtypes) are hashed as their str(); bytes inputs should be passed as their
    own sha256.
    """
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def _dir_description(directory: Path, seen: set[str]) -> dict[str, Any]:
    real = os.path.realpath(directory)
    seen.add(real)
    files = []
    configs: dict[str, str] = {}
    for entry in sorted(os.scandir(real), key=lambda e: e.name):
        if not entry.is_file():
            continue
        stat = entry.stat()  # follows symlinks (Hugging Face snapshots link to blobs)
        files.append([entry.name, stat.st_size, stat.st_mtime_ns])
        if entry.name in ("config.json", "adapter_config.json"):
            configs[entry.name] = hashlib.sha256(Path(entry.path).read_bytes()).hexdigest()
    payload: dict[str, Any] = {"path": real, "files": files, "configs": configs}
    adapter = Path(real) / "adapter_config.json"
    if adapter.is_file():
        try:
            base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, json.JSONDecodeError):
            base = None
        # `seen` stops an adapter whose base points back at itself (or a cycle of them) from recursing forever.
        if base and os.path.isdir(base) and os.path.realpath(base) not in seen:
            payload["base"] = _dir_description(Path(base), seen)
        else:
            payload["base"] = base  # a hub id or a missing directory: only its name is known
    return payload


def model_fingerprint(location: str | os.PathLike) -> str | None:
    """sha256 identifying the weights at `location` (a model directory or a hub id), or None when it has no
    local files.

    A directory hashes as its real path, the bytes of config.json / adapter_config.json and the name, size and
    mtime (ns) of every file in it; a LoRA adapter directory also includes its base model's fingerprint. Statting
    is O(1) in model size where hashing weights would read gigabytes; any rewrite of a weight file changes its
    mtime, and a copied model is merely a cache miss. A hub id uses the snapshot directory of the local Hugging
    Face cache (its path holds the commit hash). Built-in names must be resolved to their directory first
    (alignlab.assets.resolve).
    """
    location = os.fspath(location)
    if os.path.isdir(location):
        return content_key({"model": _dir_description(Path(location), set())})
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(location, "config.json")
    except ValueError:  # an invalid repo id (HFValidationError): not cacheable; loading reports the error
        cached = None
    if isinstance(cached, str):
        return content_key({"hub": location, "model": _dir_description(Path(cached).parent, set())})
    return None


def data_fingerprint(examples: Sequence[Mapping[str, Any]], settings: Mapping[str, Any] | None = None) -> str:
    """sha256 of tokenized preference pairs (index, chosen/rejected ids and labels, alpha, votes) and the
    tokenization settings the caller passes (tokenizer, max_length, truncation, ...).

    Each id array is prefixed by its length so that moving a token across a boundary changes the hash.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(dict(settings or {}), sort_keys=True, default=str).encode("utf-8"))
    for example in examples:
        digest.update(b"|%d|" % int(example["index"]))
        for key in ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"):
            values = np.asarray(example[key], dtype=np.int64)
            digest.update(b"%d:" % values.size)
            digest.update(values.tobytes())
        for key in ("alpha", "votes"):
            if key in example:
                digest.update(f"{key}={example[key]!r}".encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- files
def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlignlabError(
            f"cannot create directory {directory}: {exc.strerror}; choose a writable location (for caches: set "
            "ALIGNLAB_CACHE_DIR)"
        ) from exc


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Replace `path` with what `write(tmp)` writes to a temporary file `tmp` in the same directory.

    The file is fsynced before the rename, so after a crash `path` holds the old or the complete new content.
    On any failure (including KeyboardInterrupt) the temporary file is removed and `path` is untouched. The
    parent directory is created if missing. Returns `path`.
    """
    path = Path(path)
    _mkdir(path.parent)
    # Created with os.open and mode 0o666 (not mkstemp's 0o600) so the result gets the umask's usual permissions.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """`write_atomically` of `data`."""
    return write_atomically(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomically(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """`write_atomically` of `text`."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def write_json_atomically(path: str | os.PathLike, data: Any, *, indent: int | None = None) -> Path:
    """`write_atomically` of `data` as JSON (UTF-8, one trailing newline)."""
    return write_text_atomically(path, json.dumps(data, indent=indent) + "\n")


def write_jsonl_atomically(path: str | os.PathLike, records: Iterable[Any], *, ensure_ascii: bool = False) -> Path:
    """`write_atomically` of `records` as JSON Lines, streamed one record at a time (an unserialisable record
    fails the whole write and leaves the old file)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=ensure_ascii) + "\n")

    return write_atomically(path, write)


# ----------------------------------------------------------------------------------------------- directories
def remove_temporaries(directory: str | os.PathLike, *, older_than: float = 0.0) -> list[Path]:
    """Delete the temporaries a killed writer left in `directory` (`.tmp-*` build directories of
    build_dir_atomically, `.<name>.<hex>.tmp` files of write_atomically) last modified more than `older_than`
    seconds ago, and return their paths.

    With the default 0 every temporary goes: call it only when no other process writes into `directory` (a run
    directory when its run restarts). Entries another process removes first are skipped.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    now = time.time()
    removed = []
    for entry in sorted(directory.iterdir()):
        name = entry.name
        if not (name.startswith(_TMP_PREFIX) or _TMP_FILE.match(name)):
            continue
        try:
            if now - entry.lstat().st_mtime < older_than:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:
            continue  # another process removed it first
        except OSError:
            continue  # not ours to remove (permissions); it does no harm where it is
        removed.append(entry)
    return removed


def _apply_umask_modes(root: Path) -> None:
    """Give every file under `root` the mode a plain open() would give it (0o666 less the umask; 0o777 less the
    umask for an executable) and every directory 0o777 less the umask.

    Some writers create files through mkstemp (transformers writes model.safetensors so), which leaves them
    0o600 beside 0o644 siblings. `root` was made by mkdir with mode 0o777, so its mode is the umask's; reading
    it avoids os.umask, which would have to change the process-wide umask to read it.
    """
    dir_mode = stat.S_IMODE(root.stat().st_mode) & 0o777
    file_mode = dir_mode & 0o666
    for path in root.rglob("*"):
        try:
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                os.chmod(path, dir_mode)
            elif stat.S_ISREG(st.st_mode):
                os.chmod(path, dir_mode if st.st_mode & 0o111 else file_mode)  # executables: 0o777 less umask
        except OSError:
            pass  # a file of another user (a shared file system): its mode is cosmetic, the content is complete


def _commit(tmp: Path, target: Path, *, replace: bool) -> None:
    """Rename `tmp` onto `target`; an existing target is kept (a concurrent builder won) unless `replace`."""
    if replace and target.exists():
        # Swap through a sibling so a complete target exists at every moment but the two renames' instant.
        old = target.parent / f".old-{target.name}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old)
        return
    try:
        os.rename(tmp, target)
    except OSError:
        # Lost the race: rename onto an existing non-empty directory fails; use the winner's copy.
        if not target.is_dir():
            raise


def build_dir_atomically(
    target: str | os.PathLike,
    build: Callable[[Path], None],
    *,
    replace: bool = False,
    is_main: bool = True,
    barrier: Callable[[], None] | None = None,
) -> Path:
    """Return `target`, a directory that `build(tmp_dir)` filled in a temporary sibling and that was renamed into
    place, so a reader sees nothing or a complete directory.

    replace=False: an existing `target` is returned as is (a cache entry) and `build` is not called. Each builder
    builds in its own private temporary directory; if another process renamed its build into place first, that
    one is kept and ours is discarded. Temporary directories of crashed builds older than six hours are swept.
    replace=True: an existing `target` (e.g. final/ of an earlier attempt) is replaced once the new build is
    complete.

    barrier: for one build shared by several processes (a checkpoint: each rank writes its own shards). The
    temporary directory then has a fixed name (`.tmp-<name>`) every process finds; the main process (`is_main`)
    creates it (removing a leftover of a crashed attempt) and renames it, every process calls `build`, and
    `barrier()` separates the phases. Without barrier, `is_main` must be true.

    Before the rename, files and directories inside get the modes the umask gives (see _apply_umask_modes). If
    `build` raises, the temporary directory is removed (by the main process) and `target` is untouched.
    """
    target = Path(target)
    if not replace and target.is_dir():
        return target
    parent = target.parent
    shared = barrier is not None
    if shared:
        tmp = parent / f"{_TMP_PREFIX}{target.name}"
        if is_main:
            _mkdir(parent)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        barrier()
    else:
        if not is_main:
            raise ValueError("build_dir_atomically: is_main=False needs a barrier (a build shared by processes)")
        _mkdir(parent)
        remove_temporaries(parent, older_than=_STALE_TMP_SECONDS)
        # mkdir, not mkdtemp (0o700): the directory gets the umask's mode, which _apply_umask_modes reads
        tmp = parent / f"{_TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
    try:
        build(tmp)
        if shared:
            barrier()
        if is_main:
            _apply_umask_modes(tmp)
            _commit(tmp, target, replace=replace)
    finally:
        if is_main and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if shared:
        barrier()
    return target


__all__ = [
    "build_dir_atomically",
    "cache_dir",
    "content_key",
    "data_fingerprint",
    "model_fingerprint",
    "remove_temporaries",
    "write_atomically",
    "write_bytes_atomically",
    "write_json_atomically",
    "write_jsonl_atomically",
    "write_text_atomically",
]
