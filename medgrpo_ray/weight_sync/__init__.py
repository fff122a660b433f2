"""Tier 2, the weight-sync engine: a collective group of learner rank 0 and the rollout workers (TCPStore + gloo or
NCCL), bucket plans, send and streamed receive (collective.py); the same-GPU hand-over of the colocated mode by
CUDA IPC handles or, on CPU, shared memory (handover.py). Used inside the learner and rollout actors."""
