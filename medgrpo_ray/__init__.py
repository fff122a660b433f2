"""MedGRPO-Ray: Ray-native GRPO for video VLMs on medical video. Packages in tiers, imports only downward
(docs/architecture.md, "Tiers"; tests/test_imports.py checks it):

0 medvidbench, config, io   1 data, models, rewards, llm, judge, evaluation, grpo, sft, checkpoint, tracking
2 rollout, learner, weight_sync   3 actors (top level)   4 driver   5 workflows   6 cli
"""
