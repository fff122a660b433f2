"""Tier 6, the commands: one module per entry point (`main(argv) -> exit status`), installed as console scripts
(`medgrpo-train`, `medgrpo-sft`, ...; setup.py) and run by the thin `launch/*.py` scripts. Argument parsing and exit
codes only: the work is in workflows/ and driver/. Every command answers `--help`."""
