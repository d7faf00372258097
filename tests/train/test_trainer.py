"""Trainer behaviour on the tiny offline model: every method learns, accumulation invariance, resume,
interrupted checkpoints, precomputed reference, LoRA, IFT == SFT at lambda = gamma = 0."""

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignlab.errors import ConfigError
from alignlab.ops import DEFAULT_CHUNK_BYTES
from alignlab.train import Trainer, load_config, train
from alignlab.train import checkpoint as ckpt
from alignlab.train.metrics import read_metrics

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
METHODS = ["sft", "ift", "dpo", "ipo", "cdpo", "fdpo", "tdpo1", "tdpo2", "simpo", "orpo", "cpo", "kto"]


@pytest.mark.parametrize("method", METHODS)
def test_every_recipe_trains_and_loss_goes_down(method, tmp_path):
    cfg = load_config(RECIPES / f"{method}.yaml", [f"run_dir={tmp_path / method}", "max_steps=8", "limit=40",
                                                   "micro_batch_size=4", "max_length=64", "max_prompt_length=32",
                                                   "tensorboard=false", "progress=false", "eval_fraction=0.2"])
    result = train(cfg)
    before, after = result.eval_before["eval/loss"], result.eval_after["eval/loss"]
    assert math.isfinite(after) and after < before, (before, after)
    if method in ("dpo", "cdpo", "fdpo", "tdpo1", "tdpo2"):
        assert before == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at step 0
    if method == "kto":
        assert before == pytest.approx(0.5, abs=1e-5)  # r = z0 = 0 at step 0: 1 - sigma(0) per example
    lines = read_metrics(result.run_dir)
    assert sum("loss" in line for line in lines) == 8
    model = AutoModelForCausalLM.from_pretrained(result.run_dir / "final")
    assert model.config.vocab_size > 0


def _grads(cfg_dict):
    trainer = Trainer(load_config(base=cfg_dict))
    trainer.accumulate_gradients(0)
    return {n: p.grad.detach().clone() for n, p in trainer.policy.named_parameters() if p.grad is not None}, trainer


@pytest.mark.parametrize("method,extra", [("dpo", {}), ("tdpo2", {}), ("simpo", {}),
                                          ("sft", {"sft_normalization": "token_mean"}), ("ift", {}),
                                          ("orpo", {"orpo_nll_normalization": "batch_token_mean"}),
                                          ("cpo", {}), ("dpo", {"rpo_alpha": 1.0}),
                                          ("dpo", {"loss_type": ["hinge", "sft"], "loss_weights": [1.0, 0.5]})])
def test_batch_8x1_equals_4x2(method, extra, small):
    g1, t1 = _grads(small(method, micro_batch_size=8, gradient_accumulation_steps=1, **extra))
    g2, t2 = _grads(small(method, micro_batch_size=4, gradient_accumulation_steps=2, **extra))
    assert sorted(t1.step_positions(0)[0]) == sorted(p for micro in t2.step_positions(0) for p in micro)
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-6, atol=1e-6, msg=name)


