"""What a run shows and keeps: library log levels and the once-filter (console.py), per-(dataset, task) metrics to
JSONL and TensorBoard (metrics.py), and curves.png (plots.py). No Ray."""
