"""Typed experiment configuration (schema) and its loading, validation and redacted saving."""
from medgrpo_ray.config.loader import load_config, save_config, to_redacted_yaml, validate
from medgrpo_ray.config.schema import ExperimentConfig

__all__ = ["ExperimentConfig", "load_config", "save_config", "to_redacted_yaml", "validate"]