class _Stop(Exception):
    pass


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_resume_is_bitwise_identical(small, tmp_path, monkeypatch):
    keys = {"lr_scheduler": "linear", "warmup_steps": 2, "max_steps": 6, "save_steps": 2, "optimizer": "adamw"}
    full = Trainer(load_config(base=small("dpo", run_dir=str(tmp_path / "full"), **keys)))
    full.train()
    expected = _params(full.policy)

    interrupted = Trainer(load_config(base=small("dpo", run_dir=str(tmp_path / "cut"), **keys)))
    original = Trainer.train_step

    def stop_at_5(self, step):
        if step == 4:
            raise _Stop()
        return original(self, step)

    monkeypatch.setattr(Trainer, "train_step", stop_at_5)
    with pytest.raises(_Stop):
        interrupted.train()
    monkeypatch.setattr(Trainer, "train_step", original)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "cut")] == [2, 4]
    resumed = Trainer(load_config(base=small("dpo", run_dir=str(tmp_path / "cut"), **keys)), resume=True)
    resumed.train()
    got = _params(resumed.policy)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    steps = [line["step"] for line in read_metrics(tmp_path / "cut") if "loss" in line]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_restores_the_rng_so_dropout_draws_the_same_masks(small, tmp_path, monkeypatch):
    """SFT keeps the model's dropout (tiny-gpt2 has it): the resumed run is bitwise the uninterrupted one only
    because the checkpoint restored the RNG states, as the same resume without them shows."""
    from alignlab.train import train_state

    keys = {"model": "alignlab/tiny-gpt2", "learning_rate": 1e-3, "max_steps": 4, "save_steps": 2}
    full = Trainer(load_config(base=small("sft", run_dir=str(tmp_path / "full"), **keys)))
    full.train()
    expected = _params(full.policy)
    original = Trainer.train_step

    def resumed(run: str) -> dict[str, torch.Tensor]:
        def stop_at_3(self, step):
            if step == 2:
                raise _Stop()
            return original(self, step)

        monkeypatch.setattr(Trainer, "train_step", stop_at_3)
        with pytest.raises(_Stop):
            Trainer(load_config(base=small("sft", run_dir=str(tmp_path / run), **keys))).train()
        monkeypatch.setattr(Trainer, "train_step", original)
        trainer = Trainer(load_config(base=small("sft", run_dir=str(tmp_path / run), **keys)), resume=True)
        trainer.train()
        return _params(trainer.policy)

    got = resumed("cut")
    assert all(torch.equal(got[name], value) for name, value in expected.items())
    monkeypatch.setattr(train_state, "_set_rng_state", lambda tensors, meta: None)
    unrestored = resumed("cut-without-rng")
    assert not all(torch.equal(unrestored[name], value) for name, value in expected.items())


def test_resume_rejects_changed_config(small, tmp_path):
    base = small("dpo", max_steps=2, save_steps=1)
    train(load_config(base=base))
    with pytest.raises(Exception, match="config key 'beta'"):
        Trainer(load_config(base={**base, "beta": 0.3}), resume=True).train()


def test_existing_run_dir_needs_resume(small):
    base = small("sft", max_steps=2, save_steps=1)
    train(load_config(base=base))
    with pytest.raises(Exception, match="--resume"):
        train(load_config(base=base))


def test_interrupted_checkpoint_leaves_previous_loadable(small, tmp_path, monkeypatch):
    cfg = load_config(base=small("dpo", max_steps=4, save_steps=2))
    trainer = Trainer(cfg)
    real_save = type(trainer.tokenizer).save_pretrained
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies mid-write, after the model weights were written
            raise OSError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(type(trainer.tokenizer), "save_pretrained", flaky)
    with pytest.raises(OSError):
        trainer.train()
    run = Path(cfg.run.run_dir)
    assert ckpt.latest_checkpoint(run) == run / "checkpoint-2"
    assert not (run / "checkpoint-4").exists()
    AutoModelForCausalLM.from_pretrained(run / "checkpoint-2")
    assert ckpt.read_state(run / "checkpoint-2")["step"] == 2


def test_keep_last_n(small):
    result = train(load_config(base=small("sft", max_steps=4, save_steps=1, save_total_limit=2)))
    assert [s for s, _ in ckpt.list_checkpoints(result.run_dir)] == [2, 3]
    assert (result.run_dir / "final" / "model.safetensors").is_file()


def test_precomputed_reference_matches_online_and_is_reused(small, tmp_path, capsys):
    from rich.console import Console

    cache = str(tmp_path / "refcache")
    online = train(load_config(base=small("dpo", max_steps=3, run_dir=str(tmp_path / "a"))))
    pre = small("dpo", max_steps=3, precompute_ref_logps=True, ref_cache_dir=cache, run_dir=str(tmp_path / "b"))
    first = train(load_config(base=pre), console=Console())
    assert "computed and cached" in capsys.readouterr().out
    a = [line["loss"] for line in read_metrics(online.run_dir) if "loss" in line]
    b = [line["loss"] for line in read_metrics(first.run_dir) if "loss" in line]
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    trainer = Trainer(load_config(base={**pre, "run_dir": str(tmp_path / "c")}), console=Console())
    assert "reused from" in capsys.readouterr().out
    assert trainer.ref_model is None  # the reference is never loaded when the cache is valid


