"""`alignlab score`: per-record log-probs on the training path, every field recomputable from the model's logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alignlab.assets import load_model, load_tokenizer
from alignlab.cli import main
from alignlab.data import SAMPLES_DIR, load_sft_data
from alignlab.diagnostics import score_data, score_examples
from alignlab.errors import ConfigError
from alignlab.train import load_config
from alignlab.train.trainer import Trainer
from tests.models.families import FAMILIES, tiny_model

PAIRS = str(SAMPLES_DIR / "pairs.jsonl")
SFT = str(SAMPLES_DIR / "sft.jsonl")
PAIR_FIELDS = {"index", "chosen_logps", "rejected_logps", "chosen_tokens", "rejected_tokens"}
REF_FIELDS = {"ref_chosen_logps", "ref_rejected_logps", "chosen_kl_forward", "chosen_kl_reverse",
              "rejected_kl_forward", "rejected_kl_reverse"}
ID_FIELDS = {"chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"}


def _own(model, input_ids, labels, ref=None):
    """Summed log-prob, token count and (with ref) forward / reverse KL of one unpadded sequence, in float64."""
    ids = torch.tensor([input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        logq = torch.log_softmax(ref(input_ids=ids).logits[0, :-1].double(), -1) if ref is not None else None
    targets = torch.tensor(labels[1:])
    scored = targets != -100
    out = {"logps": float(logp[scored].gather(-1, targets[scored, None]).sum()), "tokens": int(scored.sum())}
    if ref is not None:
        out["ref_logps"] = float(logq[scored].gather(-1, targets[scored, None]).sum())
        out["kl_forward"] = float((logq.exp() * (logq - logp)).sum(-1)[scored].sum())
        out["kl_reverse"] = float((logp.exp() * (logp - logq)).sum(-1)[scored].sum())
    return out


def _scores_file(tmp_path, *args):
    out = tmp_path / "scores.jsonl"
    assert main(["score", *args, "--out", str(out)]) == 0
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def test_pair_scores_recompute_from_the_models_logits(tmp_path):
    rows = _scores_file(tmp_path, "--model", "alignlab/tiny-llama", "--ref", "alignlab/tiny-llama", "--data", PAIRS, "--limit", "6", "--token-ids",
                        "--batch-size", "4")
    model = load_model("alignlab/tiny-llama")
    assert [r["index"] for r in rows] == sorted(r["index"] for r in rows)  # input order
    for row in rows:
        assert set(row) == PAIR_FIELDS | REF_FIELDS | ID_FIELDS
        for side in ("chosen", "rejected"):
            own = _own(model, row[f"{side}_input_ids"], row[f"{side}_labels"], ref=model)
            assert row[f"{side}_logps"] == pytest.approx(own["logps"], rel=1e-5)
            assert row[f"{side}_tokens"] == own["tokens"]
            assert row[f"ref_{side}_logps"] == pytest.approx(own["ref_logps"], rel=1e-5)
            assert row[f"{side}_kl_forward"] == pytest.approx(0.0, abs=1e-4)  # the model is its own reference
            assert row[f"{side}_kl_reverse"] == pytest.approx(0.0, abs=1e-4)


def test_kl_fields_against_a_different_reference():
    tokenizer = load_tokenizer("alignlab/tiny-llama")
    model, ref = tiny_model("gemma2", seed=0), tiny_model("gemma2", seed=1)  # a soft-capped head
    examples, _ = load_sft_data(SFT, tokenizer, limit=5, max_length=64, max_prompt_length=32)
    rows = score_examples(model, examples, pad_id=tokenizer.pad_token_id, ref_model=ref, token_ids=True,
                          batch_size=2, chunk_size=8)
    for row in rows:
        assert set(row) - {"eos_dropped"} == {"index", "logps", "tokens", "ref_logps", "kl_forward", "kl_reverse",
                                              "input_ids", "labels"}
        own = _own(model, row["input_ids"], row["labels"], ref=ref)
        for key in ("logps", "ref_logps", "kl_forward", "kl_reverse"):
            assert row[key] == pytest.approx(own[key], rel=1e-5, abs=1e-4), key
        assert row["tokens"] == own["tokens"]
        assert row["kl_forward"] > 0.1 and row["kl_reverse"] > 0.1


def test_single_response_data_gives_logps_and_tokens(tmp_path):
    rows = _scores_file(tmp_path, "--model", "alignlab/tiny-llama", "--data", SFT, "--limit", "3")
    assert [set(r) for r in rows] == [{"index", "logps", "tokens"}] * 3
    assert all(r["logps"] < 0 and r["tokens"] > 0 for r in rows)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_score_works_on_every_family(family, tmp_path):
    path = tmp_path / family
    tiny_model(family).save_pretrained(path)
    load_tokenizer("alignlab/tiny-llama").save_pretrained(path)
    rows = _scores_file(tmp_path, "--model", str(path), "--data", PAIRS, "--limit", "2", "--token-ids",
                        "--max-length", "64", "--max-prompt-length", "32")
    model = tiny_model(family)
    for row in rows:
        own = _own(model, row["chosen_input_ids"], row["chosen_labels"])
        assert row["chosen_logps"] == pytest.approx(own["logps"], rel=1e-5)


def test_a_dpo_step_logs_the_mean_of_alignlab_score(tmp_path):
    """Same code path as training: logps/chosen of a DPO step = mean chosen_logps of its pairs under score."""
    cfg = load_config(overrides=["method=dpo", "micro_batch_size=4", "gradient_accumulation_steps=2", "max_steps=1",
                                 "progress=false", "tensorboard=false", f"run_dir={tmp_path / 'run'}"])
    trainer = Trainer(cfg)
    step = [trainer.train_examples[i] for positions in trainer.step_positions(0) for i in positions]
    metrics = trainer.train_step(0)
    rows = {r["index"]: r for r in _scores_file(tmp_path, "--model", "alignlab/tiny-llama", "--data", PAIRS)}
    for key, side in (("logps/chosen", "chosen"), ("logps/rejected", "rejected")):
        want = sum(rows[ex["index"]][f"{side}_logps"] for ex in step) / len(step)
        assert metrics[key] == pytest.approx(want, rel=1e-5)


def test_score_data_rejects_an_unknown_dtype():
    with pytest.raises(ConfigError, match="dtype must be one of"):
        score_data("alignlab/tiny-llama", PAIRS, dtype="float16")


def test_bad_data_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "", "rejected": "c"}\n')
    assert main(["score", "--model", "alignlab/tiny-llama", "--data", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignlab: ") and "line 2" in err[0] and "chosen" in err[0]
    assert not (tmp_path / "o").exists()


def test_data_options_are_trainings(tmp_path, capsys):
    """Every data option is honoured: a renamed column, drop_example truncation (counted), an EOS-less cut."""
    data = tmp_path / "renamed.jsonl"
    rows = [json.loads(line) for line in Path(PAIRS).read_text(encoding="utf-8").splitlines()[:6]]
    data.write_text("".join(json.dumps({"question": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]})
                            + "\n" for r in rows))
    base = ["--model", "alignlab/tiny-llama", "--data", str(data), "--columns", "prompt=question"]
    full = _scores_file(tmp_path, *base)
    capsys.readouterr()
    short = _scores_file(tmp_path, *base, "--max-length", "50", "--max-prompt-length", "12",
                         "--response-truncation", "drop_example")
    err = capsys.readouterr().err
    assert len(full) == 6 and 0 < len(short) < 6
    assert f"{6 - len(short)} dropped" in err and f"{6 - len(short)} too long" in err
    cut = _scores_file(tmp_path, *base, "--max-length", "50", "--max-prompt-length", "12")
    assert len(cut) == 6 and any(r.get("eos_dropped") for r in cut)
    assert all(c["chosen_tokens"] <= f["chosen_tokens"] for c, f in zip(cut, full))


def test_mixed_precision_scores_under_bf16_autocast(tmp_path):
    fp32 = _scores_file(tmp_path, "--model", "alignlab/tiny-llama", "--data", PAIRS, "--limit", "4")
    bf16 = _scores_file(tmp_path, "--model", "alignlab/tiny-llama", "--data", PAIRS, "--limit", "4",
                        "--mixed-precision", "bf16")
    diffs = [abs(a["chosen_logps"] - b["chosen_logps"]) for a, b in zip(fp32, bf16)]
    assert 0 < max(diffs) < 0.05 * max(abs(a["chosen_logps"]) for a in fp32)  # bf16 matmuls: close, not equal


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--chunk-size", "0"), ("--limit", "0"),
                                             ("--mixed-precision", "fp16"), ("--columns", "{bad")])
def test_bad_options_are_one_line_naming_the_flag(flag, value, tmp_path, capsys):
    code = main(["score", "--model", "alignlab/tiny-llama", "--data", PAIRS, "--out", str(tmp_path / "o"), flag,
                 value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("alignlab: ")
    assert flag.lstrip("-").split("-")[0] in err[0].lower().replace("-", " ").replace("_", " ")


def test_every_record_dropped_is_one_line_saying_why(tmp_path, capsys):
    code = main(["score", "--model", "alignlab/tiny-llama", "--data", PAIRS, "--limit", "3", "--max-length", "8",
                 "--max-prompt-length", "4", "--response-truncation", "drop_example", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pairs.jsonl" in err[0] and "no example left" in err[0] and "3 dropped as too long" in err[0], err
