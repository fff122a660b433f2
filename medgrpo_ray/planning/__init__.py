"""The launch plan (`launch/train.py --dry-run`): model sizes without weights, actor groups and their placement,
memory per GPU by part. Pure functions (models.py, memory.py, cluster.py, plan.py) plus probe.py, which reads the
facts they take: a model directory's config.json and safetensors headers, the local GPUs."""
