"""Scoring engine: values against an unbatched float64 computation, bucketing/order invariance, the Parquet cache."""

from __future__ import annotations

import copy
import json
import os

import pyarrow.parquet as pq
import pytest
import torch

from alignlab.diagnostics import scoring
from alignlab.diagnostics.scoring import (
    SCORE_COLUMNS,
    PairScores,
    compute_pair_scores,
    data_fingerprint,
    model_fingerprint,
    score_model,
)
from alignlab.errors import AlignlabError, ConfigError
from alignlab.ops import sequence_logps
from tests.diagnostics._scoring_helpers import perturbed, sample_examples, save_model, tiny_model, write_jsonl


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def examples():
    return sample_examples(11)


def _direct(model, example, side):
    """Unbatched, unpadded float64 reference: full logits of one sequence through ops.sequence_logps."""
    ids = torch.tensor([example[f"{side}_input_ids"]])
    labels = torch.tensor([example[f"{side}_labels"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return sequence_logps(logits, labels).item(), int((labels[0, 1:] != -100).sum())


@pytest.fixture(scope="module")
def reference(model, examples):
    double = copy.deepcopy(model).double().eval()
    return {side: [_direct(double, e, side) for e in examples] for side in ("chosen", "rejected")}


@pytest.mark.parametrize(("path", "batch_size", "packed"), [
    ("chunked", 1, "auto"), ("chunked", 4, "auto"), ("logits", 16, "auto"), ("chunked", 4, False),
    ("chunked", 4, True)])
def test_scores_match_unbatched_float64(model, examples, reference, path, batch_size, packed):
    """Padded rows, and packed rows (each prompt once, no padding: what "auto" picks on this model), alike."""
    scores = compute_pair_scores(model, examples, batch_size=batch_size, path=path, chunk_size=7, packed=packed)
    for side in ("chosen", "rejected"):
        want_logps = torch.tensor([lp for lp, _ in reference[side]], dtype=torch.float64)
        want_lengths = torch.tensor([n for _, n in reference[side]])
        torch.testing.assert_close(getattr(scores, f"{side}_logps"), want_logps, rtol=1e-5, atol=2e-3)
        assert torch.equal(getattr(scores, f"{side}_lengths"), want_lengths)
        # lengths independently: the response tokens are what follows the prompt
        assert [
            len(e[f"{side}_input_ids"]) - len(e["prompt_input_ids"]) for e in examples
        ] == want_lengths.tolist()
    assert scores.index.tolist() == [e["index"] for e in examples]
    assert scores.alpha is None


def test_packed_rows_are_refused_where_not_exact(examples):
    flash = tiny_model()
    flash.config._attn_implementation = "flash_attention_2"  # takes no 4D block mask
    with pytest.raises(ConfigError, match="packed rows .* are not exact on this model"):
        compute_pair_scores(flash, examples, packed=True)
    with pytest.raises(AlignlabError, match="packed must be True, False or 'auto'"):
        compute_pair_scores(flash, examples, packed="yes")


def test_order_restored_and_bucketing_invariant(model, examples):
    base = compute_pair_scores(model, examples, batch_size=1)
    permutation = [7, 2, 10, 0, 5, 9, 1, 3, 8, 4, 6]
    shuffled = [examples[i] for i in permutation]
    for batch_size in (2, 3, 11):
        scores = compute_pair_scores(model, shuffled, batch_size=batch_size)
        assert scores.index.tolist() == [examples[i]["index"] for i in permutation]
        torch.testing.assert_close(scores.chosen_logps, base.chosen_logps[permutation], rtol=1e-6, atol=1e-4)
        torch.testing.assert_close(
            scores.rejected_logps, base.rejected_logps[permutation], rtol=1e-6, atol=1e-4
        )
        assert torch.equal(scores.chosen_lengths, base.chosen_lengths[permutation])


def test_eval_mode_restored_and_no_grad(model, examples):
    model.train()
    scores = compute_pair_scores(model, examples[:2])
    assert model.training
    model.eval()
    assert not scores.chosen_logps.requires_grad


def test_alpha_column_from_alpha_and_votes(tmp_path, model):
    records = [
        {"prompt": "Say hi.", "chosen": "Hi there, friend!", "rejected": "No.", "alpha": 0.75},
        {"prompt": "Say bye.", "chosen": "Goodbye and take care.", "rejected": "Whatever.", "alpha": 1.0},
    ]
    path = write_jsonl(tmp_path / "alpha.jsonl", records)
    scores = compute_pair_scores(model, sample_examples(2, source=path))
    assert scores.alpha.tolist() == [0.75, 1.0]
    voted = [dict(r, votes=v) for r, v in zip(records, ([1, 1, 2, 1], [2, 2, 2]))]
    for r in voted:
        r.pop("alpha")
    path = write_jsonl(tmp_path / "votes.jsonl", voted)
    scores = compute_pair_scores(model, sample_examples(2, source=path))
    assert scores.alpha.tolist() == [0.75, 0.0]
    assert scores.to_table().column_names == [*SCORE_COLUMNS, "alpha"]


def test_table_round_trip(model, examples):
    scores = compute_pair_scores(model, examples[:3])
    table = scores.to_table()
    assert table.column_names == list(SCORE_COLUMNS)
    back = PairScores.from_table(table)
    for name in SCORE_COLUMNS:
        assert torch.equal(getattr(back, name), getattr(scores, name))


def test_cache_hit_does_not_load_the_model(tmp_path, monkeypatch, examples):
    first, path = score_model("alignlab/tiny-llama", examples, cache_root=tmp_path, data_settings={"m": 1})
    assert path is not None and path.is_file() and path.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded on a cache hit")

    monkeypatch.setattr(scoring, "load_scoring_model", refuse)
    monkeypatch.setattr(scoring, "compute_pair_scores", refuse)
    second, path2 = score_model("alignlab/tiny-llama", examples, cache_root=tmp_path, data_settings={"m": 1})
    assert path2 == path
    assert second.to_table().equals(first.to_table())
    metadata = json.loads(pq.read_schema(path).metadata[b"alignlab"])
    assert metadata["model"] == "alignlab/tiny-llama" and metadata["data_settings"] == {"m": 1}


def test_corrupt_cache_is_recomputed(tmp_path, examples):
    first, path = score_model("alignlab/tiny-llama", examples[:2], cache_root=tmp_path)
    path.write_bytes(b"not parquet")
    again, _ = score_model("alignlab/tiny-llama", examples[:2], cache_root=tmp_path)
    assert again.to_table().equals(first.to_table())
    assert PairScores.from_table(pq.read_table(path)).to_table().equals(first.to_table())


def test_cache_key_changes_with_data(examples):
    base = data_fingerprint(examples, {"max_length": 512})
    assert data_fingerprint(examples, {"max_length": 512}) == base
    assert data_fingerprint(examples, {"max_length": 256}) != base
    assert data_fingerprint(examples[:-1], {"max_length": 512}) != base
    edited = [dict(e) for e in examples]
    edited[3]["rejected_input_ids"] = edited[3]["rejected_input_ids"][:-1] + [
        edited[3]["rejected_input_ids"][-1] + 1
    ]
    assert data_fingerprint(edited, {"max_length": 512}) != base
    relabelled = [dict(e) for e in examples]
    relabelled[0]["chosen_labels"] = [-100] + relabelled[0]["chosen_labels"][1:]
    relabelled[0]["chosen_labels"][len(relabelled[0]["prompt_input_ids"])] = -100
    assert data_fingerprint(relabelled, {"max_length": 512}) != base


def test_cache_key_changes_with_model(tmp_path, model):
    directory = save_model(model, tmp_path / "m")
    before = model_fingerprint(directory)
    assert model_fingerprint(str(directory)) == before
    stat = os.stat(directory / "model.safetensors")
    save_model(perturbed(model), directory)  # weights rewritten in place
    os.utime(directory / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert model_fingerprint(directory) != before
    config = (directory / "config.json").read_text()
    changed = model_fingerprint(directory)
    (directory / "config.json").write_text(
        config.replace('"num_hidden_layers": 4', '"num_hidden_layers": 4 ')
    )
    assert model_fingerprint(directory) != changed
    assert model_fingerprint("alignlab/tiny-llama", seed=0) != model_fingerprint(
        "alignlab/tiny-llama", seed=1
    )
    assert model_fingerprint("no-such-org/no-such-model") is None


def test_lora_adapter_dir_is_merged(tmp_path, model, examples):
    peft = pytest.importorskip("peft")
    base_dir = save_model(model, tmp_path / "base")
    lora = peft.get_peft_model(
        scoring.load_scoring_model(base_dir),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    want = compute_pair_scores(lora, examples[:4])
    lora.save_pretrained(tmp_path / "adapter")
    merged = scoring.load_scoring_model(tmp_path / "adapter")
    assert not hasattr(merged, "peft_config")
    got = compute_pair_scores(merged, examples[:4])
    torch.testing.assert_close(got.chosen_logps, want.chosen_logps, rtol=1e-5, atol=1e-3)
    assert torch.ne(want.chosen_logps, compute_pair_scores(model, examples[:4]).chosen_logps).any()


def test_errors(model, examples):
    with pytest.raises(AlignlabError, match="path"):
        compute_pair_scores(model, examples, path="fast")
    with pytest.raises(AlignlabError, match="batch size"):
        compute_pair_scores(model, examples, batch_size=0)
    with pytest.raises(AlignlabError, match="no preference pairs"):
        compute_pair_scores(model, [])
    with pytest.raises(AlignlabError, match="cannot load model"):
        scoring.load_scoring_model("/nonexistent/model-dir")
