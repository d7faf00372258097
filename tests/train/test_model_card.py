"""The model card of a finished run (final/README.md) and `alignlab push`, up to the network call."""

from __future__ import annotations

import json
import sys

import huggingface_hub
import pytest
import yaml
from huggingface_hub import HfApi, ModelCard

from alignlab.assets import load_tokenizer
from alignlab.cache import data_fingerprint
from alignlab.cli import main as cli_main
from alignlab.data import SAMPLES_DIR, DataSpec, load_preference_data
from alignlab.diagnostics.report import recorded_fingerprint
from alignlab.errors import ConfigError
from alignlab.train.checkpoint import write_manifest
from alignlab.train.config import TrainConfig
from alignlab.train.model_card import examples_fingerprint, invoked_command, push_final, write_model_card

COMMAND = "alignlab train --config recipes/dpo.yaml beta=0.2 run_dir=runs/card"


@pytest.fixture
def finished_run(tmp_path):
    """A run directory as a finished DPO run leaves it (config.yaml, metrics.jsonl, final/ with a manifest)."""
    run = tmp_path / "runs" / "card"
    (run / "final").mkdir(parents=True)
    config = TrainConfig.from_values({"method": "dpo", "beta": 0.2, "model": "gpt2", "run_dir": str(run),
                                      "learning_rate": 1e-6, "train_data": "trl-lib/ultrafeedback_binarized"})
    (run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()), encoding="utf-8")
    records = [{"step": 0, "eval/loss": 0.6931}, {"step": 1, "loss": 0.7, "tokens_per_s": 90.0},
               {"step": 2, "loss": 0.5, "tokens_per_s": 110.0, "epoch": 0.5},
               {"step": 2, "eval/loss": 0.42, "eval/rewards/accuracies": 0.75, "eval/ranking/accuracy": 0.6}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (run / "final" / "config.json").write_text("{}", encoding="utf-8")
    write_manifest(run / "final")
    return run, config


def test_card_documents_the_run(finished_run):
    run, config = finished_run
    examples, _ = load_preference_data(str(SAMPLES_DIR / "pairs.jsonl"), load_tokenizer(), DataSpec(limit=8))
    path = write_model_card(run / "final", run, config, examples=examples, command=COMMAND)
    assert path == run / "final" / "README.md"
    card = ModelCard.load(path)
    meta = card.data.to_dict()
    assert meta["base_model"] == "gpt2" and meta["datasets"] == ["trl-lib/ultrafeedback_binarized"]
    assert {"alignlab", "dpo"} <= set(meta["tags"]) and meta["library_name"] == "transformers"
    fingerprint = data_fingerprint(examples)
    assert meta["alignlab"] == {"method": "dpo", "data_fingerprint": fingerprint}
    text = card.text
    assert "| method | dpo |" in text and "beta 0.2" in text and "learning rate 1e-06" in text
    assert f"`{fingerprint}`" in text and "trl-lib/ultrafeedback_binarized (split train)" in text
    assert "| eval/loss | 0.42 |" in text and "| eval/rewards/accuracies | 0.75 |" in text and "| loss | 0.5 |" in text
    assert "| steps | 2 (0.5 epochs) |" in text and "tokens/s (median step) | 100.0" in text
    assert COMMAND in text
    # the full config is in the card as YAML that loads back to the run's config
    config_block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config_block) == config.to_dict()
    # `alignlab report` reads the recorded fingerprint back
    assert recorded_fingerprint(run) == fingerprint


def test_card_from_the_run_directory_alone(finished_run):
    run, _ = finished_run
    text = write_model_card(run / "final", run, command="").read_text(encoding="utf-8")
    assert "data fingerprint | not recorded" in text and "(command not recorded)" in text


def test_single_response_examples_have_a_fingerprint():
    sft = [{"index": 0, "input_ids": [1, 2, 3], "labels": [-100, 2, 3]}]
    assert examples_fingerprint(sft) != examples_fingerprint([{**sft[0], "labels": [-100, -100, 3]}])


def test_invoked_command_names_alignlab(monkeypatch):
    assert invoked_command(["/venv/bin/alignlab", "train", "beta=0.2", "run_dir=my runs"]) == \
        "alignlab train beta=0.2 'run_dir=my runs'"
    assert invoked_command(["/src/alignlab/cli/__main__.py", "train"]) == "alignlab train"
    monkeypatch.setattr(sys, "argv", ["python", "x.py"])
    assert invoked_command() == "python x.py"


class _Hub:
    """Records the HfApi calls push makes instead of making them."""

    def __init__(self, monkeypatch):
        self.calls = []
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        hub = self

        def create_repo(self, repo_id, **kwargs):
            hub.calls.append(("create_repo", repo_id, kwargs))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs):
            hub.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
            return type("Commit", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"})()

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_push_uploads_final_with_its_card(finished_run, monkeypatch, capsys):
    run, _ = finished_run
    hub = _Hub(monkeypatch)
    assert cli_main(["push", str(run), "me/tiny-dpo", "--private"]) == 0
    (create, upload) = hub.calls
    assert create == ("create_repo", "me/tiny-dpo", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert upload[1] == "me/tiny-dpo" and upload[2]["folder_path"] == run / "final"
    assert upload[2]["repo_type"] == "model"
    assert (run / "final" / "README.md").is_file()  # the run had no card: push wrote one first
    out = capsys.readouterr().out
    assert "wrote" in out and "https://huggingface.co/me/tiny-dpo/commit/abc" in out
    # a second push keeps the card
    (run / "final" / "README.md").write_text("mine\n", encoding="utf-8")
    result = push_final(run, "me/tiny-dpo")
    assert not result.wrote_card and (run / "final" / "README.md").read_text() == "mine\n"


def test_push_refuses_offline_damaged_and_bad_ids(finished_run, monkeypatch, capsys):
    run, _ = finished_run
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert cli_main(["push", str(run), "me/tiny-dpo"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    _Hub(monkeypatch)
    (run / "final" / "config.json").write_text('{"changed": 1}', encoding="utf-8")
    with pytest.raises(ConfigError, match="damaged"):
        push_final(run, "me/tiny-dpo")
    with pytest.raises(ConfigError, match="must look like owner/name"):
        push_final(run, "me/tiny dpo")