def test_lora_reference_is_the_policy_with_adapters_disabled(small):
    pytest.importorskip("peft")
    cfg = load_config(base=small("dpo", lora=True, lora_r=4, max_steps=3, learning_rate=1e-3, save_steps=3))
    trainer = Trainer(cfg)
    assert trainer.ref_model is None
    result = trainer.train()
    losses = [line["loss"] for line in read_metrics(result.run_dir) if "loss" in line]
    assert losses[0] == pytest.approx(math.log(2), abs=1e-5)
    assert (result.run_dir / "final" / "adapter_config.json").is_file()
    merged = train(load_config(base={**small("dpo", lora=True, lora_r=4, max_steps=1, save_merged=True),
                                     "run_dir": str(Path(cfg.run.run_dir) / "merged")}))
    AutoModelForCausalLM.from_pretrained(merged.run_dir / "final")


def test_ift_with_zero_lambda_and_gamma_is_sft(small):
    ift_cfg = small("ift", ift_lambda=0.0, ift_gamma=0.0)
    sft_cfg = small("sft", freeze_input_embeddings=True, disable_dropout=True, sft_normalization="seq_mean")
    g_ift, _ = _grads(ift_cfg)
    g_sft, _ = _grads(sft_cfg)
    assert g_ift.keys() == g_sft.keys()
    for name in g_ift:
        torch.testing.assert_close(g_ift[name], g_sft[name], rtol=1e-6, atol=1e-7, msg=name)
    assert "model.embed_tokens.weight" not in g_ift  # the frozen copy feeds the input embeddings


def test_ift_first_pass_changes_inputs_only_on_response(small):
    g_default, _ = _grads(small("ift"))
    g_plain, _ = _grads(small("ift", ift_lambda=0.0))
    assert any(not torch.allclose(g_default[n], g_plain[n]) for n in g_default)


def test_metrics_file_has_the_promised_keys(small):
    result = train(load_config(base=small("tdpo2", max_steps=2, eval_fraction=0.2)))
    lines = read_metrics(result.run_dir)
    step = next(line for line in lines if "loss" in line)
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "rewards/chosen", "rewards/rejected", "rewards/margins",
                "rewards/accuracies", "rewards/dpo_accuracy", "logps/chosen", "logps/rejected", "ranking/accuracy",
                "ranking/accuracy_normalized", "kl/chosen", "kl/rejected", "kl/margin"):
        assert key in step, key
    evals = [line for line in lines if "eval/loss" in line]
    assert len(evals) == 2 and "eval/kl/sequence" in evals[0] and "eval/kl_reverse/chosen" in evals[0]
    json.dumps(lines)


def test_precomputed_reference_serves_evaluation_and_flip_scoring(small, tmp_path):
    cfg = small("dpo", max_steps=2, precompute_ref_logps=True, ref_cache_dir=str(tmp_path / "rc"), eval_fraction=0.25)
    trainer = Trainer(load_config(base=cfg))
    result = trainer.train()
    assert result.eval_before["eval/loss"] == pytest.approx(math.log(2), abs=1e-5)
    scores = trainer.score_pairs(trainer.train_examples[:5])
    assert torch.isfinite(scores["ref_chosen_logps"]).all() and torch.isfinite(scores["ref_rejected_logps"]).all()


@pytest.mark.parametrize("keys", [{"mixed_precision": "bf16"}, {"dtype": "bfloat16", "mixed_precision": "bf16"},
                                  {"dtype": "bfloat16"}, {"gradient_checkpointing": True, "mixed_precision": "bf16"}])
@pytest.mark.parametrize("method", ["tdpo2", "ift"])
def test_bf16_and_checkpointing_train(method, keys, small):
    result = train(load_config(base=small(method, max_steps=2, eval_fraction=0.25, **keys)))
    assert math.isfinite(result.eval_after["eval/loss"])


def test_fresh_run_refuses_a_finished_run_dir(small):
    base = small("sft", max_steps=1)
    train(load_config(base=base))  # leaves final/ and metrics.jsonl, no checkpoint-*
    with pytest.raises(Exception, match="already holds a run"):
        train(load_config(base=base))


