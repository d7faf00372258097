"""Every causal-LM family scores with its true log-probs: training path (plain and chunked, policy and
reference), scoring path, TDPO's per-token KL, one DPO and one TDPO2 step, LoRA; against the model's own logits.

The independent computation is `log_softmax(model(input_ids).logits)` summed over the scored labels, and the
full-logit KL from both models' own logits: nothing here goes through alignlab's head.
"""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.assets import load_tokenizer
from alignlab.data import SAMPLES_DIR, collate_preference, load_preference_data
from alignlab.diagnostics import compute_pair_scores
from alignlab.errors import ConfigError
from alignlab.models import Trunk, check_output_head, greedy_next_tokens, output_head, sequence_stats
from alignlab.models import causal_lm as causal_lm_module
from alignlab.train import load_config
from alignlab.train.trainer import Trainer
from tests.models.families import FAMILIES, NO_EMBEDDING_INPUTS, tiny_model

N_PAIRS = 4


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("alignlab/tiny-llama")


@pytest.fixture(scope="module")
def batch(tokenizer):
    examples, _ = load_preference_data(str(SAMPLES_DIR / "pairs.jsonl"), tokenizer, limit=N_PAIRS, max_length=64,
                                       max_prompt_length=32)
    return examples, collate_preference(examples, tokenizer.pad_token_id)


def _own_stats(model, ref, batch):
    """[2B] summed log-probs of both models and the forward KL(ref || policy), from their own logits, float64."""
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.double(), -1)[:, :-1]
        logq = torch.log_softmax(ref(input_ids=ids, attention_mask=mask).logits.double(), -1)[:, :-1]
    scored = labels[:, 1:] != -100
    targets = labels[:, 1:].clamp(min=0).unsqueeze(-1)
    lp = (logp.gather(-1, targets).squeeze(-1) * scored).sum(-1)
    lq = (logq.gather(-1, targets).squeeze(-1) * scored).sum(-1)
    kl = ((logq.exp() * (logq - logp)).sum(-1) * scored).sum(-1)
    return lp, lq, kl


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_training_and_scoring_paths_equal_the_models_own_logits(family, batch):
    examples, collated = batch
    policy, ref = tiny_model(family, seed=0), tiny_model(family, seed=1)
    want_lp, want_ref, want_kl = _own_stats(policy, ref, collated)
    assert want_lp.mean() < -20 * math.log(2)  # the scaled head: logits far from uniform, a wrong transform shows
    args = (collated["input_ids"], collated["attention_mask"], collated["labels"])
    for chunked in (True, False):
        stats = sequence_stats(Trunk(policy), *args, ref=Trunk(ref), chunked=chunked, chunk_size=16, kl=True)
        torch.testing.assert_close(stats.logps.double(), want_lp, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stats.ref_logps.double(), want_ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(stats.kl.double(), want_kl, rtol=1e-5, atol=1e-5)  # TDPO's per-token KL, summed
    scores = compute_pair_scores(policy, examples, batch_size=3, chunk_size=16)
    b = len(examples)
    torch.testing.assert_close(scores.chosen_logps, want_lp[:b], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scores.rejected_logps, want_lp[b:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_input_embeddings_give_what_the_ids_give(family, batch):
    """IFT feeds the decoder embeddings from a detached view of the table: the final hidden states must be those
    of the ids (Gemma scales inside its embedding layer; Falcon-H1 scales only when given ids: refused)."""
    model = tiny_model(family)
    ids, mask = batch[1]["input_ids"], batch[1]["attention_mask"]
    trunk = Trunk(model)
    if family in NO_EMBEDDING_INPUTS:
        with pytest.raises(ConfigError, match=NO_EMBEDDING_INPUTS[family]):
            trunk.embed(ids)
        return
    with torch.no_grad():
        from_ids = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        from_embeds = trunk(inputs_embeds=trunk.embed(ids), attention_mask=mask)
    torch.testing.assert_close(from_embeds, from_ids, rtol=0, atol=0)


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - set(NO_EMBEDDING_INPUTS)))
def test_ift_greedy_pass_is_the_models_argmax(family, batch):
    model = tiny_model(family)
    ids, mask = batch[1]["input_ids"], batch[1]["attention_mask"]
    trunk = Trunk(model)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
    got = greedy_next_tokens(trunk, mask, trunk.embed(ids), chunk_size=16)
    assert torch.equal(got[mask.bool()], want[mask.bool()])


def test_one_ift_step_on_gemma3(saved, tmp_path):
    """Gemma-3 scales its embeddings inside the embedding layer: IFT's frozen view must too."""
    trainer = _trainer(saved["gemma3"], tmp_path, "ift", ift_lambda=0.5, train_data=str(SAMPLES_DIR / "sft.jsonl"))
    metrics = trainer.train_step(0)
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["ift/guess_error_rate"] <= 1


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer):
    """Each family saved as a Hugging Face directory with the tiny tokenizer, loaded back by path."""
    root = tmp_path_factory.mktemp("families")
    paths = {}
    for family in FAMILIES:
        path = root / family
        tiny_model(family).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths[family] = str(path)
    return paths


