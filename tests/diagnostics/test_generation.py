"""Sampling and scoring of completions: determinism, left padding, EOS handling, and every statistic against
an independent float64 computation on a single unpadded forward; the sampler's distribution; the CLI."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from alignlab.assets import load_model, load_tokenizer
from alignlab.cli.generate import main as generate_main
from alignlab.diagnostics.generation import (
    _processors,
    generate,
    load_prompts,
    write_jsonl,
)
from alignlab.errors import AlignlabError
from alignlab.ops import sequence_kl, sequence_logps

PROMPTS = ["The movie was", "I think that this film is", "Bad"]


@pytest.fixture(autouse=True)
def _one_thread():
    # Two shared cores: intra-op threads spin against each other and slow tiny matmuls a hundredfold.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def ref_model(model):
    """The policy with perturbed weights: a reference whose distributions differ at every position."""
    ref = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for param in ref.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    return ref


@pytest.fixture(scope="module")
def eos_model(model, tokenizer):
    """The policy with an output bias on EOS alone, set so that P(EOS) is about 0.1: rows stop at different steps.

    (A bias, not a hook on lm_head: alignlab reproduces the model's head from its layers and config, and rejects
    a model whose forward transforms the logits in a way it cannot see.)"""
    eos_model = copy.deepcopy(model)
    eos = tokenizer.eos_token_id
    old = eos_model.lm_head
    ids = torch.tensor([tokenizer(p)["input_ids"][:4] for p in PROMPTS if len(tokenizer(p)["input_ids"]) >= 4])
    with torch.no_grad():
        logits = eos_model(input_ids=ids).logits
        others = torch.cat([logits[..., :eos], logits[..., eos + 1 :]], dim=-1)
        head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
        head.weight.copy_(old.weight)
        head.weight[eos] = 0.0
        head.bias.zero_()
        head.bias[eos] = float(torch.logsumexp(others, dim=-1).mean()) + math.log(1 / 9)
    eos_model.lm_head = head
    return eos_model


def _reference(model, tokenizer, record, ref=None):
    """Statistics of one record from a single unpadded forward of prompt + completion, in float64."""
    prompt_ids = tokenizer(record["prompt"])["input_ids"]
    ids = torch.tensor([prompt_ids + record["completion_ids"]])
    start, targets = len(prompt_ids) - 1, record["completion_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
        ref_logits = ref(input_ids=ids).logits[0].double() if ref is not None else None
    rows = logits[start : start + len(targets)]  # row t predicts completion token t
    log_p = rows - torch.logsumexp(rows, dim=-1, keepdim=True)
    p = log_p.exp()
    out = {
        "logp": sum(log_p[t, y].item() for t, y in enumerate(targets)),
        "entropy": (-(p * log_p).sum(-1)).mean().item(),
        "ids": ids,
        "prompt_len": len(prompt_ids),
        "logits": logits,
    }
    if ref is not None:
        ref_rows = ref_logits[start : start + len(targets)]
        log_q = ref_rows - torch.logsumexp(ref_rows, dim=-1, keepdim=True)
        q = log_q.exp()
        out["ref_logp"] = sum(log_q[t, y].item() for t, y in enumerate(targets))
        out["kl_sample"] = sum(log_p[t, y].item() - log_q[t, y].item() for t, y in enumerate(targets))
        out["kl_forward"] = (q * (log_q - log_p)).sum().item()
        out["kl_reverse"] = (p * (log_p - log_q)).sum().item()
        out["ref_logits"] = ref_logits
    return out


def test_same_seed_same_samples_other_seed_differs(model, tokenizer):
    first = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=7)
    again = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=7)
    other = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=8)
    assert first == again
    assert [r["completion_ids"] for r in first] != [r["completion_ids"] for r in other]
    assert [(r["prompt_index"], r["sample_index"]) for r in first] == [
        (i, s) for i in range(3) for s in range(2)
    ]
    # the n samples of one prompt differ from one another
    assert first[0]["completion_ids"] != first[1]["completion_ids"]


def test_unscored_samples_are_the_scored_ones_without_statistics(model, ref_model, tokenizer):
    scored = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=7)
    bare = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=6, seed=7, score=False)
    statistics = {"logp", "entropy"}
    assert bare == [{k: v for k, v in r.items() if k not in statistics} for r in scored]
    with pytest.raises(AlignlabError, match="ref_model is only used to score the samples"):
        generate(model, tokenizer, PROMPTS, max_new_tokens=2, ref_model=ref_model, score=False)


def test_samples_do_not_depend_on_batch_size_later_prompts_or_global_rng(model, tokenizer):
    state = torch.get_rng_state()
    batched = generate(model, tokenizer, PROMPTS, n=3, max_new_tokens=6, seed=1, batch_size=16)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither used nor advanced
    torch.manual_seed(999)
    single = generate(model, tokenizer, PROMPTS, n=3, max_new_tokens=6, seed=1, batch_size=1)
    prefix = generate(model, tokenizer, PROMPTS[:1], n=3, max_new_tokens=6, seed=1, batch_size=2)
    assert [r["completion_ids"] for r in single] == [r["completion_ids"] for r in batched]
    assert [r["completion_ids"] for r in prefix] == [r["completion_ids"] for r in batched[:3]]
    for a, b in zip(single, batched):
        assert a["logp"] == pytest.approx(b["logp"], rel=1e-5)


def _greedy_uncached(model, tokenizer, prompt, max_new_tokens):
    ids = tokenizer(prompt)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
            out.append(token)
            if token == tokenizer.eos_token_id:
                break
    return out


@pytest.mark.parametrize(
    "name", ["alignlab/tiny-llama", "alignlab/tiny-gpt2"]
)  # rotary and absolute positions
def test_greedy_with_left_padding_matches_uncached_argmax_alone(name):
    model, tokenizer = load_model(name), load_tokenizer(name)
    prompts = ["A", "Once upon a time there was a very long prompt", "Hello there"]
    lengths = {len(tokenizer(p)["input_ids"]) for p in prompts}
    assert len(lengths) == 3  # the batch really is left-padded
    batched = generate(model, tokenizer, prompts, n=2, temperature=0, max_new_tokens=8)
    for i, prompt in enumerate(prompts):
        expected = _greedy_uncached(model, tokenizer, prompt, 8)
        alone = generate(model, tokenizer, [prompt], n=1, temperature=0, max_new_tokens=8)
        assert alone[0]["completion_ids"] == expected
        assert batched[2 * i]["completion_ids"] == expected == batched[2 * i + 1]["completion_ids"]
        assert batched[2 * i]["logp"] == pytest.approx(alone[0]["logp"], rel=1e-5)


def test_statistics_match_ops_and_float64_reference(model, ref_model, tokenizer):
    records = generate(model, tokenizer, PROMPTS, n=2, max_new_tokens=8, seed=3, ref_model=ref_model)
    for record in records:
        ref = _reference(model, tokenizer, record, ref=ref_model)
        for field in ("logp", "ref_logp", "kl_sample", "kl_forward", "kl_reverse", "entropy"):
            assert record[field] == pytest.approx(ref[field], rel=1e-5, abs=1e-5), field
        assert record["kl_forward"] > 0 and record["kl_reverse"] > 0
        # alignlab.ops on the same tokens: full forward of prompt + completion, labels -100 on the prompt
        labels = ref["ids"].clone()
        labels[:, : ref["prompt_len"]] = -100
        logits, ref_logits = ref["logits"][None], ref["ref_logits"][None]
        assert record["logp"] == pytest.approx(sequence_logps(logits, labels).item(), rel=1e-5)
        for direction, field in (("ref||policy", "kl_forward"), ("policy||ref", "kl_reverse")):
            value = sequence_kl(logits, ref_logits, labels, direction=direction).item()
            assert record[field] == pytest.approx(value, rel=1e-4, abs=1e-6)
        assert record["kl_sample"] == pytest.approx(record["logp"] - record["ref_logp"], abs=1e-4)
        assert record["num_tokens"] == len(record["completion_ids"]) == 8
        assert record["completion"] == tokenizer.decode(record["completion_ids"])
        assert record["prompt_ids"] == ref["ids"][0, : ref["prompt_len"]].tolist()  # the ids it continued


def test_kl_is_zero_against_the_same_model(model, tokenizer):
    records = generate(model, tokenizer, PROMPTS[:2], n=2, max_new_tokens=5, ref_model=model)
    for record in records:
        assert record["ref_logp"] == record["logp"]
        for field in ("kl_sample", "kl_forward", "kl_reverse"):
            assert record[field] == pytest.approx(0.0, abs=1e-6)


def test_stops_at_eos_and_scores_no_padding(eos_model, tokenizer):
    eos = tokenizer.eos_token_id
    records = generate(eos_model, tokenizer, PROMPTS, n=4, max_new_tokens=8, seed=0, batch_size=12)
    finished = [r for r in records if r["finished"]]
    assert finished and len(finished) < len(records)
    assert len({r["num_tokens"] for r in records}) > 1  # rows of one batch end at different steps
    for record in records:
        ids = record["completion_ids"]
        assert eos not in ids[:-1]
        assert record["num_tokens"] == len(ids)
        if record["finished"]:
            assert ids[-1] == eos and len(ids) <= 8
            assert record["completion"] == tokenizer.decode(ids[:-1])
            assert "<|endoftext|>" not in record["completion"]
        else:
            assert len(ids) == 8 and ids[-1] != eos
        # the EOS position is scored; padding after it is not (the reference has no padding at all)
        ref = _reference(eos_model, tokenizer, record)
        assert record["logp"] == pytest.approx(ref["logp"], rel=1e-5, abs=1e-5)
        assert record["entropy"] == pytest.approx(ref["entropy"], rel=1e-5)


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.5, 0, 1.0), (1.0, 0, 0.8), (2.0, 3, 1.0)]
)
def test_sampler_draws_from_the_filtered_softmax(temperature, top_k, top_p):
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    rows = 20000
    generators = [torch.Generator().manual_seed(i) for i in range(rows)]
    scores = _processors(temperature, top_k, top_p, generators)(
        torch.zeros(rows, 1, dtype=torch.long), logits.expand(rows, -1).clone()
    )
    counts = torch.bincount(scores.argmax(-1), minlength=5).double() / rows
    # expected, written out: softmax(z / T), then keep the top_k, then the smallest set with mass >= top_p
    probs = torch.softmax(logits.double() / temperature, dim=0)
    keep = torch.zeros(5, dtype=torch.bool)
    order = probs.argsort(descending=True)
    mass = 0.0
    for rank, index in enumerate(order.tolist()):
        if (top_k and rank >= top_k) or mass >= top_p:
            break
        keep[index] = True
        mass += probs[index].item()
    expected = torch.where(keep, probs, 0.0)
    expected /= expected.sum()
    assert torch.all(counts[~keep] == 0)
    assert torch.allclose(counts, expected, atol=0.015)


def test_rejects_bad_options_and_prompts(model, tokenizer):
    bad_options = [
        {"n": 0},
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"max_new_tokens": 0},
        {"batch_size": 0},
        {"seed": -1},
        {"top_k": -2},
        {"temperature": float("nan")},
    ]
    for options in bad_options:
        with pytest.raises(AlignlabError):
            generate(model, tokenizer, ["x"], **options)
    for prompts, message in (
        ([], "empty"),
        ("a string", "list"),
        (["ok", 3], "prompt 1"),
        (["ok", ""], "prompt 1"),
    ):
        with pytest.raises(AlignlabError, match=message):
            generate(model, tokenizer, prompts, max_new_tokens=1)


def test_restores_training_mode_and_generation_config(model, tokenizer):
    config = model.generation_config
    model.train()
    try:
        generate(model, tokenizer, ["x"], n=1, max_new_tokens=2, top_p=0.5, temperature=0.7)
        assert model.training and model.generation_config is config
    finally:
        model.eval()


# ------------------------------------------------------------------------------------------ prompts + CLI


def test_load_prompts_from_text_and_records(tmp_path):
    text = tmp_path / "prompts.txt"
    text.write_bytes(b"first prompt \r\n\nsecond\n")
    assert load_prompts(text) == ["first prompt ", "second"]  # trailing space kept, empty line skipped
    assert load_prompts(text, limit=1) == ["first prompt "]
    records = tmp_path / "prompts.jsonl"
    records.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert load_prompts(records, column="text") == ["a", "b"]
    with pytest.raises(AlignlabError, match=r"prompts\.jsonl line 1: field 'prompt' is missing"):
        load_prompts(records)
    records.write_text('{"prompt": "a"}\n{"prompt": 5}\n')
    with pytest.raises(AlignlabError, match=r"line 2: field 'prompt' is a int"):
        load_prompts(records)
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(AlignlabError, match=r"bad\.txt line 2: not valid UTF-8"):
        load_prompts(tmp_path / "bad.txt")
    with pytest.raises(AlignlabError, match="cannot be selected"):
        load_prompts(text, split="test")


def test_generate_main_writes_what_the_library_returns(tmp_path, model, tokenizer, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The movie was\nI liked\nNever again\n")
    out = tmp_path / "out.jsonl"
    argv = [
        "--model",
        "alignlab/tiny-llama",
        "--ref",
        "alignlab/tiny-llama",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
        "--n",
        "2",
        "--temperature",
        "0.7",
        "--top_p",
        "0.9",
        "--top-k",
        "50",
        "--max_new_tokens",
        "4",
        "--seed",
        "5",
        "--batch-size",
        "3",
        "--limit",
        "2",
        "--device",
        "cpu",
    ]
    assert generate_main(argv) == 0
    assert "4 completions" in capsys.readouterr().err
    written = [json.loads(line) for line in out.read_text().splitlines()]
    expected = generate(
        model,
        tokenizer,
        ["The movie was", "I liked"],
        n=2,
        temperature=0.7,
        top_p=0.9,
        top_k=50,
        max_new_tokens=4,
        seed=5,
        ref_model=model,
    )
    assert [r["completion_ids"] for r in written] == [r["completion_ids"] for r in expected]
    assert [r["prompt"] for r in written] == ["The movie was"] * 2 + ["I liked"] * 2
    for record, reference in zip(written, expected):
        assert record["logp"] == pytest.approx(reference["logp"], rel=1e-5)
        assert record["kl_forward"] == pytest.approx(0.0, abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "prompts.txt"]  # no temporary left


def test_generate_main_user_errors_exit_2_with_one_line(tmp_path, capsys):
    # generate_main raises; alignlab.cli.main prints the AlignlabError as one line with exit code 2
    from alignlab.cli import main as cli_main

    missing = tmp_path / "missing.jsonl"
    with pytest.raises(AlignlabError, match="not found"):
        generate_main(["--model", "alignlab/tiny-llama", "--prompts", str(missing), "--device", "cpu"])
    assert (
        cli_main(["generate", "--model", "alignlab/tiny-llama", "--prompts", str(missing), "--device", "cpu"])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("alignlab: ") and "missing.jsonl" in err and "not found" in err and "\n" not in err
    assert not err.startswith("alignlab: alignlab:")
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "hello"}\n')
    generate = ["generate", "--model", "alignlab/tiny-llama", "--prompts", str(data)]
    assert cli_main([*generate, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "data.jsonl line 1: field 'prompt' is missing" in err and "\n" not in err
    assert cli_main([*generate, "--n", "0"]) == 2
    assert "n must be an integer >= 1" in capsys.readouterr().err
    out = tmp_path / "no-such-dir" / "out.jsonl"
    assert (
        cli_main(
            [
                "generate",
                "--model",
                "alignlab/tiny-llama",
                "--prompts",
                str(data),
                "--prompt-column",
                "text",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--out" in capsys.readouterr().err and not out.parent.exists()


def test_write_jsonl_leaves_old_output_when_interrupted(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    with pytest.raises(TypeError):
        write_jsonl([{"a": 1}, {"b": object()}], out)  # fails after the first line is written
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    write_jsonl([{"a": 1}, {"b": "é"}], out)
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == [
        {"a": 1},
        {"b": "é"},
    ]


def test_prompts_start_with_the_tokenizers_bos_and_carry_no_default_eos():
    """A tokenizer that wraps text as <s> ... </s> by default: the prompt keeps <s>, loses the closing </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from alignlab.diagnostics.generation import _encode_prompts

    vocab = {"<s>": 0, "</s>": 1, "a": 2, "b": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="a"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0),
                                                                                                ("</s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    assert tok("a b")["input_ids"] == [0, 2, 3, 1]
    assert _encode_prompts(tok, ["a b"]) == [[0, 2, 3]]


def test_a_prompt_that_already_starts_with_bos_gets_no_second_one():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from alignlab.diagnostics.generation import _encode_prompts

    vocab = {"<s>": 0, "</s>": 1, "a": 2, "b": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="a"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    assert _encode_prompts(tok, ["<s> a b", "a b"]) == [[0, 2, 3], [0, 2, 3]]