def test_eval_split_and_epoch_order_keep_prompts_together(small):
    from alignlab.train.trainer import _prompt_groups

    trainer = Trainer(load_config(base=small("dpo", limit=None, eval_fraction=0.2)))
    train_prompts = {tuple(ex["prompt_input_ids"]) for ex in trainer.train_examples}
    eval_prompts = {tuple(ex["prompt_input_ids"]) for ex in trainer.eval_examples}
    assert eval_prompts and not train_prompts & eval_prompts
    groups = _prompt_groups(trainer.train_examples)
    order = [p for step in range(trainer.steps_per_epoch) for micro in trainer.step_positions(step) for p in micro]
    assert len(order) == len(set(order))
    group_of = {p: g for g, members in enumerate(groups) for p in members}
    runs = [group_of[p] for p in order]
    assert sum(a != b for a, b in itertools.pairwise(runs)) <= len(groups)  # each prompt's pairs form one run


LOSS_TYPES = ["hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot", "aot_unpaired",
              "apo_zero", "apo_down", "discopop", "sigmoid_norm", "sft", "[sigmoid, sft]"]


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_every_dpo_loss_type_trains_from_the_dpo_recipe(loss_type, tmp_path):
    """recipes/dpo.yaml with `loss_type=...` (TRL's names) trains and its held-out loss goes down."""
    extra = ["label_smoothing=0.1"] if loss_type in ("exo_pair", "robust") else []
    if loss_type == "[sigmoid, sft]":
        extra.append("loss_weights=[1.0, 0.5]")
    cfg = load_config(RECIPES / "dpo.yaml", [f"loss_type={loss_type}", *extra, f"run_dir={tmp_path / 'run'}",
                                             "max_steps=6", "limit=32", "micro_batch_size=4", "max_length=64",
                                             "max_prompt_length=32", "tensorboard=false", "progress=false",
                                             "eval_fraction=0.25", "eval_batch_size=8"])
    result = train(cfg)
    before, after = result.eval_before["eval/loss"], result.eval_after["eval/loss"]
    assert math.isfinite(after) and after < before, (before, after)


def test_rpo_adds_the_chosen_nll(tmp_path):
    cfg = load_config(RECIPES / "rpo.yaml", [f"run_dir={tmp_path / 'run'}", "max_steps=6", "limit=32",
                                             "micro_batch_size=4", "max_length=64", "max_prompt_length=32",
                                             "tensorboard=false", "progress=false", "eval_fraction=0.25"])
    assert cfg.method.params.rpo_alpha == 1.0
    result = train(cfg)
    before, after = result.eval_before["eval/loss"], result.eval_after["eval/loss"]
    assert after < before and before > math.log(2)  # log 2 plus the chosen NLL at step 0


@pytest.mark.parametrize("extra", [["use_weighting=true"], ["ld_alpha=0.5"], ["use_weighting=true", "ld_alpha=0.3"]])
def test_wpo_and_ld_dpo_train_from_the_dpo_recipe(extra, tmp_path):
    cfg = load_config(RECIPES / "dpo.yaml", [*extra, f"run_dir={tmp_path / 'run'}", "max_steps=6", "limit=32",
                                             "micro_batch_size=4", "max_length=64", "max_prompt_length=32",
                                             "tensorboard=false", "progress=false", "eval_fraction=0.25"])
    result = train(cfg)
    before, after = result.eval_before["eval/loss"], result.eval_after["eval/loss"]
    assert math.isfinite(after) and after < before, (before, after)


def test_kto_step_equals_its_formula_on_the_models_own_logits(tmp_path):
    """After one update (policy != reference): the step's per-example losses are TRL's KTO formula on log-probs
    from each model's own logits, with z0 from the mismatched KL batch."""
    cfg = load_config(RECIPES / "kto.yaml", [f"run_dir={tmp_path / 'run'}", "max_steps=3", "limit=24",
                                             "micro_batch_size=6", "max_length=64", "max_prompt_length=32",
                                             "eval_fraction=0", "warmup_steps=0", "tensorboard=false",
                                             "progress=false"])
    trainer = Trainer(cfg)
    trainer.train_step(0)
    examples = [trainer.train_examples[i] for i in trainer.step_positions(1)[0]]
    batch = trainer._to_device(trainer.collate(examples, trainer.pad_id))
    with torch.no_grad():
        out = trainer._forward(batch, examples, 0.0)

    def sums(model, ids, mask, labels):
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), -1)[:, :-1]
        scored = labels[:, 1:] != -100
        return (logp.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored).sum(-1)

    policy, ref = trainer.policy.eval(), trainer.ref_model
    r = sums(policy, batch["input_ids"], batch["attention_mask"], batch["labels"]) - sums(
        ref, batch["input_ids"], batch["attention_mask"], batch["labels"])
    kl_args = (batch["kl_input_ids"], batch["kl_attention_mask"], batch["kl_labels"])
    z0 = (sums(policy, *kl_args) - sums(ref, *kl_args)).mean().clamp(min=0)
    want = torch.where(batch["desirable"], 1 - torch.sigmoid(0.1 * (r - z0)), 1 - torch.sigmoid(0.1 * (z0 - r)))
    assert not torch.equal(r, torch.zeros_like(r))  # the policy moved
    torch.testing.assert_close(out.losses.double(), want, rtol=1e-5, atol=1e-6)


