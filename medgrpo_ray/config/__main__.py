"""Print every configuration field with its type, default and doc line: python -m medgrpo_ray.config"""
from __future__ import annotations

import dataclasses
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


if __name__ == "__main__":
    print("\n".join(reference()))
