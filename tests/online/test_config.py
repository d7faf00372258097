"""The online section of a training config: its keys, their one-line errors, and each round's training config."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignlab.errors import ConfigError
from alignlab.online import PAIR_RULES, round_config
from alignlab.train.config import KEYS, SECTIONS, load_config

JUDGE = {"kind": "callable", "function": "tests.online.rules:count_target", "batched": True}
ON = {"method": "dpo", "rounds": 2, "judge": JUDGE}


def test_online_is_off_by_default_and_its_keys_then_rejected():
    assert load_config(overrides=["method=dpo"]).online.rounds is None
    with pytest.raises(ConfigError, match=r"^config key 'samples_per_prompt' applies to online training: set rounds"):
        load_config(overrides=["samples_per_prompt=8"])


@pytest.mark.parametrize("extra, match", [
    ({"judge": None}, "config key 'judge' is required with online rounds"),
    ({"judge": ["py:m:f"]}, "config key 'judge' must be a name or a mapping"),
    ({"rounds": 0}, "config key 'rounds' must be >= 1"),
    ({"samples_per_prompt": 1}, "config key 'samples_per_prompt' must be >= 2"),
    ({"prompts_per_round": 0}, "config key 'prompts_per_round' must be >= 1 or null"),
    ({"steps_per_round": 0}, "config key 'steps_per_round' must be >= 1 or null"),
    ({"temperature": 0}, "config key 'temperature' must be > 0"),
    ({"top_p": 0}, r"config key 'top_p' must be in \(0, 1\]"),
    ({"top_k": -1}, "config key 'top_k' must be >= 0"),
    ({"min_margin": -1}, "config key 'min_margin' must be >= 0"),
    ({"pair_rule": "best_worst"}, "config key 'pair_rule' must be one of best_vs_worst, all_pairs"),
    ({"reference": "previous"}, "config key 'reference' must be one of fixed, previous_round"),
    ({"method": "sft"}, "online rounds train on pairs; method 'sft' does not"),
    ({"method": "kto"}, "online rounds train on pairs; method 'kto' does not"),
    ({"method": "simpo", "reference": "previous_round"}, "config key 'reference' applies to methods with a reference"),
    ({"reference": "previous_round", "ref_model": "alignlab/tiny-llama"}, "config key 'ref_model' names a fixed"),
    ({"lora": True}, "lora: true is not supported with online rounds"),
    ({"max_steps": 10}, "config key 'max_steps' counts the steps of one run; with online rounds set steps_per_round"),
    ({"eval_steps": 5}, "config key 'eval_steps' has no effect with online rounds"),
])
def test_bad_online_keys_are_one_line_errors(extra, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config(base={**ON, **extra})
    assert "\n" not in str(info.value)


def test_a_recipe_groups_online_keys_in_its_section(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dpo\nonline: {rounds: 3, judge: 'py:m:f', samples_per_prompt: 6, "
                      "pair_rule: all_pairs, min_margin: 1}\n")
    cfg = load_config(recipe, ["online.top_k=5"])
    assert (cfg.online.rounds, cfg.online.judge, cfg.online.samples_per_prompt) == (3, "py:m:f", 6)
    assert (cfg.online.pair_rule, cfg.online.min_margin, cfg.online.top_k) == ("all_pairs", 1.0, 5)
    assert {k for k, (s, _) in KEYS.items() if s == "online"} >= {"rounds", "judge", "reference", "steps_per_round"}
    assert load_config(base=cfg.to_dict()).to_dict() == cfg.to_dict()  # config.yaml round-trips, judge included
    recipe.write_text("online: {round: 3}\n")
    with pytest.raises(ConfigError, match="'round' is not a config key \\(did you mean 'rounds'\\?\\)"):
        load_config(recipe)
    recipe.write_text("online: {learning_rate: 1}\n")
    with pytest.raises(ConfigError, match="key 'learning_rate' belongs to section 'optim', not 'online'"):
        load_config(recipe)


def test_the_config_offers_the_pair_rules_the_pairing_knows():
    field = next(f for f in SECTIONS["online"].__dataclass_fields__.values() if f.name == "pair_rule")
    assert field.metadata["choices"] == PAIR_RULES


@pytest.mark.parametrize("reference", ["fixed", "previous_round"])
def test_each_round_trains_on_its_pairs_from_the_previous_policy(reference, tmp_path):
    cfg = load_config(base={**ON, "reference": reference, "steps_per_round": 7, "run_dir": str(tmp_path / "run"),
                            "eval_fraction": 0.2, "limit": 30, "columns": {"prompt": "question"}})
    first, second = round_config(cfg, 0), round_config(cfg, 1)
    rounds = tmp_path / "run" / "rounds"
    assert first.model.name == "alignlab/tiny-llama" and first.model.ref_model is None  # a copy of the policy
    assert second.model.name == str(rounds / "round-000" / "train" / "final")
    # fixed: the initial model (built-ins load with the run's seed: the same weights); previous_round: none named,
    # so the trainer copies the policy the round starts from
    assert second.model.ref_model == ("alignlab/tiny-llama" if reference == "fixed" else None)
    for r, round_cfg in enumerate((first, second)):
        assert round_cfg.data.train_data == str(rounds / f"round-{r:03d}" / "pairs.jsonl")
        assert round_cfg.run.run_dir == str(rounds / f"round-{r:03d}" / "train")
        assert round_cfg.optim.max_steps == 7 and round_cfg.online.rounds is None
        # the prompt source's settings stay with it; the held-out set is the online run's
        assert (round_cfg.data.limit, round_cfg.data.columns, round_cfg.data.eval_fraction) == (None, {}, 0.0)
        assert round_cfg.model.tokenizer == "alignlab/tiny-llama"


def test_every_online_recipe_is_an_online_config():
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    for name in ("online_dpo.yaml", "iterative_dpo.yaml"):
        cfg = load_config(recipes / name)
        assert cfg.online.rounds is not None and cfg.method.record.paired
    assert load_config(recipes / "iterative_dpo.yaml").online.reference == "previous_round"


def test_the_offline_trainer_refuses_an_online_config():
    from alignlab.train import Trainer

    with pytest.raises(ConfigError, match="^config key 'rounds' asks for online training: run it with"):
        Trainer(load_config(base=ON))
