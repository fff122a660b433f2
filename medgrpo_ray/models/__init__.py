"""Model loading (real checkpoints and the offline tiny kit share one path)."""
