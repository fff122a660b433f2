"""One converter module per source dataset: `load(root, report) -> Iterator[SourceVideo]` from a local copy in the
source's native format (docs/curation.md, "Adding a source"). CONVERTERS maps a canonical dataset name to its
module's `load`; a source whose module is missing is not listed."""
from __future__ import annotations

import importlib
from typing import Callable

_MODULES = {"CholecT50": "cholect50", "CholecTrack20": "cholectrack20", "Cholec80-CVS": "cholec80_cvs",
            "JIGSAWS": "jigsaws", "NurViD": "nurvid"}


def converters() -> dict[str, Callable]:
    """canonical dataset name -> load function, for every converter module present."""
    out = {}
    for name, module in _MODULES.items():
        try:
            out[name] = importlib.import_module(f"{__name__}.{module}").load
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{module}":
                raise
    return out
