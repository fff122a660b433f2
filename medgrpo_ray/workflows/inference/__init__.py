"""Greedy inference over a split, streamed through the rollout pool, resumable: the run (run.py), its results
log (results_log.py, predictions.jsonl) and the final files rebuilt from it (outputs.py). No Ray at import."""
from medgrpo_ray.workflows.inference.run import InferSettings, run_inference

__all__ = ["InferSettings", "run_inference"]
