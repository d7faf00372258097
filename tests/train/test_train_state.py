"""alignlab.train.train_state: a checkpoint's optimizer, loss-scaler and RNG states round-trip through safetensors and
JSON exactly, with tied weights stored once and nothing pickled."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from alignlab.train import train_state


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.head = nn.Linear(4, 11, bias=False)
        self.head.weight = self.embed.weight  # tied, as most causal LMs are
        self.norm = nn.LayerNorm(4)
        self.register_buffer("steps", torch.tensor([3.0]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(ids)))


def _trained(optimizer_cls: type, seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = _Tied()
    optimizer = optimizer_cls(model.parameters(), lr=1e-2)
    for _ in range(2):
        model(torch.arange(11)).logsumexp(-1).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


@pytest.mark.parametrize("optimizer_cls", [torch.optim.AdamW, torch.optim.RMSprop])
def test_round_trip_restores_weights_optimizer_and_rng_exactly(tmp_path, optimizer_cls):
    model, optimizer = _trained(optimizer_cls)
    random.seed(5), np.random.seed(6), torch.manual_seed(7)
    train_state.save(tmp_path, model, optimizer, rank=0, world=1, is_main=True, sharded=False)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    # what an uninterrupted run does next: one more step
    model(torch.arange(11)).logsumexp(-1).sum().backward()
    optimizer.step()
    want = {n: p.detach().clone() for n, p in model.named_parameters()}

    fresh, fresh_opt = _trained(optimizer_cls, seed=1)  # other weights and moments
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    assert train_state.resume_problem(tmp_path, world=1, sharded=False) is None
    train_state.load(tmp_path, fresh, fresh_opt, rank=0, world=1)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])
    assert fresh.head.weight is fresh.embed.weight and torch.equal(fresh.steps, torch.tensor([3.0]))
    fresh(torch.arange(11)).logsumexp(-1).sum().backward()
    fresh_opt.step()
    for n, p in fresh.named_parameters():
        assert torch.equal(p, want[n]), n
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng-rank0.safetensors", "state.json"]


def test_loss_scaler_state_is_json(tmp_path):
    model, optimizer = _trained(torch.optim.AdamW)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    scaler._lazy_init_scale_growth_tracker(torch.device("cpu"))
    scaler.update(new_scale=256.0)
    train_state.save(tmp_path, model, optimizer, rank=0, world=1, is_main=True, sharded=False, scaler=scaler)
    assert json.loads((tmp_path / "state.json").read_text())["scaler"]["scale"] == 256.0
    other = torch.amp.GradScaler("cpu", init_scale=2.0)
    train_state.load(tmp_path, model, optimizer, rank=0, world=1, scaler=other)
    assert other.get_scale() == 256.0 and other.get_growth_interval() == 7
    assert "loss-scaler" in train_state.resume_problem(tmp_path, world=1, sharded=False)


def test_other_ranks_write_only_their_rng_state(tmp_path):
    model, optimizer = _trained(torch.optim.AdamW)
    train_state.save(tmp_path, model, optimizer, rank=1, world=2, is_main=False, sharded=False)
    assert [p.name for p in tmp_path.iterdir()] == ["rng-rank1.safetensors"]


def test_a_deepspeed_checkpoint_is_not_resumable(tmp_path):
    model, _ = _trained(torch.optim.AdamW)
    train_state.save(tmp_path, model, None, rank=0, world=1, is_main=True, sharded=False)
    assert "DeepSpeed" in train_state.resume_problem(tmp_path, world=1, sharded=False)


def test_the_running_optimizers_kernel_wins_over_the_saved_one(tmp_path):
    """A checkpoint written by AdamW's per-tensor loop resumes on the fused kernel the run asked for (and the
    reverse), with the same moments: which kernel steps is the run's choice, not the checkpoint's."""
    model, optimizer = _trained(torch.optim.AdamW)  # the per-tensor loop (fused None)
    train_state.save(tmp_path, model, optimizer, rank=0, world=1, is_main=True, sharded=False)
    fresh = _Tied()
    fused = torch.optim.AdamW(fresh.parameters(), lr=1e-2, fused=True)
    train_state.load(tmp_path, fresh, fused, rank=0, world=1)
    assert fused.param_groups[0]["fused"] is True
    for a, b in zip(optimizer.state.values(), fused.state.values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and float(a["step"]) == float(b["step"])
    fresh(torch.arange(11)).logsumexp(-1).sum().backward()
    fused.step()  # the fused kernel takes the loaded state as it is
