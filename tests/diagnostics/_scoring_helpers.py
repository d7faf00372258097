"""Helpers for the scoring / diagnose / callback tests: the tiny model, perturbed copies, sample pairs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from alignlab.assets import load_model, load_tokenizer
from alignlab.data import SAMPLES_DIR, load_preference_data

PAIRS = SAMPLES_DIR / "pairs.jsonl"


def tiny_model() -> torch.nn.Module:
    return load_model("alignlab/tiny-llama")


def perturbed(model: torch.nn.Module, *, scale: float = 0.02, seed: int = 1) -> torch.nn.Module:
    """A copy of `model` with seeded Gaussian noise added to every parameter."""
    other = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return other


def save_model(model: torch.nn.Module, directory: Path) -> Path:
    """save_pretrained with the offline tokenizer next to it (a complete Hugging Face model directory)."""
    model.save_pretrained(directory)
    load_tokenizer().save_pretrained(directory)
    return directory


def sample_examples(n: int, *, source: Path = PAIRS) -> list[dict]:
    examples, _ = load_preference_data(str(source), load_tokenizer())
    return examples[:n]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
