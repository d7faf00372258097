"""Online rounds end to end on the tiny model with a rule judge (the count of 'e' in a completion): online DPO
raises the judge's reward where offline DPO on the reference's samples plateaus, training on exactly the sampled
ids; a run interrupted between sampling and training and again mid-round resumes to the uninterrupted run's
weights and metrics (with a non-zero seed, and run_dir spelled another way); the reference is the initial model
or the previous round's policy; prompt-only eval_data gets pairs from the initial policy; what cannot run is
refused before anything is written; the recipe trains through the CLI."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
import torch

from alignlab.assets import load_model, load_tokenizer
from alignlab.cli import main
from alignlab.data import SAMPLES_DIR
from alignlab.data.prompts import PromptItem, read_prompts
from alignlab.errors import AlignlabError, ConfigError
from alignlab.online import round_dir, run_online
from alignlab.online.sampling import sample_and_judge
from alignlab.train import Trainer, load_config, train
from alignlab.train.metrics import read_metrics
from tests.online.rules import CountJudge

ROOT = Path(__file__).resolve().parents[2]
# 16 prompts, half held out; 4 samples of 8 tokens each; one optimizer step is the round's 8 best-vs-worst pairs.
# The learning rate is high because the tiny model is random: a few steps must move its samples.
SMALL = {"method": "dpo", "beta": 0.1, "micro_batch_size": 8, "max_length": 64, "max_prompt_length": 32,
         "optimizer": "adamw", "learning_rate": 1e-2, "lr_scheduler": "constant", "tensorboard": False,
         "progress": False, "samples_per_prompt": 4, "max_new_tokens": 8, "eval_fraction": 0.5,
         "judge": {"kind": "callable", "function": "tests.online.rules:count_target", "batched": True}}


@pytest.fixture
def prompts(tmp_path):
    """16 prompt-only records (the bundled pairs' first prompts)."""
    path = tmp_path / "prompts.jsonl"
    items = read_prompts(str(SAMPLES_DIR / "pairs.jsonl"), limit=40)[:16]
    path.write_text("".join(json.dumps({"prompt": item.prompt}) + "\n" for item in items), encoding="utf-8")
    return str(path)


def _config(prompts, run_dir, **keys):
    return load_config(base={**SMALL, "train_data": prompts, "run_dir": str(run_dir), **keys})


def _heldout_reward(run_dir: Path, model_dir: Path) -> float:
    """The judge's mean reward of a model's samples on the run's held-out prompts with the run's held-out seeds."""
    baseline = json.loads((run_dir / "heldout" / "baseline.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "heldout" / "samples.jsonl").read_text().splitlines()]
    items = [PromptItem(r["prompt"], r["prompt_index"], "") for r in rows if r["sample_index"] == 0]
    samples = sample_and_judge(load_model(str(model_dir)).eval(), load_tokenizer("alignlab/tiny-llama"), items,
                               [item.index for item in items], CountJudge(), n=SMALL["samples_per_prompt"],
                               seed=baseline["seed"], temperature=1.0, top_p=1.0, top_k=0,
                               max_new_tokens=SMALL["max_new_tokens"], batch_size=64)
    return statistics.fmean(s["reward"] for s in samples)


def _first_loss(train_dir: Path) -> float:
    return next(line["loss"] for line in read_metrics(train_dir) if "loss" in line)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_online_dpo_raises_the_reward_where_offline_dpo_plateaus(prompts, tmp_path, monkeypatch):
    steps = 6
    run = tmp_path / "online"
    trained, original_train = {}, Trainer.train

    def recording_train(self):  # what each round's trainer trained on
        trained[self.run_dir.parent.name] = self.train_examples
        return original_train(self)

    monkeypatch.setattr(Trainer, "train", recording_train)
    result = run_online(_config(prompts, run, rounds=3, steps_per_round=steps), judge=CountJudge())
    online = [result.initial["heldout/reward_mean"]] + [r["heldout/reward_mean"] for r in result.rounds]

    # offline DPO: the same training on round 0's pairs (the reference's samples) for all three rounds' steps
    offline_keys = {k: v for k, v in SMALL.items() if k not in ("judge", "samples_per_prompt", "max_new_tokens")}
    train(load_config(base={**offline_keys, "train_data": str(round_dir(run, 0) / "pairs.jsonl"),
                            "eval_fraction": 0.0, "max_steps": 3 * steps, "save_steps": steps,
                            "save_total_limit": None, "run_dir": str(tmp_path / "offline")}))
    offline = [_heldout_reward(run, tmp_path / "offline" / name)
               for name in (f"checkpoint-{steps}", f"checkpoint-{2 * steps}", "final")]

    # the round's metric is what it says: the trained policy's reward on the held-out prompts and seeds
    assert online[3] == _heldout_reward(run, round_dir(run, 2) / "train" / "final")
    # both start from the same first round (same pairs, steps and constant learning rate)
    assert offline[0] == online[1]
    assert online[1] < online[2] < online[3] and online[3] > online[0] + 5
    # offline gains little after its first round's worth of steps; online keeps climbing
    assert offline[2] - offline[0] < (online[3] - online[1]) / 4
    assert online[3] > offline[2] + 5
    # a fixed reference: round 1 trains against the initial model, not the policy it starts from
    assert json.loads((round_dir(run, 1) / "round.json").read_text())["reference"] == "alignlab/tiny-llama"
    assert abs(_first_loss(round_dir(run, 1) / "train") - math.log(2)) > 1e-3
    for metrics in result.rounds:
        assert metrics["pairs"] == 8 and metrics["pairs/margin_min"] > 0
        assert 0 <= metrics["pairs/ranking_accuracy"] <= 1 and metrics["heldout/pairs"] > 0
        assert metrics["heldout/flips/incorrect_to_correct"] >= 0
    assert [json.loads(line) for line in (run / "online_metrics.jsonl").read_text().splitlines()] == result.rounds

    # round 0 trained on exactly the sampled ids: no re-tokenized text, no EOS added to a sample cut off at
    # max_new_tokens (the prompt only cut to max_prompt_length from its start, keep_end)
    samples = {(s["prompt_index"], s["sample_index"]): s for s in _read_jsonl(round_dir(run, 0) / "samples.jsonl")}
    pairs = _read_jsonl(round_dir(run, 0) / "pairs.jsonl")
    examples = trained["round-000"]
    assert sorted(e["index"] for e in examples) == list(range(len(pairs)))
    used = []
    for example in examples:
        pair = pairs[example["index"]]
        n = len(example["prompt_input_ids"])
        for side in ("chosen", "rejected"):
            sample = samples[(pair["prompt_index"], pair[f"{side}_sample"])]
            assert example[f"{side}_input_ids"][n:] == example[f"{side}_labels"][n:] == sample["completion_ids"]
            assert example["prompt_input_ids"] == sample["prompt_ids"][len(sample["prompt_ids"]) - n:]
            used.append(sample)
    cut_off = [s for s in used if not s["finished"]]
    assert cut_off and all(len(s["completion_ids"]) == SMALL["max_new_tokens"] for s in cut_off)
    assert all(s["completion_ids"][-1] == 0 for s in used if s["finished"])  # the tiny tokenizer's EOS
    assert result.rounds[0]["samples/truncated_fraction"] == statistics.fmean(not s["finished"]
                                                                              for s in samples.values())


class _Stop(Exception):
    pass


class _CountingJudge(CountJudge):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def score_batch(self, prompts, completions):
        self.calls += 1
        return super().score_batch(prompts, completions)


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*.jsonl"))
            if "train" not in p.relative_to(run).parts and p.name != "online_metrics.jsonl"}


def _without_paths(rounds):
    return [{k: v for k, v in r.items() if k not in ("policy", "reference")} for r in rounds]


def test_resume_mid_round_equals_an_uninterrupted_run(prompts, tmp_path, monkeypatch):
    # seed 1: a built-in model loads with it, a trained round's final/ without (it has its own weights)
    keys = {"rounds": 2, "steps_per_round": 4, "save_steps": 2, "reference": "previous_round",
            "pair_rule": "all_pairs", "min_margin": 1.0, "seed": 1}
    full = run_online(_config(prompts, tmp_path / "full", **keys), judge=CountJudge())

    # started with a relative run_dir, finished with the absolute one
    monkeypatch.chdir(tmp_path)
    cut, relative = tmp_path / "cut", Path("cut")
    judge = _CountingJudge()
    original_train, original_step = Trainer.train, Trainer.train_step

    def stop_before_round_0(self):
        if "round-000" in str(self.run_dir):
            raise _Stop()
        return original_train(self)

    def stop_in_round_1(self, step):
        if "round-001" in str(self.run_dir) and step == 3:
            raise _Stop()
        return original_step(self, step)

    monkeypatch.setattr(Trainer, "train", stop_before_round_0)
    with pytest.raises(_Stop):  # after sampling and pairing round 0, before its training
        run_online(_config(prompts, relative, **keys), judge=judge)
    assert judge.calls == 2 and (round_dir(cut, 0) / "pairs.jsonl").is_file()  # held-out set, round 0
    monkeypatch.setattr(Trainer, "train", original_train)
    monkeypatch.setattr(Trainer, "train_step", stop_in_round_1)
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        run_online(_config(prompts, relative, **keys), judge=judge)
    with pytest.raises(_Stop):  # round 1, after its checkpoint at step 2
        run_online(_config(prompts, relative, **keys), judge=judge, resume=True)
    assert judge.calls == 4  # round 0's held-out metrics and round 1's samples: nothing sampled again
    assert sorted(p.name for p in (round_dir(cut, 1) / "train").glob("checkpoint-*")) == ["checkpoint-2"]
    monkeypatch.setattr(Trainer, "train_step", original_step)
    with pytest.raises(ConfigError, match="config key 'samples_per_prompt' is 3 but the run was started with 4"):
        run_online(_config(prompts, cut, **{**keys, "samples_per_prompt": 3}), judge=judge, resume=True)
    resumed = run_online(_config(prompts, cut, **keys), judge=judge, resume=True)
    assert judge.calls == 5  # round 1's held-out metrics

    for r in range(2):
        expected = load_model(str(round_dir(tmp_path / "full", r) / "train" / "final")).state_dict()
        got = load_model(str(round_dir(cut, r) / "train" / "final")).state_dict()
        assert all(torch.equal(got[name], value) for name, value in expected.items())
    assert _without_paths(resumed.rounds) == _without_paths(full.rounds)
    assert resumed.initial == full.initial
    assert _files(cut) == _files(tmp_path / "full")  # samples and pairs, held-out set included
    assert [line["step"] for line in read_metrics(round_dir(cut, 1) / "train") if "loss" in line] == [1, 2, 3, 4]
    # iterative DPO: every round starts with the reference equal to its policy, so its first loss is log 2
    assert resumed.rounds[1]["reference"] == str(round_dir(cut, 0) / "train" / "final")
    for r in range(2):
        assert _first_loss(round_dir(cut, r) / "train") == pytest.approx(math.log(2), abs=1e-6)
    with pytest.raises(ConfigError, match="has finished its 2 rounds: raise rounds to go on"):
        run_online(_config(prompts, cut, **keys), judge=judge, resume=True)


def test_the_recipe_trains_and_resumes_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the recipe names its judge by a path relative to the repository
    run = tmp_path / "run"
    argv = ["train", "--config", "recipes/online_dpo.yaml", f"run_dir={run}", "steps_per_round=1",
            "prompts_per_round=8", "micro_batch_size=4", "max_new_tokens=6", "eval_fraction=0.02", "progress=false",
            "tensorboard=false"]
    assert main([*argv, "rounds=1"]) == 0
    assert "online rounds (held-out" in capsys.readouterr().out
    assert main([*argv, "rounds=1"]) == 2
    assert "already holds a run: pass --resume" in capsys.readouterr().err
    assert main([*argv, "rounds=2", "--track-flips", "4", "--resume"]) == 2
    assert "--track-flips applies to offline training" in capsys.readouterr().err
    assert main([*argv, "rounds=2", "--resume"]) == 0
    lines = [json.loads(line) for line in (run / "online_metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [0, 1] and (round_dir(run, 1) / "train" / "final").is_dir()


def test_run_online_refuses_what_it_cannot_do(prompts, tmp_path, monkeypatch):
    cfg = _config(prompts, tmp_path / "run", rounds=1)

    class Pairwise:
        pairwise = True

        def compare_batch(self, prompts, a, b):
            return [0.5] * len(prompts)

    with pytest.raises(ConfigError, match="online rounds need a reward judge"):
        run_online(cfg, judge=Pairwise())
    with pytest.raises(ConfigError, match="run_online needs online rounds"):
        run_online(load_config(base={"method": "dpo"}), judge=CountJudge())
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="online rounds run in one process"):
        run_online(cfg, judge=CountJudge())
    assert not (tmp_path / "run").exists()


def test_prompt_only_eval_data_gets_pairs_from_the_initial_policy(prompts, tmp_path):
    lines = Path(prompts).read_text().splitlines()
    train_path, eval_path = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train_path.write_text("\n".join(lines[:12]) + "\n")
    eval_path.write_text("\n".join(lines[12:]) + "\n")
    run = tmp_path / "run"
    result = run_online(_config(str(train_path), run, rounds=1, steps_per_round=1, micro_batch_size=4,
                                eval_data=str(eval_path), eval_fraction=0.0), judge=CountJudge())
    baseline = json.loads((run / "heldout" / "baseline.json").read_text())
    assert baseline["prompts"] == 4 and baseline["pairs_file"] == str(run / "heldout" / "pairs.jsonl")
    pairs = _read_jsonl(run / "heldout" / "pairs.jsonl")
    assert {p["prompt"] for p in pairs} <= {json.loads(line)["prompt"] for line in lines[12:]}
    assert result.initial["heldout/pairs"] == len(pairs) == result.rounds[0]["heldout/pairs"] > 0


class _Tie(CountJudge):
    def score_batch(self, prompts, completions):
        return [1.0] * len(completions)


def test_what_cannot_run_is_refused_before_anything_is_written(prompts, tmp_path):
    run = tmp_path / "run"
    for keys, match in (({"prompts_per_round": 9}, "'prompts_per_round' is 9, more than the 8 training prompts"),
                        ({"micro_batch_size": 16}, "a round gives at most 8 pairs .* one optimizer step's 16")):
        with pytest.raises(ConfigError, match=match):
            run_online(_config(prompts, run, rounds=1, **keys), judge=CountJudge())
        assert [p.name for p in run.iterdir()] == [".alignlab.lock"]  # a later start is not a resume
    # a judge that ties every sample gives no pair: the run cannot go on, whatever a resume would do
    with pytest.raises(AlignlabError, match="gave 0 pairs, fewer than one optimizer step's 8 .* start again in a "
                                            "new run_dir"):
        run_online(_config(prompts, run, rounds=1, eval_fraction=0.0, max_new_tokens=2), judge=_Tie())
