"""Leaderboard-exact MedVidBench evaluator (pure; docs/evaluation.md lists every rule and quirk)."""
from medgrpo_ray.evaluation.evaluator import as_items, evaluate
from medgrpo_ray.evaluation.report import to_markdown
from medgrpo_ray.evaluation.types import METRICS, NOT_COMPUTED, Embedder, EvalReport, Metric

__all__ = ["evaluate", "as_items", "to_markdown", "METRICS", "NOT_COMPUTED", "Embedder", "EvalReport", "Metric"]
