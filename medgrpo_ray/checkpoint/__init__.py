"""Checkpoints as files: local directories written atomically with a `latest` pointer (local.py) and storage every
node reaches, a shared path or an object store (storage.py). Pure I/O, no Ray."""
