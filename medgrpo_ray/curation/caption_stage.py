"""The caption tasks inside a curation run (workflows/curation.py): what decides a caption unit's log key, the two
providers built from the config, the unit-log entry of a finished unit, the manifest's caption counts, the review
file and the dry-run plan. The loop itself is curation/caption_run.py.

A finished caption unit is one line of OUT/units.jsonl: `{key, unit, decision, decision_reason, first, attempts,
missing, reasons, records, rejected, review}`: the final decision kind and reason, the first attempt's [kind, reason]
(differs when the unit was regenerated) and the facts its regeneration prompt named, every judged caption's reject reason (`caption_run.reason_key`), the
records of the kept captions, DVC records that failed the self-check, and for a `review` decision the records both
captions would have made (they go to OUT/review.jsonl, not to training).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional

from medgrpo_ray.curation.caption_units import PROMPT_VERSION, CaptionUnit
from medgrpo_ray.curation.validate import ValidationSettings

if TYPE_CHECKING:
    from medgrpo_ray.config.curation import CurationConfig

REVIEW_FILE = "review.jsonl"


def validation_settings(cfg: "CurationConfig") -> ValidationSettings:
    c = cfg.captions
    return ValidationSettings(min_words=dict(c.min_words), max_words=dict(c.max_words), min_grounding=c.min_grounding,
                              max_invented=c.max_invented, min_agreement=c.min_agreement,
                              disagree_policy=c.disagree_policy, max_attempts=c.max_attempts)


def key_extra(cfg: "CurationConfig") -> dict:
    """What decides a caption unit besides its draw and video: prompt version, the providers' names and models,
    the rule's settings and the embedder (a change re-decides the units; unchanged replies still come from the
    reply cache). No URL, no key."""
    return {"prompt": PROMPT_VERSION, "providers": [[p.name, p.model] for p in cfg.providers],
            "validation": asdict(validation_settings(cfg)), "embedder": cfg.captions.embedder or "lexical",
            "frames": asdict(frame_settings(cfg)) if cfg.captions.send_frames else None}


def need_providers(cfg: "CurationConfig") -> None:
    if len(cfg.providers) != 2:
        raise ValueError(f"curation field 'tasks' has caption tasks but 'providers' has {len(cfg.providers)} "
                         "entries; configure two (configs/curation/sources.yaml shows the form)")


def entry_of(outcome) -> dict:
    """The unit-log fields of a finished unit (`caption_run.UnitOutcome`)."""
    d = outcome.decision
    return {"decision": d.kind, "decision_reason": d.reason, "first": [outcome.first.kind, outcome.first.reason],
            "attempts": outcome.attempts, "missing": outcome.first.missing if outcome.attempts > 1 else [], "reasons": outcome.reasons, "records": outcome.records,
            "rejected": outcome.rejected, "review": outcome.review}


def frame_settings(cfg: "CurationConfig"):
    """The frames' settings (None when captions.send_frames is false)."""
    from medgrpo_ray.curation.caption_frames import FrameSettings

    c = cfg.captions
    return FrameSettings(max_frames=c.max_frames, size=c.frame_size) if c.send_frames else None


def chunk_size(cfg: "CurationConfig") -> int:
    """Units rendered and captioned together: enough to keep every request slot busy, few enough that a chunk's
    JPEGs (about 8 x 40 kB per unit) stay small in memory."""
    return max(64, 8 * cfg.captions.max_in_flight)


def run_pending(pending: list[tuple[dict, CaptionUnit]], cfg: "CurationConfig", write: Callable[[dict], None],
                log: Optional[Callable[[str], None]] = print,
                prepare: Optional[Callable[[list[CaptionUnit]], list[Optional[str]]]] = None) -> dict:
    """Caption the units not in the log yet (`pending`: (entry head {key, unit}, unit)), writing each unit's entry
    as it finishes. `prepare(units)` attaches each unit's frames and returns per unit None or why its frames could
    not be made (that unit is logged as `frames: <error>`, no request): it runs chunk by chunk (a first chunk of
    captions.max_in_flight units, then `chunk_size`), the next chunk's while this one is captioned, and a chunk's images are released once it is done. Returns this
    run's requests per provider (calls, retries, cache hits, failures, tokens, cost)."""
    from concurrent.futures import ThreadPoolExecutor

    from medgrpo_ray.curation.caption_run import load_embedder, run_units
    from medgrpo_ray.curation.providers import CaptionProvider

    need_providers(cfg)
    head = {id(u): h for h, u in pending}
    t0, last, finished = time.monotonic(), [time.monotonic()], [0]
    units = [u for _, u in pending]
    size, first = chunk_size(cfg), cfg.captions.max_in_flight  # a small first chunk: requests start early
    chunks = [units[:first]] + [units[i:i + size] for i in range(first, len(units), size)]
    chunks = [c for c in chunks if c]

    def progress() -> None:
        finished[0] += 1
        now = time.monotonic()
        if log and (now - last[0] >= 5.0 or finished[0] == len(pending)):
            last[0] = now
            log(f"[curate] captions: {finished[0]}/{len(pending)} units, {finished[0] / (now - t0):.1f}/s")

    def on_done(outcome) -> None:
        write({**head[id(outcome.unit)], **entry_of(outcome)})
        progress()

    def ready(chunk: list[CaptionUnit]) -> list[Optional[str]]:
        return prepare(chunk) if prepare is not None else [None] * len(chunk)

    with ExitStack() as stack:
        providers = [stack.enter_context(CaptionProvider(p)) for p in cfg.providers]
        embedder, settings = load_embedder(cfg.captions.embedder), validation_settings(cfg)
        ahead = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="caption-frames"))
        nxt = ahead.submit(ready, chunks[0]) if chunks else None
        for i, chunk in enumerate(chunks):
            errors = nxt.result()
            nxt = ahead.submit(ready, chunks[i + 1]) if i + 1 < len(chunks) else None
            for u, err in zip(chunk, errors):
                if err is not None:
                    write({**head[id(u)], "reason": f"frames: {err}"})
                    progress()
            run_units([u for u, err in zip(chunk, errors) if err is None], *providers, embedder, settings,
                      max_in_flight=cfg.captions.max_in_flight, on_done=on_done)
            for u in chunk:
                u.images = []
        stats = {}
        for p in providers:
            st = p.stats()
            stats[p.name] = {"model": p.model, "requests": st.calls, "retries": st.retries,
                             "cache_hits": p.cache_hits, "failed_units": dict(p.failures),
                             "prompt_tokens": st.prompt_tokens, "completion_tokens": st.completion_tokens,
                             "cost_usd": round(st.cost_usd, 4)}
    return stats


