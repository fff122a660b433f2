"""What every command shares: the `--config PRESET key=value ...` arguments with their help, and the config-or-exit-2
prologue (a bad preset or override is a usage error naming the field, never a traceback)."""
from __future__ import annotations

import argparse
import sys
import textwrap

SETTINGS_HELP = (
    "settings: --config PRESET.yaml (configs/) merged over the schema's defaults, then KEY=VALUE overrides in "
    "OmegaConf dotlist form (e.g. algorithm.group_size=8 rollout.num_workers=2 resume=auto). Every setting, its "
    "default and what it does: `python -m medgrpo_ray.config` (medgrpo_ray/config/schema.py); the presets: "
    "README.md, Configuration."
)


def parser_for(prog: str | None, doc: str | None, *, epilog: str = "", overrides: bool = True,
               config: bool = True) -> argparse.ArgumentParser:
    """An ArgumentParser whose description is the command's docstring `doc`, with `--config` (and the positional
    overrides, unless `overrides=False`: see `add_overrides`) when the command takes a config, and the settings
    help in its epilog."""
    parts = [epilog] if epilog else []
    if config:
        parts.append(SETTINGS_HELP)
    epilog_text = "\n\n".join(textwrap.fill(p, width=100) for p in parts)
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").strip(), epilog=epilog_text,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    if config:
        parser.add_argument("--config", "-c", metavar="PRESET.yaml", help="YAML preset from configs/ (default: the "
                            "schema's defaults)")
    if overrides:
        add_overrides(parser)
    return parser


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """The trailing `KEY=VALUE ...` positional; commands with positionals of their own add it after them."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotlist)")


def argv_or_sys(argv: list[str] | None) -> list[str]:
    return sys.argv[1:] if argv is None else list(argv)


def load_config_or_none(path: str | None, overrides: list[str], what: str = "config error"):
    """The experiment config, or None after printing `what: <the loader's message>` to stderr (exit 2 follows)."""
    from medgrpo_ray.config import load_config

    try:
        return load_config(path, overrides)
    except ValueError as err:
        print(f"{what}: {err}", file=sys.stderr)
        return None


STAGES_EPILOG = ("--sft / --grpo / --infer take KEY=VALUE overrides (OmegaConf dotlist) of that stage's config; every "
                 "setting: `python -m medgrpo_ray.config`. Exit status: 0 done, 2 usage, config or stage error "
                 "(rerun the same command to resume).")


def staged_parser(doc: str | None, *, out: str, sft_config: str, grpo_config: str,
                  grpo_help: str) -> argparse.ArgumentParser:
    """The arguments the multi-stage commands share (pipeline, ablation): the output directory, the SFT and GRPO
    presets, and KEY=VALUE overrides per stage."""
    parser = parser_for(None, doc, config=False, overrides=False, epilog=STAGES_EPILOG)
    parser.add_argument("--out", default=out, help="output directory (the same one resumes)")
    parser.add_argument("--sft-config", default=sft_config, help="SFT preset (also the data and inference settings)")
    parser.add_argument("--grpo-config", default=grpo_config, help=grpo_help)
    parser.add_argument("--sft", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the SFT run")
    parser.add_argument("--grpo", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of every GRPO run")
    parser.add_argument("--infer", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of every inference run")
    return parser


def run_stages_command(run, settings, what: str) -> int:
    """Run a multi-stage workflow `run(settings, load_config)`; a failing stage is exit 2 with its message. Only this
    process's own lines are configured here: each stage sets up its own logging from its config."""
    import logging

    from medgrpo_ray.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run(settings, load_config)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"{what} error: {err}", file=sys.stderr)
        return 2
    return 0
