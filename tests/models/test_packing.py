"""Prefix sharing and packing in the one scorer: the block mask is each token's own sequence, every family either
gives its padded rows' statistics and gradients from packed rows or is refused by the probe, never silently wrong.

The comparison is the padded path (the family matrix pins that to each model's own logits); GPT-2 in float64
shows the two layouts are the same computation, not merely close (models with RMSNorm upcast to fp32 inside, so
their float64 gradients only agree to fp32 rounding)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alignlab.assets import load_tokenizer
from alignlab.data import SAMPLES_DIR, collate_preference, collate_sft, load_preference_data, load_sft_data
from alignlab.errors import ConfigError
from alignlab.models import (
    PackedLayout,
    Trunk,
    greedy_next_tokens,
    packed_layout_problem,
    score_batches,
    sequence_stats,
)
from alignlab.models import causal_lm as causal_lm_module
from alignlab.models import packing as packing_module
from alignlab.models.packing import block_attention_mask
from tests.models.families import FAMILIES, tiny_model

# families whose forward cannot run packed rows exactly, and a word of the reason the probe gives
UNFIT = {"falcon_h1": "hybrid"}
LAYOUTS = {"shared": {"prefix_sharing": True}, "shared+packed": {"prefix_sharing": True, "packing": True},
           "packed": {"packing": True, "packing_tokens": 200}}


@pytest.fixture(scope="module")
def examples():
    tokenizer = load_tokenizer("alignlab/tiny-llama")
    # HH pairs: long shared prompts; one pair with a shared first response token exercises sharing past the prompt
    hh, _ = load_preference_data(str(SAMPLES_DIR / "pairs_hh.jsonl"), tokenizer, limit=3, max_length=96,
                                 max_prompt_length=48)
    short, _ = load_preference_data(str(SAMPLES_DIR / "pairs.jsonl"), tokenizer, limit=2, max_length=64,
                                    max_prompt_length=32)
    extra = dict(short[0])
    extra["rejected_input_ids"] = extra["chosen_input_ids"][:-3] + extra["rejected_input_ids"][-2:]
    extra["rejected_labels"] = extra["chosen_labels"][:-3] + extra["rejected_labels"][-2:]
    return hh + short + [extra]


def _mask_by_definition(batch):
    """allowed[r, q, k] for real queries: q and k lie in one logical sequence with k at or before q."""
    gather, mask = batch["packed_gather_index"], batch["attention_mask"].bool()
    r, t = batch["packed_input_ids"].shape
    allowed = torch.zeros(r * t, r * t, dtype=torch.bool)
    real = torch.zeros(r * t, dtype=torch.bool)
    for s in range(gather.shape[0]):
        idx = gather[s][mask[s]]
        real[idx] = True
        allowed[idx.unsqueeze(1), idx.unsqueeze(0)] |= torch.ones(len(idx), len(idx), dtype=torch.bool).tril()
    return allowed, real


@given(lengths=st.lists(st.tuples(st.integers(1, 6), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=4),
       budget=st.one_of(st.none(), st.integers(4, 30)), sharing=st.booleans(), data=st.data())
@settings(max_examples=40, deadline=None)
def test_block_mask_is_each_tokens_own_sequence(lengths, budget, sharing, data):
    """A real token attends exactly the tokens before it in its own sequence(s) — a shared prompt token belongs
    to both of its pair's sequences — and never padding or another sequence (written from the gather index)."""
    batch_examples = []
    for i, (p, c, r) in enumerate(lengths):
        def draw(n):
            return data.draw(st.lists(st.integers(2, 5), min_size=n, max_size=n))

        prompt, chosen, rejected = draw(p), draw(c), draw(r)
        batch_examples.append({"chosen_input_ids": prompt + chosen, "chosen_labels": [-100] * p + chosen,
                               "rejected_input_ids": prompt + rejected, "rejected_labels": [-100] * p + rejected,
                               "index": i})
    batch = collate_preference(batch_examples, 1, prefix_sharing=sharing, packing=True, packing_tokens=budget)
    layout = PackedLayout.from_batch(batch)
    got = block_attention_mask(layout)[:, 0]
    want, real = _mask_by_definition(batch)
    got_flat = torch.block_diag(*got)  # rows never see each other
    assert torch.equal(got_flat[real], want[real])
    # a sliding window counts positions in the token's own sequence
    windowed = torch.block_diag(*block_attention_mask(layout, sliding_window=2)[:, 0])
    pos = layout.position_ids.reshape(-1)
    assert torch.equal(windowed[real], want[real] & ((pos.unsqueeze(1) - pos.unsqueeze(0)) < 2)[real])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_probe_accepts_exactly_the_families_that_honour_the_mask(family):
    problem = packed_layout_problem(tiny_model(family))
    if family in UNFIT:
        assert problem is not None and UNFIT[family] in problem
    else:
        assert problem is None


