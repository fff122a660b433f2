"""Broadcast weight sync with a frozen vision tower (learner.freeze_vision_tower=true): only the trainable
parameters are sent, and vLLM's in-place reload keeps the vision layers it receives nothing for, so after an
update the rollout worker still scores like the learner."""
from __future__ import annotations

import pytest

from grpo_system_support import overrides

pytestmark = pytest.mark.slow


def test_frozen_vision_tower_is_not_sent_and_the_worker_matches_the_learner(tmp_path, model_cache, synthetic_bench):
    import ray
    import torch

    from medgrpo_ray.config import load_config
    from medgrpo_ray.driver.trainer import Trainer
    from test_grpo_faults import _parity, _probe

    cfg = load_config(None, overrides(synthetic_bench, tmp_path, "frozen", model_cache, **{
        "algorithm.total_steps": 1, "learner.freeze_vision_tower": "true"}))
    t = Trainer(cfg, tmp_path / "frozen")
    t.start()
    try:
        metas = ray.get(t.learners[0].sync_metas.remote(), timeout=300)
        sent = {m.name for m in metas}
        assert sent and not any(n.startswith("visual.") or ".visual." in n for n in sent)
        trainable_bytes = sum(m.numel * 4 for m in metas)  # fp32
        items, comps = _probe(t)
        before = _parity(t, items, comps)
        m = t.train_one_step()
        assert m["algorithm/samples_trained"] > 0 and m["sync/bytes"] == trainable_bytes
        from transformers import AutoModelForImageTextToText

        full = AutoModelForImageTextToText.from_pretrained(_model_dir(t))
        vision = sum(p.numel() for n, p in full.named_parameters() if "visual." in n) * 4
        assert vision > 0 and trainable_bytes + vision <= sum(p.numel() for p in full.parameters()) * 4
        for (gap, got), (_, old) in zip(_parity(t, items, comps), before):
            assert gap < 1e-4, gap  # the reloaded language model plus the kept vision tower = the learner's policy
            assert max((torch.tensor(a) - torch.tensor(b)).abs().max().item() for a, b in zip(got, old)) > 1e-3
    finally:
        t.stop()
        ray.shutdown()


def _model_dir(trainer) -> str:
    from medgrpo_ray.models.loading import resolve_model_path

    c = trainer.cfg.model
    return resolve_model_path(c.path, c.cache_dir, c.tiny_seed)