def _trainer(model_path, tmp_path, method, **extra):
    overrides = [f"method={method}", f"model={model_path}", "micro_batch_size=2", "max_steps=1",
                 f"limit={N_PAIRS}", "eval_fraction=0", "max_length=64", "max_prompt_length=32", "chunk_size=16",
                 "progress=false", "tensorboard=false", f"run_dir={tmp_path / method}"]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return Trainer(load_config(overrides=overrides))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_one_dpo_and_one_tdpo2_step(family, saved, tmp_path):
    """The trainer's step on each family: its logged log-probs are the model's own, the loss is log 2 (the
    reference is the initial policy), and the step moves the weights."""
    model = tiny_model(family)
    for method in ("dpo", "tdpo2"):
        trainer = _trainer(saved[family], tmp_path, method)
        step = [trainer.train_examples[i] for positions in trainer.step_positions(0) for i in positions]
        want, _, _ = _own_stats(model, model, collate_preference(step, trainer.pad_id))
        before = [p.detach().clone() for p in trainer.params]
        metrics = trainer.train_step(0)
        assert metrics["logps/chosen"] == pytest.approx(float(want[:len(step)].mean()), rel=1e-5)
        assert metrics["logps/rejected"] == pytest.approx(float(want[len(step):].mean()), rel=1e-5)
        assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-5)
        assert math.isfinite(metrics["grad_norm"]) and metrics["grad_norm"] > 0
        assert any(not torch.equal(a, p) for a, p in zip(before, trainer.params))


@pytest.mark.parametrize("family", ["gemma2", "cohere", "granite", "hyperclovax", "falcon_h1"])
@pytest.mark.parametrize("chunked", [True, False])
def test_gradients_through_a_transformed_head_equal_autograd_through_the_models_logits(family, chunked, batch):
    """The closed-form backward (softcap and scale derivatives) against autograd through model(...).logits:
    a TDPO-like objective of log-probs and forward KL, gradients of every parameter."""
    _, collated = batch
    ids, mask, labels = collated["input_ids"], collated["attention_mask"], collated["labels"]
    policy, ref = tiny_model(family, seed=0), tiny_model(family, seed=1)
    coefs = torch.linspace(-1.0, 1.0, ids.shape[0])

    def objective(logps, kl):
        return (coefs * logps).sum() + (coefs.flip(0) * kl).sum()

    stats = sequence_stats(Trunk(policy), ids, mask, labels, ref=Trunk(ref), chunked=chunked, chunk_size=16, kl=True)
    ours = torch.autograd.grad(objective(stats.logps, stats.kl), list(policy.parameters()), allow_unused=True)
    logp = torch.log_softmax(policy(input_ids=ids, attention_mask=mask).logits.float(), -1)[:, :-1]
    with torch.no_grad():
        logq = torch.log_softmax(ref(input_ids=ids, attention_mask=mask).logits.float(), -1)[:, :-1]
    scored = labels[:, 1:] != -100
    lp = (logp.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored).sum(-1)
    kl = ((logq.exp() * (logq - logp)).sum(-1) * scored).sum(-1)
    want = torch.autograd.grad(objective(lp, kl), list(policy.parameters()), allow_unused=True)
    for (name, _), a, w in zip(policy.named_parameters(), ours, want):
        if w is None:
            assert a is None or not a.any(), name
            continue
        torch.testing.assert_close(a, w, rtol=1e-4, atol=1e-5 * float(w.abs().max()) + 1e-7, msg=name)


