"""Cache location, content-hash keys and atomic, race-safe builds."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from alignlab.assets import _cache, cache_dir, model_path, tokenizer_path
from alignlab.assets import models as models_mod
from alignlab.assets import tokenizer as tokenizer_mod
from alignlab.assets._cache import artefact_key
from alignlab.assets.models import model_key
from alignlab.assets.tokenizer import tokenizer_key
from alignlab.cache import _STALE_TMP_SECONDS
from alignlab.cache import build_dir_atomically as build_atomically


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ALIGNLAB_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("ALIGNLAB_CACHE_DIR")
    assert cache_dir() == tmp_path / "xdg" / "alignlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "alignlab"


def test_artefacts_live_under_cache_dir(session_cache: Path) -> None:
    assert tokenizer_path().parent.parent == session_cache
    assert model_path().parent.parent == session_cache


def test_keys_change_with_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    base = model_key("alignlab/tiny-llama")
    assert model_key("alignlab/tiny-llama") == base
    assert model_key("alignlab/tiny-llama", seed=1) != base
    assert model_key("alignlab/tiny-gpt2") != base
    assert model_key("alignlab/tiny-llama", vocab_size=2048) != base
    assert tokenizer_key(2048) != tokenizer_key()

    # A different architecture config (one field) gives a different key.
    original = models_mod._CONFIG_FACTORIES["alignlab/tiny-llama"]

    def wider(*args: int):
        cfg = original(*args)
        cfg.intermediate_size = 1024
        return cfg

    monkeypatch.setitem(models_mod._CONFIG_FACTORIES, "alignlab/tiny-llama", wider)
    assert model_key("alignlab/tiny-llama") != base
    monkeypatch.setitem(models_mod._CONFIG_FACTORIES, "alignlab/tiny-llama", original)

    # Corpus bytes, builder version and library versions are all part of the key.
    tok_base = tokenizer_key()
    monkeypatch.setattr(tokenizer_mod, "corpus_bytes", lambda: b"another corpus")
    assert tokenizer_key() != tok_base
    monkeypatch.undo()
    monkeypatch.setattr(_cache, "BUILDER_VERSION", "test-bump")
    assert tokenizer_key() != tok_base
    monkeypatch.undo()
    key = artefact_key({"a": 1})
    assert artefact_key({"a": 2}) != key
    monkeypatch.setattr(_cache.transformers, "__version__", "999.0.0")
    assert artefact_key({"a": 1}) != key
    monkeypatch.undo()
    monkeypatch.setattr(_cache.tokenizers, "__version__", "999.0.0")
    assert artefact_key({"a": 1}) != key
    monkeypatch.undo()
    # Minor/patch releases of the libraries keep the key (only major versions are hashed).
    major = _cache.transformers.__version__.split(".")[0]
    monkeypatch.setattr(_cache.transformers, "__version__", f"{major}.9999.1")
    assert artefact_key({"a": 1}) == key


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".tmp-")]


def test_successful_build_leaves_no_temp_dir(tmp_path: Path) -> None:
    target = tmp_path / "kind" / "thing-abc"
    calls = []

    def build(tmp: Path) -> None:
        calls.append(tmp)
        (tmp / "data.txt").write_text("ok")

    assert build_atomically(target, build) == target
    assert (target / "data.txt").read_text() == "ok"
    assert _leftovers(target.parent) == []
    build_atomically(target, build)  # cached: not rebuilt
    assert len(calls) == 1


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "thing"

    def build(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"\0" * 10)
        raise RuntimeError("crash mid-build")

    with pytest.raises(RuntimeError, match="crash mid-build"):
        build_atomically(target, build)
    assert not target.exists()
    assert _leftovers(tmp_path) == []


def test_concurrent_builders_keep_one_complete_copy(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    barrier = threading.Barrier(2)
    results: list[Path] = []

    def build(tmp: Path) -> None:
        barrier.wait(timeout=10)  # both are inside build before either renames
        (tmp / "who.txt").write_text(threading.current_thread().name)
        (tmp / "payload.txt").write_text("complete")

    def worker() -> None:
        results.append(build_atomically(target, build))

    threads = [threading.Thread(target=worker, name=f"builder-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert results == [target, target]
    assert (target / "payload.txt").read_text() == "complete"
    assert (target / "who.txt").read_text() in {"builder-0", "builder-1"}
    assert _leftovers(tmp_path) == []


def test_stale_temp_dirs_are_swept(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-old-crash"
    fresh = tmp_path / ".tmp-in-progress"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - 2 * _STALE_TMP_SECONDS
    os.utime(stale, (old, old))
    build_atomically(tmp_path / "new", lambda tmp: (tmp / "f").write_text("x"))
    assert not stale.exists()
    assert fresh.exists()  # may belong to a live builder in another process
