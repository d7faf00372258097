import json

import pytest

from alignlab.assets import load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    """The offline byte-level BPE tokenizer (eos <|endoftext|>, pad <|pad|>, no chat template)."""
    return load_tokenizer()


@pytest.fixture
def write_jsonl(tmp_path):
    """Write records (dicts, or raw str/bytes lines) to a .jsonl file in tmp_path; returns the path."""

    def write(records, name="data.jsonl"):
        path = tmp_path / name
        lines = []
        for r in records:
            if isinstance(r, bytes):
                lines.append(r)
            elif isinstance(r, str):
                lines.append(r.encode("utf-8"))
            else:
                lines.append(json.dumps(r, ensure_ascii=False).encode("utf-8"))
        path.write_bytes(b"\n".join(lines) + b"\n")
        return path

    return write
