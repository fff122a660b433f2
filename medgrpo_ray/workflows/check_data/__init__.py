"""The data check: validate every record and decode every video as training would (run.py), in a process pool
with timeouts (pool.py), reporting every bad record (report.py). `launch/check_data.py` is its CLI.

Light to import: no Ray, and the heavy libraries (decord, transformers, pyarrow, tqdm) load inside functions.
"""
from medgrpo_ray.workflows.check_data.pool import default_workers, start_workers_early
from medgrpo_ray.workflows.check_data.report import CheckReport, Problem, write_report
from medgrpo_ray.workflows.check_data.run import CLEAN_SUFFIXES, check_dataset, iter_checked, training_budget

__all__ = ["CLEAN_SUFFIXES", "CheckReport", "Problem", "check_dataset", "default_workers", "iter_checked",
           "start_workers_early", "training_budget", "write_report"]
