"""The trainer with prefix sharing and packing: the same per-step losses, metrics, gradients and evaluation as
with padded batches, for every kind of method; batch x accumulation x layout invariance; a model that cannot
run packed rows falls back with one line.

The options are set on the config's model section directly until the config defines them (prefix_sharing,
packing, packing_tokens)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from alignlab.data import SAMPLES_DIR
from alignlab.train import Trainer, load_config
from tests.models.families import tiny_model

PADDED = {"prefix_sharing": False, "packing": False}
SHARED_PACKED = {"prefix_sharing": True, "packing": True, "packing_tokens": 192}
PACKED = {"prefix_sharing": False, "packing": True, "packing_tokens": 160}
# metrics that are timings, not values
NOT_COMPARED = {"tokens_per_s"}


def _trainer(base: dict, layout: dict, **kwargs) -> Trainer:
    return Trainer(load_config(base={**base, **layout}), **kwargs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from alignlab.assets import load_tokenizer

    tokenizer = load_tokenizer("alignlab/tiny-llama")
    root = tmp_path_factory.mktemp("packing-families")
    paths = {}
    for family in ("qwen2", "gemma2", "gpt2", "falcon_h1"):
        tiny_model(family).save_pretrained(root / family)
        tokenizer.save_pretrained(root / family)
        paths[family] = str(root / family)
    return paths


def _base(small, method, **extra):
    paired = method not in ("sft", "ift", "kto")
    base = small(method, **{"limit": 24, "eval_fraction": 0.25, "max_length": 96, "max_prompt_length": 48,
                            "chunk_size": 16, "max_steps": 2, **extra})
    if paired:  # long shared prompts
        base["train_data"] = str(SAMPLES_DIR / "pairs_hh.jsonl")
    return base


def _grads(trainer: Trainer) -> dict[str, torch.Tensor]:
    out = trainer.accumulate_gradients(0)
    grads = {n: p.grad.detach().clone() for n, p in trainer.policy.named_parameters() if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    return grads, out["loss_sum"]


def _assert_same_run(padded: Trainer, packed: Trainer, rtol: float = 1e-5, after_update: float = 2e-4) -> None:
    """Step-0 loss and gradients and the first step's metrics agree to rtol; the second step's metrics and the
    evaluation after it to `after_update`: AdamW's first update is about lr * sign(gradient) per coordinate, so
    coordinates whose gradient is rounding noise (fp32 summation order) move by +-lr either way."""
    assert packed.packed_rows and not padded.packed_rows
    (g_padded, loss_padded), (g_packed, loss_packed) = _grads(padded), _grads(packed)
    torch.testing.assert_close(loss_packed, loss_padded, rtol=rtol, atol=rtol)
    scale = max(float(g.abs().max()) for g in g_padded.values())
    assert g_padded.keys() == g_packed.keys() and g_padded
    for name, g in g_padded.items():
        torch.testing.assert_close(g_packed[name], g, rtol=rtol, atol=rtol * scale, msg=name)
    for step, tol in ((0, rtol), (1, after_update)):
        want, got = padded.train_step(step), packed.train_step(step)
        assert want.keys() == got.keys()
        for key in want.keys() - NOT_COMPARED:
            if isinstance(want[key], float):
                assert got[key] == pytest.approx(want[key], rel=tol, abs=tol, nan_ok=True), (step, key)
    want, got = padded.evaluate(2), packed.evaluate(2)
    assert want.keys() == got.keys() and want
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=after_update, abs=after_update, nan_ok=True), key


CASES = [  # (method, layout, extra config): every paired method shares prompts; KTO, SFT and IFT pack
    ("dpo", SHARED_PACKED, {}),
    ("dpo", {"prefix_sharing": True, "packing": False}, {}),
    ("dpo", PACKED, {}),
    ("ipo", SHARED_PACKED, {}),
    ("cdpo", SHARED_PACKED, {"label_smoothing": 0.1}),
    ("fdpo", SHARED_PACKED, {}),
    ("tdpo2", SHARED_PACKED, {}),
    ("tdpo1", SHARED_PACKED, {}),
    ("simpo", SHARED_PACKED, {}),
    ("orpo", SHARED_PACKED, {"orpo_nll_normalization": "batch_token_mean"}),  # the step's chosen tokens
    ("cpo", SHARED_PACKED, {}),
    ("dpo", SHARED_PACKED, {"rpo_alpha": 1.0}),
    ("dpo", SHARED_PACKED, {"ld_alpha": 0.5}),  # LD-DPO: per-token log-probs of both models
    ("dpo", SHARED_PACKED, {"use_weighting": True}),  # WPO: log sum p^2
    ("kto", PACKED, {}),
    ("sft", PACKED, {}),
    ("ift", PACKED, {"ift_lambda": 0.5}),
    ("tdpo2", SHARED_PACKED, {"lora": True}),
    ("dpo", SHARED_PACKED, {"precompute_ref_logps": True}),
    ("tdpo2", SHARED_PACKED, {"gradient_checkpointing": True}),  # the block mask through recomputed layers
]


# the fast suite keeps one case per kind of layout and loss (pair shared+packed with and without the token KL,
# packed only, unpaired, single sequences, IFT's mixed inputs); `pytest -m slow` runs them all
FAST = {0, 2, 6, 14, 15, 16}


@pytest.mark.parametrize(("method", "layout", "extra"), [
    pytest.param(*case, marks=() if i in FAST else pytest.mark.slow,
                 id=f"{case[0]}-{'+'.join(k for k, v in case[1].items() if v is True)}-{'-'.join(case[2]) or 'plain'}")
    for i, case in enumerate(CASES)])
def test_every_method_trains_alike_on_packed_rows(method, layout, extra, small, tmp_path):
    if extra.get("precompute_ref_logps"):
        extra = {**extra, "ref_cache_dir": str(tmp_path / "ref-cache")}
    base = _base(small, method, **extra)
    padded = _trainer({**base, "run_dir": str(tmp_path / "padded")}, PADDED)
    packed = _trainer({**base, "run_dir": str(tmp_path / "packed")}, layout)
    batch = packed.collate([packed.train_examples[i] for i in packed.step_positions(0)[0]], packed.pad_id)
    assert "packed_input_ids" in batch
    if layout.get("prefix_sharing"):
        assert int(batch["packed_branch_ids"].max()) == 2
    _assert_same_run(padded, packed)


@pytest.mark.parametrize(("family", "method"), [
    pytest.param(f, m, marks=() if (f, m) in {("gemma2", "tdpo2"), ("gpt2", "sft")} else pytest.mark.slow)
    for f in ("qwen2", "gemma2", "gpt2") for m in ("dpo", "tdpo2", "sft")])
def test_families_train_alike_on_packed_rows(family, method, saved, small, tmp_path):
    """Qwen2, Gemma-2 (soft-capped head, sliding-window layers, eager attention) and GPT-2 (learned absolute
    positions: packed positions must restart)."""
    base = _base(small, method, model=saved[family])
    layout = PACKED if method == "sft" else SHARED_PACKED
    padded = _trainer({**base, "run_dir": str(tmp_path / "padded")}, PADDED)
    packed = _trainer({**base, "run_dir": str(tmp_path / "packed")}, layout)
    _assert_same_run(padded, packed)


@pytest.mark.parametrize(("method", "layout", "extra"), [("tdpo2", SHARED_PACKED, {}),
                                                      ("sft", PACKED, {"sft_normalization": "token_mean"})])
def test_batch_accumulation_and_layout_give_one_gradient(method, layout, extra, small):
    """8 x 1 and 4 x 2, padded and packed: one gradient (TDPO2: log-ratios and per-token KL over pairs; SFT
    normalised by the step's tokens)."""
    runs = {}
    for micro, accumulation in ((8, 1), (4, 2)):
        for name, layout_keys in (("padded", PADDED), ("packed", layout)):
            base = _base(small, method, micro_batch_size=micro, gradient_accumulation_steps=accumulation,
                         eval_fraction=0.0, **extra)
            base["run_dir"] += f"-{micro}x{accumulation}-{name}"
            runs[(micro, name)] = _grads(_trainer(base, layout_keys))[0]
    want = runs[(8, "padded")]
    for key, grads in runs.items():
        assert grads.keys() == want.keys()
        for name, g in want.items():
            torch.testing.assert_close(grads[name], g, rtol=1e-6, atol=1e-6, msg=f"{key} {name}")


def test_a_model_that_cannot_run_packed_rows_falls_back_with_one_line(saved, small):
    """Falcon-H1's Mamba layers carry state across a row: padded batches, and one line saying why."""
    lines: list[str] = []
    base = _base(small, "dpo", model=saved["falcon_h1"], eval_fraction=0.0)
    trainer = _trainer(base, SHARED_PACKED, console=SimpleNamespace(print=lines.append))
    fallback = [line for line in lines if "off (padded batches)" in line]
    assert len(fallback) == 1 and "prefix sharing and packing" in fallback[0] and "hybrid" in fallback[0]
    assert not trainer.packed_rows
    batch = trainer.collate([trainer.train_examples[i] for i in trainer.step_positions(0)[0]], trainer.pad_id)
    assert "packed_input_ids" not in batch
    assert trainer.train_step(0)["loss"] == pytest.approx(math.log(2), abs=1e-5)
