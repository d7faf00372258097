"""Fixtures for the assets tests: one offline cache per test session, and no hub access."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache directory shared by the session, so the tokenizer and each built-in model are built once."""
    path = tmp_path_factory.mktemp("alignlab-cache")
    old = os.environ.get("ALIGNLAB_CACHE_DIR")
    os.environ["ALIGNLAB_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ALIGNLAB_CACHE_DIR", None)
    else:
        os.environ["ALIGNLAB_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _offline_cache(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test sees the session cache and an offline hub, even if a test changed the environment."""
    monkeypatch.setenv("ALIGNLAB_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return session_cache


@pytest.fixture(scope="session")
def tokenizer(session_cache: Path):
    """The offline tokenizer, loaded from the session cache."""
    from alignlab.assets import load_tokenizer

    return load_tokenizer()
