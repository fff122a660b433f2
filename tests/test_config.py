"""Config schema: merge order, dotlist overrides, validation errors that name the field, secret redaction."""
from __future__ import annotations

import pytest
import yaml

from medgrpo_ray.config import load_config, save_config
from medgrpo_ray.config.loader import REDACTED, field_doc, from_yaml_text, to_redacted_yaml


def write(tmp_path, text: str):
    p = tmp_path / "preset.yaml"
    p.write_text(text)
    return p


def test_defaults_then_yaml_then_dotlist(tmp_path):
    p = write(tmp_path, "rollout:\n  num_workers: 3\n  temperature: 0.7\nalgorithm:\n  group_size: 8\n")
    cfg = load_config(p, ["rollout.num_workers=5", "learner.zero_stage=3"])
    assert cfg.rollout.num_workers == 5  # command line beats YAML
    assert cfg.rollout.temperature == 0.7  # YAML beats defaults
    assert cfg.algorithm.group_size == 8
    assert cfg.learner.zero_stage == 3
    assert cfg.rollout.backend == "vllm"  # untouched default
    assert cfg.reward.stg.weight == 1.0  # per-task reward section exists


def test_shipped_presets_load():
    from pathlib import Path

    presets = sorted(Path(__file__).resolve().parents[1].joinpath("configs").glob("*.yaml"))
    assert presets, "configs/ has no presets"
    for p in presets:
        load_config(p, [])


def test_unknown_key_names_field_and_suggests(tmp_path):
    with pytest.raises(ValueError) as e:
        load_config(None, ["rollout.num_worker=2"])
    msg = str(e.value)
    assert "rollout.num_worker" in msg and "Did you mean 'rollout.num_workers'" in msg
    p = write(tmp_path, "algorithm:\n  kl_coeff: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown config key 'algorithm.kl_coeff'.*from .*preset.yaml.*algorithm.kl_coef"):
        load_config(p, [])


def test_wrong_type_names_field_doc_and_fix():
    with pytest.raises(ValueError) as e:
        load_config(None, ["rollout.num_workers=four"])
    msg = str(e.value)
    assert "'rollout.num_workers'" in msg and "'four'" in msg
    assert field_doc("rollout.num_workers") in msg
    assert "rollout.num_workers=<value>" in msg


@pytest.mark.parametrize(
    "override, field",
    [
        ("algorithm.kl_estimator=k7", "algorithm.kl_estimator"),
        ("rollout.num_workers=0", "rollout.num_workers"),
        ("learner.zero_stage=5", "learner.zero_stage"),
        ("data.max_frames=7", "data.max_frames"),
        ("algorithm.group_size=1", "algorithm.group_size"),
        ("reward.caption_judge_weight=1.5", "reward.caption_judge_weight"),
        ("data.tasks=[tal,segmentation]", "data.tasks"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(None, [override])


def test_override_without_equals_is_explained():
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["rollout.num_workers"])


def test_missing_preset_file_is_explained(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", [])


def test_saved_config_redacts_secrets_and_round_trips(tmp_path):
    cfg = load_config(None, [
        "judge.base_url=https://alice:s3cr3t-pass@judge.example/v1",
        "ray.env_vars.HF_TOKEN=hf_abcdef123456",
        "ray.env_vars.OPENAI_API_KEY=sk-live-123",
        "ray.env_vars.OMP_NUM_THREADS=2",
        "judge.api_key_env=MY_JUDGE_KEY",
    ])
    path = save_config(cfg, tmp_path / "run")
    text = path.read_text()
    for secret in ("s3cr3t-pass", "hf_abcdef123456", "sk-live-123", "alice"):
        assert secret not in text
    data = yaml.safe_load(text)
    assert data["ray"]["env_vars"]["HF_TOKEN"] == REDACTED
    assert data["ray"]["env_vars"]["OPENAI_API_KEY"] == REDACTED
    assert data["ray"]["env_vars"]["OMP_NUM_THREADS"] == "2"  # not a secret: kept
    assert data["judge"]["api_key_env"] == "MY_JUDGE_KEY"  # the *name* of the variable is kept
    assert data["judge"]["base_url"] == f"https://{REDACTED}@judge.example/v1"
    assert to_redacted_yaml(cfg) == text
    again = from_yaml_text(text)
    assert again.judge.api_key_env == "MY_JUDGE_KEY" and again.rollout == cfg.rollout


def test_every_field_has_a_doc_line():
    from medgrpo_ray.config.__main__ import reference

    lines = [l for l in reference() if l.strip() and not l.lstrip().startswith("[")]
    assert len(lines) > 90
    undocumented = [l for l in lines if l.rstrip().endswith("#")]
    assert not undocumented, undocumented
