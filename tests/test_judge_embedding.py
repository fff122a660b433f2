"""Semantic similarity with the tiny offline text encoder (a real transformers BERT, random weights)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from medgrpo_ray.models.embedding import SentenceEmbedder, cosine
from medgrpo_ray.models.tiny_text_encoder import build_tiny_text_encoder

TEXTS = [
    "The grasper retracts the gallbladder towards the top left.",
    "The hook dissects the cystic duct in the upper right quadrant.",
    "The nurse disinfects the skin with a cotton swab.",
    "cholecystectomy 12.5 mm trocar",
    "",
]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return build_tiny_text_encoder(tmp_path_factory.mktemp("enc") / "tiny_text_encoder", seed=0)


def test_encode_shape_normalisation_and_identity(encoder_dir):
    emb = SentenceEmbedder(encoder_dir, batch_size=2)
    vectors = emb.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), emb.dim) and vectors.dtype == np.float32 and emb.dim == 32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    again = emb.encode([TEXTS[0], TEXTS[0]])
    assert cosine(again[0], again[1]) == pytest.approx(1.0, abs=1e-6)
    assert cosine(vectors[0], again[0]) == pytest.approx(1.0, abs=1e-5)  # batching and padding do not matter
    assert emb.encode([]).shape == (0, emb.dim)


def test_cosine_rowwise_and_edge_cases():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([[0.6, 0.8], [0.0, -1.0], [1.0, 0.0]])
    assert np.allclose(cosine(a, b), [0.6, -1.0, 0.0])
    assert cosine(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        cosine(a, b[:2])


def test_build_is_deterministic_from_the_seed_and_cached(encoder_dir, tmp_path):
    other = build_tiny_text_encoder(tmp_path / "copy", seed=0)
    first = SentenceEmbedder(encoder_dir).encode(TEXTS)
    second = SentenceEmbedder(other).encode(TEXTS)
    assert np.array_equal(first, second)
    assert (encoder_dir / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()
    stamp = (other / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_text_encoder(other, seed=0) == other and (other / "model.safetensors").stat().st_mtime_ns == stamp
    reseeded = build_tiny_text_encoder(other, seed=1)
    assert not np.allclose(SentenceEmbedder(reseeded).encode(TEXTS), first)


def test_tokenizer_is_trained_and_knows_the_medical_words(encoder_dir):
    emb = SentenceEmbedder(encoder_dir)
    assert emb.tokenizer.tokenize("grasper gallbladder cystic") == ["grasper", "gallbladder", "cystic"]
    assert "[UNK]" not in emb.tokenizer.tokenize("cholecystectomy 12.5 mm")


def test_missing_model_names_the_setting(tmp_path):
    with pytest.raises(ValueError, match="similarity_model"):
        SentenceEmbedder(tmp_path / "nothing-here")


def test_importing_the_modules_stays_light():
    code = ("import sys, medgrpo_ray.models.embedding, medgrpo_ray.models.tiny_text_encoder, medgrpo_ray.judge.client, "
            "medgrpo_ray.judge.caption_reward; heavy = {'torch', 'transformers', 'openai'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
