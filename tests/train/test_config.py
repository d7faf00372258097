from pathlib import Path

import pytest

from alignlab.errors import ConfigError
from alignlab.train.config import METHODS, TrainConfig, describe_keys, load_config, run_config_values


def test_defaults_validate_and_papers_defaults():
    cfg = load_config(base={"method": "tdpo2"})
    assert cfg.params.beta == 0.1 and cfg.params.tdpo_alpha == 0.5
    assert load_config(base={"method": "simpo"}).params.beta == 2.0
    assert load_config(base={"method": "ift"}).resolved_freeze_input_embeddings


def test_unknown_key_suggests(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dpo\nlearning_rate_: 1.0e-5\n")
    with pytest.raises(ConfigError, match=r"'learning_rate_' is not a config key \(did you mean 'learning_rate'\?\)"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="command line: 'bta' is not a config key"):
        load_config(overrides=["bta=0.2"])


@pytest.mark.parametrize("overrides,match", [
    (["method=tdpo2", "precompute_ref_logps=true"], "needs the reference model online"),
    (["method=sft", "beta=0.2"], "'beta' applies to method"),
    (["method=tdpo2", "label_smoothing=0.1"], "'label_smoothing' applies to method dpo/cdpo"),
    (["method=cdpo"], "needs config key 'label_smoothing'"),
    (["method=dpo", "optimizer=sgd"], "'optimizer' must be one of adamw, rmsprop"),
    (["method=dpo", "lora_r=4"], "need lora: true"),
    (["method=dpo", "warmup_steps=3", "warmup_ratio=0.1"], "exclusive"),
    (["method=dpo", "micro_batch_size=0"], "'micro_batch_size' must be >= 1"),
    (["method=dpo", "gradient_checkpointing=yes please"], "must be true or false"),
    (["method=dpo", "learning_rate=fast"], "must be a number"),
    (["method=ift", "freeze_input_embeddings=false"], "frozen copy"),
    (["method=dpo", "save_merged=true"], "applies only with lora"),
])
def test_unsupported_combinations_name_the_key(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


def test_yaml_scientific_notation_without_dot():
    assert load_config(overrides=["method=dpo", "learning_rate=1e-4"]).learning_rate == 1e-4


def test_every_key_documented():
    text = describe_keys()
    for name in TrainConfig.__dataclass_fields__:
        assert f"\n{name} " in "\n" + text


@pytest.mark.parametrize("overrides,match", [
    (["method=fdpo", "fdpo_alpha=0.3"], "'fdpo_alpha' has no effect without fdpo_divergence: alpha"),
    (["method=ift", "ift_ramp_steps=10"], "'ift_ramp_steps' has no effect without ift_lambda_schedule: linear"),
    (["method=dpo", "ref_cache_dir=/tmp/x"], "'ref_cache_dir' has no effect without precompute_ref_logps"),
    (["method=dpo", "chunked_ops=false", "chunk_size=64"], "'chunk_size' has no effect"),
    (["method=ift", "ift_lambda_noise_std=-1"], "'ift_lambda_noise_std' must be >= 0"),
    (["method=ift", "ift_gamma=1.0"], r"'ift_gamma' must be in \[0, 1\)"),
    (["method=tdpo2", "beta=-0.1"], "'beta' must be > 0"),
    (["method=dpo", "max_grad_norm=0"], "'max_grad_norm' must be > 0"),
])
def test_keys_without_effect_or_out_of_range_are_rejected(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


@pytest.mark.parametrize("recipe", sorted((Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    cfg = load_config(recipe)
    assert cfg.params == cfg.method_record.make_params(cfg.method_values())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_saved_config_loads_back_for_every_method(method):
    """Resume and `diagnose --run` reload config.yaml: keys without effect are saved as null, not rejected."""
    extra = ["label_smoothing=0.1"] if method == "cdpo" else []
    cfg = load_config(overrides=[f"method={method}", *extra])
    assert load_config(base=run_config_values(cfg.to_dict())).to_dict() == cfg.to_dict()


def test_a_config_saved_before_the_registry_loads():
    """Older runs recorded every method's defaults (fdpo_alpha with forward KL, simpo_gamma for dpo, ...)."""
    old = {"method": "fdpo", "fdpo_divergence": "forward_kl", "fdpo_alpha": 0.5, "simpo_gamma": 0.5,
           "label_smoothing": 0.0, "ift_lambda_min": 0.0, "beta": None}
    assert load_config(base=run_config_values(old)).params.fdpo_divergence == "forward_kl"