class _Payload:
    """Unpickling this object would create a marker file: proof of code run from a crafted run directory."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_resume_never_unpickles_code_from_the_run_directory(small, tmp_path):
    """A checkpoint's state is safetensors and JSON only; a checkpoint holding accelerate's pickled files (an older
    alignlab, or a crafted pickle dropped into the run directory) is refused in one line and never executed."""
    import pickle

    run = tmp_path / "run"
    base = small("dpo", run_dir=str(run), max_steps=3, save_steps=1, lr_scheduler="linear", warmup_steps=1)
    with pytest.raises(_Stop):
        trainer = Trainer(load_config(base=base))
        trainer.train_step = lambda step, original=trainer.train_step: (
            original(step) if step < 2 else (_ for _ in ()).throw(_Stop()))
        trainer.train()
    latest = ckpt.latest_checkpoint(run)
    assert sorted(p.name for p in (latest / "state").iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng-rank0.safetensors", "state.json"]
    assert not [p for p in run.rglob("*") if p.suffix in (".pkl", ".bin", ".pt")]
    assert "scheduler" in ckpt.read_state(latest)
    resumed = Trainer(load_config(base={**base, "max_steps": 3}), resume=True)
    resumed.train()
    assert resumed.scheduler.state_dict()["last_epoch"] == 3  # the JSON scheduler state continued
    marker = tmp_path / "pwned"
    latest = ckpt.latest_checkpoint(run)
    for name in ("random_states_0.pkl", "optimizer.bin"):  # what accelerate's save_state used to write
        (latest / "state" / name).write_bytes(pickle.dumps(_Payload(marker)))
    (latest / "state" / "state.json").unlink()
    ckpt.write_manifest(latest)  # as that older version listed them: not damage, another format
    with pytest.raises(ConfigError, match="never unpickles a run directory") as error:
        Trainer(load_config(base={**base, "run_dir": str(run), "max_steps": 5}), resume=True).train()
    assert "optimizer.bin, random_states_0.pkl" in str(error.value) and "\n" not in str(error.value)
    assert not marker.exists()


def test_the_tile_budget_reaches_the_ops(small, monkeypatch):
    """chunk_mib is honoured: the trainer's step hands the ops that many bytes (and the losses do not move)."""
    from alignlab.models import causal_lm

    seen: list[int | None] = []
    real = causal_lm.chunked_sequence_stats

    def spy(*args, **kwargs):
        seen.append(kwargs.get("chunk_bytes"))
        return real(*args, **kwargs)

    monkeypatch.setattr(causal_lm, "chunked_sequence_stats", spy)
    small_budget = Trainer(load_config(base=small("tdpo2", max_steps=1, chunk_mib=1))).train_step(0)
    assert seen and set(seen) == {2**20}
    seen.clear()
    default = Trainer(load_config(base=small("tdpo2", max_steps=1))).train_step(0)
    assert set(seen) == {DEFAULT_CHUNK_BYTES}  # the config's default is the ops' own
    assert small_budget["loss"] == pytest.approx(default["loss"], rel=1e-6)


def test_adamw_is_torchs_fused_kernel(small):
    """Unsharded AdamW runs torch's fused kernel (transformers' default; the speed is in BENCHMARKS.md)."""
    trainer = Trainer(load_config(base=small("dpo", max_steps=1)))
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper, if any
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True
    rmsprop = Trainer(load_config(base=small("dpo", max_steps=1, optimizer="rmsprop"))).optimizer
    assert isinstance(getattr(rmsprop, "optimizer", rmsprop), torch.optim.RMSprop)