def test_a_model_that_ignores_the_mask_is_refused():
    """A forward that drops 4D masks (as a model building its own causal mask would) fails the probe."""
    model = tiny_model("llama")
    decoder = model.get_decoder()

    def drop_4d_masks(module, args, kwargs):
        if isinstance(kwargs.get("attention_mask"), (torch.Tensor, dict)) and not (
                isinstance(kwargs["attention_mask"], torch.Tensor) and kwargs["attention_mask"].dim() == 2):
            kwargs["attention_mask"] = None
        return args, kwargs

    decoder.register_forward_pre_hook(drop_4d_masks, with_kwargs=True)
    assert "differ from its padded rows" in packed_layout_problem(model)


def test_a_mask_without_the_sliding_window_is_refused(monkeypatch):
    """The probe outgrows the sliding window: a plan that forgot it (full attention on Gemma-3's sliding layers)
    shows, however the plan is made."""
    monkeypatch.setattr(packing_module, "mask_plan", lambda config: (None, {"": None}))
    monkeypatch.setattr(causal_lm_module, "mask_plan", lambda config: (None, {"": None}))
    assert "differ from its padded rows" in packed_layout_problem(tiny_model("gemma3"))


def test_attention_without_a_dense_mask_is_refused():
    model = tiny_model("llama")
    model.config._attn_implementation = "flash_attention_2"
    assert "takes no 4D attention mask" in packed_layout_problem(model)


def test_a_long_unprobed_window_serves_only_sequences_inside_it():
    """A window longer than the probe can cross is trusted only where sliding and full attention agree."""
    model = tiny_model("gemma3")
    model.config.sliding_window = causal_lm_module.PROBE_WINDOW + 100
    assert packed_layout_problem(model, longest=causal_lm_module.PROBE_WINDOW + 100) is None
    assert "sliding window" in packed_layout_problem(model, longest=causal_lm_module.PROBE_WINDOW + 101)


def _stats_and_grads(policy, ref, batch, *, chunked, dtype=torch.float32):
    """Every statistic the methods use, and gradients of a TDPO-like objective (log-probs and forward KL of
    both sides, with weights of both signs) with respect to every policy parameter."""
    layout = PackedLayout.from_batch(batch)
    stats = sequence_stats(Trunk(policy), batch["input_ids"], batch["attention_mask"], batch["labels"],
                           ref=Trunk(ref), layout=layout, chunked=chunked, chunk_size=16, kl=True, reverse_kl=True,
                           entropy=True, token_logps=True, log_sum_sq=True)
    n = batch["input_ids"].shape[0]
    objective = (torch.linspace(-1, 1, n, dtype=dtype) * stats.logps).sum() + (
        torch.linspace(0.5, -0.5, n, dtype=dtype) * stats.kl).sum()
    params = [p for p in policy.parameters() if p.requires_grad]
    grads = torch.autograd.grad(objective, params, allow_unused=True)
    values = {k: v.detach() for k, v in vars(stats).items() if v is not None}
    return values, grads


