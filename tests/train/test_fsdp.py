"""FSDP2 (alignlab.train.fsdp) on CPU with gloo, the accelerate configs in recipes/accelerate/, DeepSpeed where a GPU
and deepspeed exist, and fp16's refusal where accelerate cannot scale the loss.

- The output head and the input embeddings, read outside any forward, are the full matrices under sharding, and
  the chunked statistics and their gradients equal the unsharded ones (2 processes, torchrun).
- `accelerate launch --config_file recipes/accelerate/fsdp2.yaml --num_processes 2` trains DPO, TDPO2 (sharded
  reference, online KL) and IFT (embeddings fed) with the same losses as one process with the same global batch,
  to 1e-5; final/ loads with AutoModelForCausalLM; --resume from a sharded checkpoint continues as if never
  stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from alignlab.errors import ConfigError
from alignlab.train import fsdp
from alignlab.train.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "accelerate"
ACCELERATE = shutil.which("accelerate", path=os.path.dirname(sys.executable))
KEYS = ["max_steps=3", "limit=48", "max_length=64", "max_prompt_length=32", "eval_fraction=0.2", "warmup_steps=0",
        "learning_rate=1e-3", "tensorboard=false", "progress=false"]
_ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1"}


def _launch(cwd: Path, config: str | None, processes: int, method: str, *keys: str, resume: bool = False,
            fails: bool = False) -> subprocess.CompletedProcess:
    """`accelerate launch [--config_file recipes/accelerate/<config>] ... alignlab.cli train`; a run expected to
    fail must fail (torchrun turns the processes' exit code 2 into its own error) with an `alignlab:` line."""
    if ACCELERATE is None:
        pytest.skip("accelerate CLI not installed next to this interpreter")
    launch = ["--config_file", str(CONFIGS / config)] if config else ["--mixed_precision", "no", "--dynamo_backend",
                                                                    "no", "--num_machines", "1"]
    cmd = [ACCELERATE, "launch", *launch, "--num_processes", str(processes), "-m", "alignlab.cli", "train",
           "--config", str(ROOT / "recipes" / f"{method}.yaml"), *KEYS, *keys, *(["--resume"] if resume else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **_ENV}, timeout=900, cwd=cwd,
                         check=False)
    assert (out.returncode != 0) == fails, out.stdout[-2000:] + out.stderr[-4000:]
    assert not fails or "alignlab: " in out.stderr, out.stderr[-4000:]
    return out


def _losses(run: Path, key: str) -> list[float]:
    return [line[key] for line in read_metrics(run) if key in line]


# ------------------------------------------------------------------------------------------- configs
def test_accelerate_configs_parse_and_need_no_cuda():
    from accelerate.commands.config.config_args import load_config_from_file

    for name, kind in (("ddp", "MULTI_GPU"), ("fsdp2", "FSDP"), ("deepspeed_zero2", "DEEPSPEED"),
                       ("deepspeed_zero3", "DEEPSPEED")):
        loaded = load_config_from_file(str(CONFIGS / f"{name}.yaml"))  # accelerate's own reader: unknown keys fail
        assert loaded.distributed_type.value == kind and loaded.num_processes == 2 and not loaded.use_cpu
    raw = yaml.safe_load((CONFIGS / "fsdp2.yaml").read_text(encoding="utf-8"))
    assert raw["fsdp_config"]["fsdp_version"] == 2
    assert yaml.safe_load((CONFIGS / "deepspeed_zero3.yaml").read_text())["deepspeed_config"]["zero_stage"] == 3


def test_fsdp_version_1_is_refused(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        fsdp.requested()
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert fsdp.requested()
    monkeypatch.delenv("ACCELERATE_USE_FSDP")
    assert not fsdp.requested()


def test_resume_refuses_state_of_another_layout(tmp_path):
    from alignlab.train import train_state

    def meta(**values):
        (tmp_path / "state.json").write_text(json.dumps({
            "format": train_state.FORMAT, "world": 2, "sharded": True, "optimizer": True, "param_groups": [],
            "optimizer_scalars": {}, "scaler": None, **values}))

    meta()
    assert train_state.resume_problem(tmp_path, world=2, sharded=True) is None
    assert "resume with 2" in train_state.resume_problem(tmp_path, world=4, sharded=True)
    assert "under FSDP2" in train_state.resume_problem(tmp_path, world=1, sharded=False)
    meta(sharded=False, world=1)
    assert "without FSDP2" in train_state.resume_problem(tmp_path, world=2, sharded=True)
    assert train_state.resume_problem(tmp_path, world=1, sharded=False) is None
    assert "loss-scaler" in train_state.resume_problem(tmp_path, world=1, sharded=False, scaler=object())
    meta(sharded=False, optimizer=False)
    assert "DeepSpeed" in train_state.resume_problem(tmp_path, world=1, sharded=False)
    assert "missing" in train_state.resume_problem(tmp_path / "none", world=1, sharded=False)


# ------------------------------------------------------------------------------------------- fp16
def test_fp16_is_a_config_value_and_autocasts():
    from alignlab.train.config import load_config
    from alignlab.train.modeling import autocast

    assert load_config(overrides=["mixed_precision=fp16"]).model.mixed_precision == "fp16"
    a = torch.randn(4, 4)
    with autocast("fp16", torch.device("cpu")):
        assert (a @ a).dtype == torch.float16  # CPU autocast runs fp16 matmuls; what CPU lacks is a loss scaler
    with autocast("bf16", torch.device("cpu")):
        assert (a @ a).dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal")
def test_fp16_on_cpu_is_refused_in_one_line(small):
    from alignlab.train import Trainer
    from alignlab.train.config import load_config

    cfg = load_config(base=small("dpo", mixed_precision="fp16"))
    with pytest.raises(ConfigError, match=r"fp16 needs a GPU .*bf16") as err:
        Trainer(cfg)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------ the head under sharding
HEAD_CHECK = textwrap.dedent("""
    import copy, os, sys
    import torch, torch.distributed as dist
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    from alignlab.assets import load_model
    from alignlab.models import Trunk, check_input_embeddings, check_output_head, sequence_stats
    from alignlab.train import fsdp

    policy = load_model("alignlab/tiny-llama", seed=0)
    ref = load_model("alignlab/tiny-llama", seed=1)
    for model in (policy, ref):  # as the trainer does at load, before sharding (the checks run the model's forward)
        check_output_head(model)
        check_input_embeddings(model)
    plain, plain_ref = Trunk(copy.deepcopy(policy)), Trunk(copy.deepcopy(ref))
    sharded, sharded_ref = fsdp.shard(Trunk(policy)), fsdp.shard(Trunk(ref))
    assert type(sharded.lm.lm_head.weight).__name__ == "DTensor"      # sharded outside forward ...
    ids = torch.randint(0, 4096, (4, 24), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, :6] = -100
    # ... and read as the full matrices: before any forward, the root is gathered by head() / embed()
    head = sharded.head()
    assert type(head.weight).__name__ != "DTensor" and torch.equal(head.weight, plain.lm.lm_head.weight)
    assert torch.equal(sharded.embed(ids), plain.embed(ids))
    assert torch.equal(sharded_ref.head().weight, plain_ref.lm.lm_head.weight)

    def stats(trunk, ref_trunk):
        s = sequence_stats(trunk, ids, mask, labels, ref=ref_trunk, kl=True, chunk_size=16)
        (s.logps.sum() + 0.5 * s.kl.sum()).backward()
        return s

    want, got = stats(plain, plain_ref), stats(sharded, sharded_ref)
    for name in ("logps", "kl", "ref_logps"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-5, atol=1e-5)
    grads = {n.removeprefix("lm."): p.grad for n, p in plain.named_parameters()}
    # every process ran the same batch: the averaged, reduce-scattered gradient is the single-process one
    for n, p in sharded.named_parameters():
        full = p.grad.full_tensor()
        torch.testing.assert_close(full, grads[n.removeprefix("lm.")], rtol=1e-5, atol=1e-6, msg=n)
    assert type(sharded.lm.lm_head.weight).__name__ == "DTensor"      # resharded by the backward
    # the full state dict, gathered to the main process, is the unsharded model's
    full = fsdp.full_state_dict(sharded.lm)
    if dist.get_rank() == 0:
        for n, t in plain.lm.state_dict().items():
            assert torch.equal(full[n], t), n
    else:
        assert not full
    # sharded state round trip: save, disturb, load
    optimizer = torch.optim.AdamW([p for p in sharded.parameters()], lr=1e-3)
    optimizer.step()
    before = {n: p.detach().full_tensor().clone() for n, p in sharded.named_parameters()}
    moment = optimizer.state[optimizer.param_groups[0]["params"][0]]["exp_avg"].full_tensor().clone()
    out = sys.argv[1]
    from alignlab.train import train_state

    train_state.save(__import__("pathlib").Path(out), sharded, optimizer, rank=dist.get_rank(), world=2,
                     is_main=dist.get_rank() == 0, sharded=True)
    dist.barrier()
    optimizer.step()
    train_state.load(__import__("pathlib").Path(out), sharded, optimizer, rank=dist.get_rank(), world=2)
    for n, p in sharded.named_parameters():
        assert torch.equal(p.detach().full_tensor(), before[n]), n
    restored = optimizer.state[optimizer.param_groups[0]["params"][0]]["exp_avg"]
    assert type(restored).__name__ == "DTensor" and torch.equal(restored.full_tensor(), moment)
    print("ok", dist.get_rank())
""")


def test_head_and_embeddings_are_read_whole_under_sharding(tmp_path):
    script = tmp_path / "head_check.py"
    script.write_text(HEAD_CHECK, encoding="utf-8")
    env = {**os.environ, **_ENV, "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), str(tmp_path / "state")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "ok 0" in out.stdout and "ok 1" in out.stdout


# ----------------------------------------------------------------------------- end to end (accelerate launch)
@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "tdpo2", "ift"])
def test_fsdp2_two_processes_match_one(method, tmp_path):
    """Same global batch (8 = 8 x 1 process = 4 x 2 processes). The config works as written with one process too
    (no process group on a CPU-only machine: nothing to shard), which is the baseline."""
    _launch(tmp_path, "fsdp2.yaml", 1, method, "micro_batch_size=8", "run_dir=one")
    _launch(tmp_path, "fsdp2.yaml", 2, method, "micro_batch_size=4", "run_dir=two", "save_steps=2")
    one, two = tmp_path / "one", tmp_path / "two"
    assert len(_losses(one, "loss")) == 3 and _losses(one, "loss")[-1] < _losses(one, "loss")[0]
    assert _losses(two, "loss") == pytest.approx(_losses(one, "loss"), rel=0, abs=1e-5)
    assert _losses(two, "eval/loss") == pytest.approx(_losses(one, "eval/loss"), rel=0, abs=1e-5)
    # it really was sharded: each process wrote its shards; the checkpoint's manifest lists them
    state = two / "checkpoint-2" / "state"
    assert sorted(p.name for p in state.iterdir()) == sorted([
        *(f"{kind}-rank{r}-of-2.safetensors" for kind in ("model", "optimizer") for r in (0, 1)),
        "rng-rank0.safetensors", "rng-rank1.safetensors", "state.json"])
    from alignlab.train import checkpoint as ckpt

    assert ckpt.manifest_problem(two / "checkpoint-2") is None
    manifest = (two / "checkpoint-2" / "manifest.json").read_text()
    assert "state/model-rank1-of-2.safetensors" in manifest
    # final/ holds the full weights: AutoModelForCausalLM loads every tensor of the model
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(one / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(two / "final").state_dict()
    assert a.keys() == b.keys() and all(b[k].shape == a[k].shape and b[k].isfinite().all() for k in a)
    if method == "dpo":
        # and they are the weights DDP trains on the same 2-process batches. (Against one process they differ by
        # up to ~1e-3 after RMSprop's first steps, whose g / sqrt(mean g^2) turns the last-bit differences of a
        # 2-process reduction in near-zero gradients into full-size updates: DDP differs from one process alike.)
        _launch(tmp_path, "ddp.yaml", 2, method, "micro_batch_size=4", "run_dir=ddp")
        c = AutoModelForCausalLM.from_pretrained(tmp_path / "ddp" / "final").state_dict()
        for name in c:
            torch.testing.assert_close(b[name], c[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.slow
def test_fsdp2_resume_continues_as_if_never_stopped(tmp_path):
    _launch(tmp_path, "fsdp2.yaml", 2, "tdpo2", "micro_batch_size=4", "run_dir=whole")
    _launch(tmp_path, "fsdp2.yaml", 2, "tdpo2", "micro_batch_size=4", "run_dir=cut", "max_steps=2", "save_steps=1")
    _launch(tmp_path, "fsdp2.yaml", 2, "tdpo2", "micro_batch_size=4", "run_dir=cut", "save_steps=1", resume=True)
    whole, cut = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    # from checkpoint-1: steps 2 and 3 (and the final evaluation) again, equal to the uninterrupted run
    resumed = [line for line in cut if line["step"] >= 2][-3:]
    assert [line["step"] for line in resumed] == [2, 3, 3]
    for got, want in zip(resumed, [line for line in whole if line["step"] >= 2]):
        for key in ("loss", "grad_norm", "weight_norm", "eval/loss"):
            if key in want:
                assert got[key] == want[key], (key, got, want)
    # DDP cannot continue a checkpoint of FSDP2 shards: one line, before anything is written
    out = _launch(tmp_path, "ddp.yaml", 2, "tdpo2", "micro_batch_size=4", "run_dir=cut", "max_steps=4",
                  resume=True, fails=True)
    assert "checkpoint-2: it holds FSDP2 shards" in out.stderr
    # LoRA is not sharded yet: one line
    out = _launch(tmp_path, "fsdp2.yaml", 2, "tdpo2", "micro_batch_size=4", "run_dir=lora", "lora=true", fails=True)
    assert "lora: true is not supported with FSDP2" in out.stderr


# ----------------------------------------------------------------------------------------------- DeepSpeed
def _deepspeed_missing() -> str | None:
    if not torch.cuda.is_available():
        return "DeepSpeed needs a GPU: torch sees no CUDA device"
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        return "deepspeed is not installed (pip install deepspeed)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_deepspeed_missing() is not None, reason=str(_deepspeed_missing()))
def test_deepspeed_zero2_matches_one_process(tmp_path):
    processes = min(2, torch.cuda.device_count())
    micro = 8 // processes
    _launch(tmp_path, None, 1, "dpo", "micro_batch_size=8", "run_dir=one")
    _launch(tmp_path, "deepspeed_zero2.yaml", processes, "dpo", f"micro_batch_size={micro}", "run_dir=ds")
    assert _losses(tmp_path / "ds", "loss") == pytest.approx(_losses(tmp_path / "one", "loss"), rel=0, abs=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(_deepspeed_missing() is not None, reason=str(_deepspeed_missing()))
def test_deepspeed_zero3_is_refused_in_one_line(tmp_path):
    out = _launch(tmp_path, "deepspeed_zero3.yaml", min(2, torch.cuda.device_count()), "dpo", "micro_batch_size=4",
                  "run_dir=ds", fails=True)
    assert "ZeRO-3 partitions the output layer" in out.stderr