@pytest.mark.parametrize("family", ["gemma2", "cohere"])
def test_lora_step_on_a_transformed_head(family, saved, tmp_path):
    """LoRA on a soft-capped (Gemma-2) and a scaled (Cohere) head: the adapter-disabled reference is exact."""
    # a learning rate that moves the adapters beyond rounding in one step (KL ~1e-7 at the default is noise)
    trainer = _trainer(saved[family], tmp_path, "tdpo2", lora="true", learning_rate=1e-3)
    metrics = trainer.train_step(0)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert metrics["kl/chosen"] == pytest.approx(0.0, abs=1e-5)
    metrics = trainer.train_step(1)  # adapters moved: the policy now differs from its adapter-disabled self
    assert metrics["kl/chosen"] > 0


@pytest.mark.parametrize(("family", "key"), [("gemma2", "final_logit_softcapping"), ("cohere", "logit_scale"),
                                             ("granite", "logits_scaling")])
def test_an_unreproduced_head_is_an_error_naming_its_key(family, key, monkeypatch):
    """Without the key's transform, alignlab's head would be silently wrong: the probe says so, naming it."""
    monkeypatch.delitem(causal_lm_module.HEAD_TRANSFORM_KEYS, key)
    with pytest.raises(ConfigError, match=key):
        check_output_head(tiny_model(family))


def test_a_hook_on_the_head_is_an_error(batch):
    """Any transform alignlab cannot see (here a forward hook on lm_head) is caught, never silently wrong."""
    model = tiny_model("llama")
    model.lm_head.register_forward_hook(lambda module, inputs, out: out * 0.5)
    with pytest.raises(ConfigError, match="differ from alignlab's output head"):
        check_output_head(model)


def test_a_sliced_vocabulary_is_an_error():
    model = tiny_model("llama")
    model.config.unpadded_vocab_size = 4000
    forward = model.forward

    def sliced(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits = out.logits[..., :4000]
        return out

    model.forward = sliced
    with pytest.raises(ConfigError, match="unpadded_vocab_size=4000"):
        check_output_head(model)


def test_an_adapted_output_layer_is_rejected():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(tiny_model("llama"), peft.LoraConfig(r=2, target_modules=["lm_head", "q_proj"]))
    with pytest.raises(ConfigError, match="lora_target_modules"):
        output_head(model)


@pytest.mark.parametrize("family", ["gemma2", "granite"])
def test_precomputed_reference_is_exact_on_a_transformed_head(family, saved, tmp_path):
    trainer = _trainer(saved[family], tmp_path, "dpo", precompute_ref_logps="true", ref_cache_dir=tmp_path / "c")
    collated = collate_preference(trainer.train_examples, trainer.pad_id)
    model = tiny_model(family)
    want, _, _ = _own_stats(model, model, collated)
    b = len(trainer.train_examples)
    torch.testing.assert_close(trainer.ref_table[:, 0], want[:b], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trainer.ref_table[:, 1], want[b:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("vocab", [4100, 64])
def test_a_reference_over_another_vocabulary_is_refused(batch, vocab):
    """Log-ratios and KL compare policy and reference token by token: the scorer refuses a mismatch itself, before
    any id reaches the reference (a smaller table would fail on the ids with an index error)."""
    import transformers

    from tests.models.families import tiny_config

    config = tiny_config("llama")
    config.vocab_size = vocab
    other = transformers.AutoModelForCausalLM.from_config(config).eval()
    collated = batch[1]
    with pytest.raises(ConfigError, match="one vocabulary"):
        sequence_stats(Trunk(tiny_model("llama")), collated["input_ids"], collated["attention_mask"],
                       collated["labels"], ref=Trunk(other))
