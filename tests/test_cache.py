"""alignlab.cache: content keys, fingerprints, atomic file writes and atomic directory builds."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
import torch

from alignlab.cache import (
    build_dir_atomically,
    content_key,
    data_fingerprint,
    model_fingerprint,
    write_atomically,
    write_bytes_atomically,
    write_json_atomically,
    write_jsonl_atomically,
    write_text_atomically,
)


def _hidden(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------------- keys
def test_content_key_ignores_dict_order_but_not_values():
    a = {"model": "m", "data": {"x": 1, "y": [1, 2]}, "dtype": "float32"}
    b = {"dtype": "float32", "data": {"y": [1, 2], "x": 1}, "model": "m"}
    assert content_key(a) == content_key(b)
    assert len(content_key(a)) == 64
    assert content_key({**a, "dtype": "bfloat16"}) != content_key(a)
    assert content_key({"data": {"y": [2, 1], "x": 1}}) != content_key({"data": {"y": [1, 2], "x": 1}})
    assert content_key({"path": Path("/a")}) == content_key({"path": "/a"})  # non-JSON values hash as str()


def _model_dir(root: Path, name: str = "model") -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps({"hidden_size": 8}))
    (directory / "model.safetensors").write_bytes(b"\0" * 16)
    return directory


def test_model_fingerprint_tracks_weights_and_config(tmp_path):
    directory = _model_dir(tmp_path)
    before = model_fingerprint(directory)
    assert before is not None and model_fingerprint(str(directory)) == before
    (directory / "model.safetensors").write_bytes(b"\1" * 17)
    after_weights = model_fingerprint(directory)
    assert after_weights != before
    (directory / "config.json").write_text(json.dumps({"hidden_size": 16}))
    assert model_fingerprint(directory) != after_weights
    assert model_fingerprint("no-such-org/no-such-model") is None  # no local files: not cacheable


def test_lora_adapter_fingerprint_includes_its_base(tmp_path):
    base = _model_dir(tmp_path, "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 8)
    before = model_fingerprint(adapter)
    os.utime(base / "model.safetensors", ns=(1, 1))  # the base's weights change, the adapter's files do not
    assert model_fingerprint(adapter) != before
    other = _model_dir(tmp_path, "other-base")
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(other)}))
    moved = model_fingerprint(adapter)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    assert moved != model_fingerprint(adapter)


def test_self_referencing_adapter_does_not_recurse(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(adapter)}))
    assert model_fingerprint(adapter) is not None


def test_data_fingerprint_sees_ids_boundaries_and_settings():
    example = {"index": 0, "chosen_input_ids": [1, 2, 3], "chosen_labels": [-100, 2, 3],
               "rejected_input_ids": [1, 2], "rejected_labels": [-100, 2]}
    base = data_fingerprint([example], {"max_length": 8})
    assert data_fingerprint([dict(example)], {"max_length": 8}) == base
    assert data_fingerprint([example], {"max_length": 4}) != base
    # the same token stream split differently between chosen and rejected
    moved = {**example, "chosen_input_ids": [1, 2], "rejected_input_ids": [3, 1, 2]}
    assert data_fingerprint([moved], {"max_length": 8}) != base
    assert data_fingerprint([{**example, "alpha": 0.7}], {"max_length": 8}) != base


# ---------------------------------------------------------------------------------------------------- files
def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def half_then_crash(tmp: Path) -> None:
        tmp.write_text("half of the new")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        write_atomically(path, half_then_crash)
    assert path.read_text() == "old"
    assert _hidden(tmp_path) == []

    with pytest.raises(TypeError):  # an unserialisable record after a good one
        write_jsonl_atomically(path, [{"a": 1}, {"b": object()}])
    assert path.read_text() == "old"
    assert _hidden(tmp_path) == []


def test_atomic_writes_of_each_kind(tmp_path):
    assert write_text_atomically(tmp_path / "a.txt", "é") == tmp_path / "a.txt"
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "é"
    write_bytes_atomically(tmp_path / "b.bin", b"\0\1")
    assert (tmp_path / "b.bin").read_bytes() == b"\0\1"
    write_json_atomically(tmp_path / "nested" / "c.json", {"x": [1, 2]}, indent=1)  # parent is created
    assert json.loads((tmp_path / "nested" / "c.json").read_text()) == {"x": [1, 2]}
    write_jsonl_atomically(tmp_path / "d.jsonl", ({"i": i} for i in range(3)))
    assert [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()] == [{"i": i} for i in
                                                                                             range(3)]
    table = torch.arange(4, dtype=torch.float64)
    write_atomically(tmp_path / "t.pt", lambda tmp: torch.save(table, tmp))
    assert torch.equal(torch.load(tmp_path / "t.pt", weights_only=True), table)
    assert _hidden(tmp_path) == []


# ---------------------------------------------------------------------------------------------------- dirs
def test_two_concurrent_builders_end_with_one_complete_directory(tmp_path):
    target = tmp_path / "artefact"
    both_inside = threading.Barrier(2)
    results: list[Path] = []
    errors: list[BaseException] = []

    def build(tmp: Path) -> None:
        both_inside.wait(timeout=10)  # both have started before either renames
        (tmp / "who.txt").write_text(threading.current_thread().name)
        (tmp / "payload.txt").write_text("complete")

    def worker() -> None:
        try:
            results.append(build_dir_atomically(target, build))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, name=f"builder-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == [] and results == [target, target]
    assert sorted(p.name for p in target.iterdir()) == ["payload.txt", "who.txt"]
    assert (target / "who.txt").read_text() in {"builder-0", "builder-1"}
    assert _hidden(tmp_path) == []
    assert build_dir_atomically(target, lambda tmp: pytest.fail("an existing directory is not rebuilt")) == target


def test_failed_build_leaves_no_target_and_no_temp(tmp_path):
    def crash(tmp: Path) -> None:
        (tmp / "half").write_text("x")
        raise RuntimeError("crash mid-build")

    with pytest.raises(RuntimeError):
        build_dir_atomically(tmp_path / "t", crash)
    assert list(tmp_path.iterdir()) == []


def test_replace_swaps_in_the_new_directory_with_a_shared_barrier(tmp_path):
    target = tmp_path / "final"
    target.mkdir()
    (target / "old.txt").write_text("old")
    calls: list[str] = []

    def build(tmp: Path) -> None:
        assert tmp.name == ".tmp-final"  # the fixed name every process of a shared build finds
        calls.append("build")
        (tmp / "new.txt").write_text("new")

    build_dir_atomically(target, build, replace=True, barrier=lambda: calls.append("barrier"))
    assert calls == ["barrier", "build", "barrier", "barrier"]
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert list(tmp_path.iterdir()) == [target]


def test_non_main_process_builds_but_does_not_rename(tmp_path):
    target = tmp_path / "checkpoint-1"
    (tmp_path / ".tmp-checkpoint-1").mkdir()  # the main process created it before the first barrier

    build_dir_atomically(target, lambda tmp: (tmp / "shard-1").write_text("x"), is_main=False,
                         barrier=lambda: None)
    assert not target.exists() and (tmp_path / ".tmp-checkpoint-1" / "shard-1").is_file()
    with pytest.raises(ValueError, match="needs a barrier"):
        build_dir_atomically(tmp_path / "x", lambda tmp: None, is_main=False)
