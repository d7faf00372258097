from pathlib import Path

import pytest

from alignlab.errors import ConfigError
from alignlab.losses.registry import METHODS
from alignlab.train.config import (
    KEYS,
    METHOD_KEYS,
    SECTIONS,
    DataConfig,
    TrainConfig,
    describe_keys,
    load_config,
    run_config_values,
)


def test_defaults_validate_and_papers_defaults():
    cfg = load_config(base={"method": "tdpo2"})
    assert cfg.method.params.beta == 0.1 and cfg.method.params.tdpo_alpha == 0.5
    assert load_config(base={"method": "simpo"}).method.params.beta == 2.0
    assert load_config(base={"method": "ift"}).method.resolved_freeze_input_embeddings


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
    assert load_config(overrides=["method=dpo", "learning_rate=1e-4"]).optim.learning_rate == 1e-4


def test_every_key_documented_under_its_section():
    text = describe_keys()
    for key, (section, _) in KEYS.items():
        assert f"\n{key} " in "\n" + text
        block = text.split(f"[{section}]")[1].split("\n[")[0]
        assert f"\n{key} " in block, (key, section)


@pytest.mark.parametrize("overrides,match", [
    (["method=fdpo", "fdpo_alpha=0.3"], "'fdpo_alpha' has no effect without fdpo_divergence: alpha"),
    (["method=ift", "ift_ramp_steps=10"], "'ift_ramp_steps' has no effect without ift_lambda_schedule: linear"),
    (["method=dpo", "ref_cache_dir=/tmp/x"], "'ref_cache_dir' has no effect without precompute_ref_logps"),
    (["method=dpo", "chunked_ops=false", "chunk_size=64"], "'chunk_size' has no effect"),
    (["method=dpo", "chunked_ops=false", "chunk_mib=16"], "'chunk_mib' has no effect"),
    (["method=dpo", "chunk_mib=0"], "'chunk_mib' must be >= 1"),
    (["method=ift", "ift_lambda_noise_std=-1"], "'ift_lambda_noise_std' must be >= 0"),
    (["method=ift", "ift_gamma=1.0"], r"'ift_gamma' must be in \[0, 1\)"),
    (["method=tdpo2", "beta=-0.1"], "'beta' must be > 0"),
    (["method=dpo", "max_grad_norm=0"], "'max_grad_norm' must be > 0"),
    (["method=dpo", "packing_tokens=256"], "'packing_tokens' has no effect without packing: true"),
    (["method=dpo", "packing=true", "packing_tokens=0"], "'packing_tokens' must be >= 1"),
])
def test_keys_without_effect_or_out_of_range_are_rejected(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


@pytest.mark.parametrize("recipe", sorted(p for p in (Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml")
                                           if p.parent.name != "accelerate"),  # launch configs: tests/train/test_fsdp.py
                         ids=lambda p: p.name)
def test_every_recipe_loads(recipe):
    cfg = load_config(recipe)
    assert cfg.method.params == cfg.method.record.make_params(cfg.method.values())


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
    assert load_config(base=run_config_values(old)).method.params.fdpo_divergence == "forward_kl"


def test_method_keys_are_the_registrys_hyper_parameters():
    assert set(METHOD_KEYS) == {k for m in METHODS.values() for k in m.param_keys()}


def test_flat_keys_map_to_their_sections():
    cfg = load_config(overrides=["method=dpo", "model=alignlab/tiny-llama", "learning_rate=1e-4", "max_length=128",
                                 "max_prompt_length=64", "seed=3", "lora=true", "beta=0.2"])
    assert (cfg.method.name, cfg.model.name, cfg.optim.learning_rate) == ("dpo", "alignlab/tiny-llama", 1e-4)
    assert (cfg.data.max_length, cfg.run.seed, cfg.model.lora, cfg.method.params.beta) == (128, 3, True, 0.2)
    flat = cfg.to_dict()
    assert set(flat) == set(KEYS) and flat["method"] == "dpo" and flat["learning_rate"] == 1e-4
    assert load_config(base=flat).to_dict() == flat  # config.yaml round-trips
    assert {s for s, _ in KEYS.values()} == set(SECTIONS) == {"method", "data", "optim", "model", "run", "online"}


def test_a_recipe_may_group_keys_by_section(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: {name: dpo, beta: 0.3}\nmodel: {name: alignlab/tiny-llama}\n"
                      "optim: {learning_rate: 1.0e-5}\ndata: {max_length: 64, max_prompt_length: 32}\nseed: 2\n")
    cfg = load_config(recipe, ["optim.micro_batch_size=4", "data.max_length=96"])
    assert (cfg.method.name, cfg.method.params.beta, cfg.optim.learning_rate) == ("dpo", 0.3, 1e-5)
    assert (cfg.data.max_length, cfg.optim.micro_batch_size, cfg.run.seed) == (96, 4, 2)
    recipe.write_text("optim: {max_length: 64}\n")
    with pytest.raises(ConfigError, match="'max_length' belongs to section 'data', not 'optim'"):
        load_config(recipe)
    with pytest.raises(ConfigError, match="'optimiser' is not a config section"):
        load_config(overrides=["optimiser.learning_rate=1"])


@pytest.mark.parametrize("override", ["beta=nan", "beta=.inf", "learning_rate=nan", "learning_rate=-.inf",
                                      "eval_fraction=.nan", "adam_betas=[0.9, .nan]", "max_grad_norm=.inf"])
def test_non_finite_numbers_are_rejected(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=f"'{key}' must (be a finite number|hold finite numbers)"):
        load_config(overrides=["method=dpo", override])


def test_a_section_validates_itself():
    with pytest.raises(ConfigError, match="'max_prompt_length' must be smaller than 'max_length'"):
        DataConfig(max_length=64, max_prompt_length=64).validate()
    with pytest.raises(ConfigError, match="'data_format' must be one of"):
        DataConfig(data_format="csv").validate()
    assert DataConfig(data_format="unpaired").spec("test").split == "test"  # every format the loaders read
    with pytest.raises(ConfigError, match="'method' must be one of"):
        TrainConfig.from_values({"method": "dpoo"}).validate()


@pytest.mark.parametrize("key,hint", [("data", "train_data"), ("lr", "learning_rate"),
                                      ("batch_size", "micro_batch_size"), ("output_dir", "run_dir")])
def test_common_wrong_keys_get_the_right_hint(key, hint):
    with pytest.raises(ConfigError, match=f"'{key}' is not a config key \\(did you mean '{hint}'\\?\\)"):
        load_config(overrides=[f"{key}=1"])


def test_the_data_section_is_the_loaders_one_settings_object(tmp_path):
    cfg = load_config(overrides=["method=sft", "max_length=64", "max_prompt_length=16", "sft_turns=last",
                                 "prompt_truncation=keep_start", "limit=5", "columns={prompt: question}"])
    spec = cfg.data.spec("validation")
    assert (spec.split, spec.max_length, spec.max_prompt_length, spec.sft_turns, spec.limit) == (
        "validation", 64, 16, "last", 5)
    assert spec.prompt_truncation == "keep_start" and dict(spec.columns) == {"prompt": "question"}


def test_loading_a_config_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom alignlab.train.config import load_config\n"
            "try:\n    load_config(overrides=['lr=1'])\nexcept Exception:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_run_saved_before_drop_identical_pairs_resumes_on_the_same_examples():
    old = load_config(overrides=["method=dpo"]).to_dict()
    del old["drop_identical_pairs"]  # config.yaml of an earlier version: it kept identical pairs
    assert load_config(base=run_config_values(old)).data.drop_identical_pairs is False


def test_base_values_may_be_grouped_and_an_empty_section_is_nothing(tmp_path):
    cfg = load_config(base={"method": {"name": "dpo", "beta": 0.2}, "optim": {"learning_rate": 1e-5}})
    assert (cfg.method.name, cfg.method.params.beta, cfg.optim.learning_rate) == ("dpo", 0.2, 1e-5)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: dpo\noptim:\n")
    assert load_config(recipe).optim.learning_rate == 5e-6