def _assert_same(got, want, rtol):
    (values, grads), (want_values, want_grads) = got, want
    assert values.keys() == want_values.keys()
    for key in values:
        torch.testing.assert_close(values[key], want_values[key], rtol=rtol, atol=rtol, msg=key)
    scale = max(float(w.abs().max()) for w in want_grads if w is not None)
    for g, w in zip(grads, want_grads):
        if w is None:
            assert g is None or not g.any()
            continue
        torch.testing.assert_close(g, w, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("family", sorted(set(FAMILIES) - set(UNFIT)))
def test_packed_rows_give_the_padded_statistics_and_gradients(family, layout, examples):
    """Log-probs, reference log-probs, both KLs, entropy, WPO's log sum p², per-token log-probs (LD-DPO) and the
    gradients of log-probs and TDPO's per-token KL, fp32, rtol 1e-5, chunked and plain ops."""
    policy, ref = tiny_model(family, seed=0), tiny_model(family, seed=1)
    padded = collate_preference(examples, 1)
    packed = collate_preference(examples, 1, **LAYOUTS[layout])
    assert int(packed["packed_input_ids"].numel()) < int(padded["input_ids"].numel()) or layout == "packed"
    for chunked in (True, False):
        want = _stats_and_grads(policy, ref, padded, chunked=chunked)
        _assert_same(_stats_and_grads(policy, ref, packed, chunked=chunked), want, 1e-5)


def test_the_layouts_are_one_computation_in_float64(examples):
    """GPT-2 computes in the input dtype throughout: in float64 the shared, packed rows agree with the padded
    ones to float64 rounding, so what differs in fp32 is summation order only."""
    policy, ref = tiny_model("gpt2", seed=0).double(), tiny_model("gpt2", seed=1).double()
    want = _stats_and_grads(policy, ref, collate_preference(examples, 1), chunked=True, dtype=torch.float64)
    got = _stats_and_grads(policy, ref, collate_preference(examples, 1, prefix_sharing=True, packing=True),
                           chunked=True, dtype=torch.float64)
    _assert_same(got, want, 1e-11)


def test_a_refused_model_is_an_error_not_a_wrong_value(examples):
    model = tiny_model("falcon_h1")
    batch = collate_preference(examples, 1, prefix_sharing=True)
    with pytest.raises(ConfigError, match="prefix_sharing: false"):
        sequence_stats(Trunk(model), batch["input_ids"], batch["attention_mask"], batch["labels"],
                       layout=PackedLayout.from_batch(batch))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_greedy_guesses_on_packed_rows_are_the_padded_ones(family):
    """IFT's greedy pass on packed rows: each token's argmax is the one its padded row gives."""
    tokenizer = load_tokenizer("alignlab/tiny-llama")
    sft, _ = load_sft_data(str(SAMPLES_DIR / "sft.jsonl"), tokenizer, limit=6, max_length=64, max_prompt_length=32)
    model = tiny_model(family)
    trunk = Trunk(model)
    padded, packed = collate_sft(sft, 1), collate_sft(sft, 1, packing=True, packing_tokens=128)
    layout = PackedLayout.from_batch(packed)
    want = greedy_next_tokens(trunk, padded["attention_mask"], trunk.embed(padded["input_ids"]), chunk_size=16)
    rows = greedy_next_tokens(trunk, packed["attention_mask"], trunk.embed(layout.input_ids), chunk_size=16,
                              layout=layout)
    mask = padded["attention_mask"].bool()
    assert layout.input_ids.shape[0] < padded["input_ids"].shape[0]
    assert torch.equal(layout.to_logical(rows)[mask], want[mask])


def test_the_scoring_loop_gives_the_same_scores_on_packed_rows(examples):
    """score_batches (evaluation, flip tracking, `alignlab score`) with the prompt once and packed rows."""
    policy, ref = Trunk(tiny_model("qwen2", seed=0)), Trunk(tiny_model("qwen2", seed=1))
    want = score_batches(policy, examples, pad_id=1, ref=ref, batch_size=3, chunk_size=16, kl=True)
    got = score_batches(policy, examples, pad_id=1, ref=ref, batch_size=3, chunk_size=16, kl=True,
                        prefix_sharing=True, packing=True)
    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-5, msg=key)
