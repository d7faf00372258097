"""The user cache for built artefacts: where it lives, content-hash keys, and atomic builds.

An artefact is a directory ``<cache_dir>/<kind>/<name>-<key>`` whose ``key`` hashes everything its bytes
depend on. It is built in a temporary sibling directory and renamed into place, so a reader sees either
nothing or a complete artefact. Two processes building the same artefact at once (e.g. ranks under
``accelerate launch``) each build privately; the first rename wins and the loser discards its copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tokenizers
import transformers

from alignlab.errors import AlignlabError

# Bump when a builder changes what it writes for the same inputs, so old cache entries are not reused.
BUILDER_VERSION = "1"

_TMP_PREFIX = ".tmp-"
# A temporary build directory older than this is left over from a crashed build and may be removed.
_STALE_TMP_SECONDS = 6 * 3600


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


def _major(version: str) -> str:
    return version.split(".")[0]


def content_key(payload: dict[str, Any]) -> str:
    """sha256 (hex) of ``payload`` plus the builder version and the transformers/tokenizers major versions.

    ``payload`` must be JSON-serialisable; bytes inputs (the corpus) should be passed as their own sha256.
    """
    full = {
        "payload": payload,
        "builder_version": BUILDER_VERSION,
        "transformers_major": _major(transformers.__version__),
        "tokenizers_major": _major(tokenizers.__version__),
    }
    blob = json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return hashlib.sha256(blob).hexdigest()


def _remove_stale_tmp(parent: Path) -> None:
    now = time.time()
    for entry in parent.glob(_TMP_PREFIX + "*"):
        try:
            if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Return ``target``, building it with ``build(tmp_dir)`` first if it does not exist.

    ``build`` writes the artefact's files into an empty temporary directory next to ``target``; the directory
    is then renamed onto ``target`` (atomic on POSIX within one filesystem). If ``build`` raises, the
    temporary directory is removed and ``target`` is untouched. If another process renamed its own build into
    place first, that one is kept and ours is discarded.
    """
    if target.is_dir():
        return target
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlignlabError(
            f"cannot create cache directory {parent}: {exc.strerror}; set ALIGNLAB_CACHE_DIR to a writable "
            "directory"
        ) from exc
    _remove_stale_tmp(parent)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{target.name}-", dir=parent))
    try:
        build(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; the cache may be shared read-only by others
        try:
            os.rename(tmp, target)
        except OSError:
            # Lost the race: rename onto an existing non-empty directory fails; use the winner's copy.
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
