"""Tier 0, the vocabulary of MedVidBench: canonical task and dataset names (tasks.py) and the NAP class tables
(nap_classes.py). Standard library only; every other package may import it."""
