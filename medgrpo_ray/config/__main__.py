"""Print every configuration field with its type, default and doc line: python -m medgrpo_ray.config (or
medgrpo-config) [SECTION ...], e.g. `medgrpo-config rollout learner`."""
from __future__ import annotations

import dataclasses
import sys
import typing

from medgrpo_ray.config.schema import ExperimentConfig


def reference(cls=ExperimentConfig, prefix: str = "") -> list[str]:
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            lines.append(f"\n[{prefix}{f.name}]  {f.metadata.get('doc', '')}")
            lines.extend(reference(t, f"{prefix}{f.name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        name = getattr(t, "__name__", str(t)).replace("typing.", "")
        lines.append(f"  {prefix}{f.name}: {name} = {default!r}  # {f.metadata.get('doc', '')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.strip())
    parser.add_argument("sections", nargs="*", help="only these top-level sections (default: all)")
    args = parser.parse_args(argv)
    hints = typing.get_type_hints(ExperimentConfig)
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    unknown = [s for s in args.sections if s not in fields or not dataclasses.is_dataclass(hints[s])]
    if unknown:
        sections = sorted(n for n in fields if dataclasses.is_dataclass(hints[n]))
        print(f"unknown section(s) {unknown}; expected some of {sections}", file=sys.stderr)
        return 2
    if not args.sections:
        print("\n".join(reference()))
        return 0
    for name in args.sections:
        print(f"\n[{name}]  {fields[name].metadata.get('doc', '')}")
        print("\n".join(reference(hints[name], f"{name}.")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
