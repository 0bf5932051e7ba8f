"""Config errors name the key and what is allowed; the tiny YAML is the built-in default."""

from __future__ import annotations

import pytest

from seppo_video.config import Config, ConfigError, load_config
from seppo_video.seppo.methods import resolve_method


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_tiny_animatediff_yaml_equals_builtin_defaults(repo_root):
    assert load_config(repo_root / "configs" / "tiny_animatediff.yaml") == Config()


def test_every_shipped_config_loads(repo_root):
    from seppo_video.evaluation.config import load_eval_config
    from seppo_video.study.runner import load_study_config

    loaders = {"eval": load_eval_config, "study": load_study_config}  # their own schemas
    paths = sorted((repo_root / "configs").glob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        loaders.get(path.name.split("_")[0], load_config)(path)


def test_unknown_key_suggests_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'train.learnin_rate'.*did you mean 'train.learning_rate'"):
        load_config(_write(tmp_path, "train:\n  learnin_rate: 0.1\n"))


def test_bad_literal_lists_allowed_values():
    with pytest.raises(ConfigError, match=r"seppo.method: 'ppo' is not allowed \(allowed: 'seppo', 'sft', 'dpo', 'spin', 'ditto'\)"):
        load_config(None, ["seppo.method=ppo"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train.max_steps: expected int, got 'many'"):
        load_config(None, ["train.max_steps=many"])
    with pytest.raises(ConfigError, match=r"data.batch_size: must be positive"):
        load_config(None, ["data.batch_size=0"])


def test_overrides_apply_with_yaml_types():
    config = load_config(None, ["train.max_steps=7", "seppo.beta=5", "model.trainable=lora", "seppo.aaf=indicator"])
    assert config.train.max_steps == 7 and config.seppo.beta == 5.0 and isinstance(config.seppo.beta, float)
    assert config.model.trainable == "lora" and config.seppo.aaf == "indicator"
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.max_steps"])


def test_exponent_without_a_dot_is_a_float():
    # YAML 1.1 (PyYAML) reads ``1e-4`` as the string "1e-4"; a float field still takes it.
    config = load_config(None, ["train.learning_rate=1e-4", "seppo.beta=5E2"])
    assert config.train.learning_rate == 1e-4 and config.seppo.beta == 500.0
    with pytest.raises(ConfigError, match="train.learning_rate"):
        load_config(None, ["train.learning_rate=fast"])
    with pytest.raises(ConfigError, match="train.max_steps"):
        load_config(None, ["train.max_steps=1e3"])  # integers stay integers


def test_bad_reference_strategy_and_cross_field_checks():
    with pytest.raises(ConfigError, match="seppo.ref_strategy.*allowed"):
        load_config(None, ["seppo.ref_strategy=newest"])
    with pytest.raises(ConfigError, match="model.trainable"):
        load_config(None, ["model.kind=sd", "data.num_frames=1"])  # motion is the default trainable
    with pytest.raises(ConfigError, match="data.num_frames"):
        load_config(None, ["model.kind=sd", "model.trainable=lora"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent.yaml")


@pytest.mark.parametrize("method,strategy,aaf", [
    ("seppo", "uniform", "sign"), ("spin", "latest", "none"), ("ditto", "initial", "none"),
    ("dpo", "initial", "none"), ("sft", None, None),
])
def test_methods_imply_reference_and_flipper(method, strategy, aaf):
    spec = resolve_method(load_config(None, [f"seppo.method={method}"]).seppo)
    assert (spec.ref_strategy, spec.aaf) == (strategy, aaf)


def test_method_overrides_for_ablations():
    spec = resolve_method(load_config(None, ["seppo.aaf=none"]).seppo)
    assert (spec.ref_strategy, spec.aaf) == ("uniform", "none")  # "SePPO w/o AAF"
    spec = resolve_method(load_config(None, ["seppo.ref_strategy=fixed:2"]).seppo)
    assert spec.ref_strategy == "fixed:2"
    with pytest.raises(ConfigError, match="sft"):
        resolve_method(load_config(None, ["seppo.method=sft", "seppo.aaf=sign"]).seppo)


def test_unquoted_no_means_the_string_no():
    """YAML 1.1 reads `no` as false: `train.mixed_precision=no` (or unquoted in a file) still means 'no'."""
    assert load_config(None, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match="train.mixed_precision: True is not allowed"):
        load_config(None, ["train.mixed_precision=yes"])


@pytest.mark.parametrize("value", ["-0.5", ".nan", ".inf"])
def test_sft_weight_must_be_finite_and_non_negative(value):
    with pytest.raises(ConfigError, match=r"seppo.sft_weight: must be finite and >= 0"):
        load_config(None, [f"seppo.sft_weight={value}"])
    assert load_config(None, ["seppo.sft_weight=0.5"]).seppo.sft_weight == 0.5


def test_sft_weight_is_refused_for_the_sft_method():
    with pytest.raises(ConfigError, match=r"seppo.sft_weight: method 'sft'"):
        load_config(None, ["seppo.method=sft", "seppo.sft_weight=1.0"])
