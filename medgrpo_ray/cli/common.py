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
