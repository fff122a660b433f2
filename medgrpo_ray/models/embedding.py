"""Sentence embeddings for the semantic-similarity half of the caption reward (and the NAP nearest class).

A transformers encoder with mean pooling over the attention mask and L2 normalisation: the recipe of
sentence-transformers' all-MiniLM-L6-v2 without that package. torch and transformers are imported lazily.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


class SentenceEmbedder:
    """Encodes texts into unit vectors with the model stored in `path` (an HF directory or hub id)."""

    def __init__(self, path: str | Path, device: str = "cpu", batch_size: int = 32, max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"SentenceEmbedder batch_size must be >= 1, got {batch_size}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
            self.model = AutoModel.from_pretrained(str(path)).to(device).eval()
        except OSError as exc:
            raise ValueError(
                f"reward.similarity_model: cannot load a sentence-embedding model from {str(path)!r} ({exc}); "
                "give a local all-MiniLM-L6-v2 directory, or build the tiny test encoder with "
                "medgrpo_ray.models.tiny_text_encoder.build_tiny_text_encoder"
            ) from exc
        self._torch = torch
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, float32 array (N, D), in input order."""
        torch = self._torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = [t or "" for t in texts[start : start + self.batch_size]]
                batch = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state  # (B, T, D)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (B, D)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                out[start : start + len(chunk)] = pooled.float().cpu().numpy()
        return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray | float:
    """Row-wise cosine similarity of (N, D) arrays -> (N,), or of two (D,) vectors -> float (zero vectors -> 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cosine: shapes differ, {a.shape} vs {b.shape}")
    dot = (a * b).sum(axis=-1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    sim = np.divide(dot, norms, out=np.zeros_like(dot), where=norms > 0)
    return float(sim) if sim.ndim == 0 else sim