class Tally:
    """The manifest's caption counts over the log's caption entries (in unit order)."""

    def __init__(self) -> None:
        self.units: Counter = Counter()
        self.decisions: dict[str, Counter] = {}
        self.first: dict[str, Counter] = {}
        self.rejects: Counter = Counter()
        self.records: Counter = Counter()
        self.self_check = 0
        self.regenerated = 0
        self.review: list[dict] = []

    def add(self, task: str, entry: dict, rejects: Counter) -> list[dict]:
        """Count one entry; adds its unit-level rejects to `rejects`; returns its training records."""
        self.units[task] += 1
        if "decision" not in entry:
            rejects[entry["reason"].split(":", 1)[0] + ": " + task] += 1
            return []
        kind, reason = entry["decision"], entry["decision_reason"]
        self.decisions.setdefault(kind, Counter())[reason] += 1
        self.first.setdefault(entry["first"][0], Counter())[entry["first"][1]] += 1
        self.regenerated += entry["attempts"] > 1
        self.rejects.update(entry["reasons"])
        self.self_check += len(entry["rejected"])
        if entry["rejected"]:
            rejects[f"caption self-check: {task}"] += len(entry["rejected"])
        if kind in ("drop", "review"):
            rejects[f"caption {kind}: {reason}"] += 1
        if kind == "review":
            self.review.append({"unit": entry["unit"], "reason": reason, "reasons": entry["reasons"],
                                "records": entry["review"]})
        self.records.update(r["qa_type"] for r in entry["records"])
        return entry["records"]

    def manifest(self) -> dict:
        table = lambda t: {k: dict(sorted(v.items())) for k, v in sorted(t.items())}  # noqa: E731
        return {"units": dict(sorted(self.units.items())), "decisions": table(self.decisions),
                "first_decisions": table(self.first), "regenerated": self.regenerated,
                "caption_rejects": dict(sorted(self.rejects.items())), "self_check_rejects": self.self_check,
                "records": dict(sorted(self.records.items())), "review": len(self.review), "prompt_version": PROMPT_VERSION}


def write_review(out: Path, items: Iterable[dict]) -> Path:
    """OUT/review.jsonl: one line per unit whose two grounded captions disagreed (decision `review`), with the
    records both would make; written whole each run (atomically)."""
    from medgrpo_ray.io.atomic import atomic_write_text

    path = out / REVIEW_FILE
    atomic_write_text(path, "".join(json.dumps(x) + "\n" for x in items))
    return path


def dry_run(units: list[CaptionUnit], pending: list[CaptionUnit], cfg: "CurationConfig",
            unanswerable: Counter) -> dict:
    """The plan of the caption half: units per task (all, and pending: not in the unit log yet), and per provider
    the requests, tokens and cost of the pending units."""
    from medgrpo_ray.curation.caption_run import estimate

    c = cfg.captions
    per = estimate(pending, cfg.providers, c.chars_per_token, c.output_tokens, c.max_attempts,
                   max_frames=c.max_frames if c.send_frames else 0, tokens_per_image=c.tokens_per_image)
    return {"units": dict(sorted(Counter(u.task for u in units).items())),
            "pending": dict(sorted(Counter(u.task for u in pending).items())),
            "unanswerable": dict(sorted(unanswerable.items())), "providers": per,
            "cost_usd": round(sum(p["cost_usd"] for p in per.values()), 4),
            "cost_usd_max": round(sum(p["cost_usd_max"] for p in per.values()), 4),
            "assumptions": {"chars_per_token": c.chars_per_token, "output_tokens": dict(c.output_tokens),
                            "frames_per_unit": c.max_frames if c.send_frames else 0,
                            "tokens_per_image": c.tokens_per_image,
                            "note": "requests and cost of the pending units; _max: every unit regenerated "
                                    "once; reply-cache hits not subtracted"
                                    + ("" if cfg.providers else "; no providers configured")}}
