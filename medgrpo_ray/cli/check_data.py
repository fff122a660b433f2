"""Check a records file before training on it: validate every record, decode every video with the training budget.

    launch/check_data.py (or medgrpo-check-data) data/train.parquet --video-root /data/medvidbench --workers 8
    launch/check_data.py data/train.json --config configs/qwen2_5_vl_7b.yaml data.max_frames=32 \\
        --report check.json --clean-out data/train.clean.parquet

Every record is validated as training reads it (a bad field is reported as `field:<field>`) and its video file
or frame list is decoded by the training code path (`clips.clip_for_record`) under the training frame budget
(from the config's `data:` section and the model's processor, as rollout workers build it), in parallel worker
processes, each decode under `--timeout-s` (default `data.decode_timeout_s`); hung decodes are killed, so the
command finishes in bounded time. Parquet is streamed in batches.

Writes a JSON report (`--report`, default `<records>.check.json` next to the records, or under `--out DIR`):
totals, counts by reason and one entry per bad record (source, index, uid, field or file, message).
`--clean-out PATH` (.json, .jsonl or .parquet) writes the good records.

Exit status: 0 when every record is good, 1 when problems were found (the report lists them; a --clean-out
file is still written), 2 on usage errors (bad arguments or config, a records file that is missing, of an
unknown format or unreadable as a whole, a model whose processor cannot be loaded, decode workers that cannot
start).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from medgrpo_ray.cli.common import add_overrides, load_config_or_none, parser_for


def report_path(records: str, report: str | None, out: str | None) -> Path:
    if report:
        return Path(report)
    stem = Path(records).name.rsplit(".", 1)[0] + ".check.json"
    return Path(out) / stem if out else Path(records).with_name(stem)


def main(argv: list[str] | None = None) -> int:
    from medgrpo_ray.workflows.check_data import (CLEAN_SUFFIXES, check_dataset, default_workers,
                                                  start_workers_early, training_budget, write_report)

    parser = parser_for(None, __doc__, overrides=False, epilog="exit status: 0 no problems, 1 problems found, 2 usage error; the "
                        "config's data: and model: sections give the frame budget")
    parser.add_argument("records", help="records file: MedVidBench JSON list, JSON Lines or Parquet")
    add_overrides(parser)
    parser.add_argument("--video-root", help="directory relative video / frame paths resolve against "
                        "(default: data.video_root, else the records file's directory)")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="decode processes (default: min(4, CPUs))")
    parser.add_argument("--timeout-s", type=float, help="per-record decode timeout (default data.decode_timeout_s)")
    parser.add_argument("--report", help="JSON report path (default <records>.check.json next to the records)")
    parser.add_argument("--out", help="directory for the report when --report is not given")
    parser.add_argument("--clean-out", help="write the good records here (.json, .jsonl or .parquet)")
    parser.add_argument("--batch-size", type=int, default=1024, help="Parquet rows read (and written) per batch")
    parser.add_argument("--no-decode", action="store_true", help="validate the records only, decode nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--decoder-log", action="store_true", help="let decord / FFmpeg print to stderr")
    args = parser.parse_intermixed_args(argv)

    if args.workers < 1 or args.batch_size < 1 or (args.timeout_s is not None and not args.timeout_s > 0):
        print("error: --workers and --batch-size must be >= 1 and --timeout-s > 0", file=sys.stderr)
        return 2
    if args.clean_out and Path(args.clean_out).suffix.lower() not in CLEAN_SUFFIXES:
        print(f"error: --clean-out {args.clean_out}: expected a .json, .jsonl or .parquet path", file=sys.stderr)
        return 2
    records = Path(args.records)
    if not records.is_file():
        print(f"error: {records}: records file not found", file=sys.stderr)
        return 2
    if records.suffix.lower() not in CLEAN_SUFFIXES:
        print(f"error: {records}: unknown records format {records.suffix!r}; expected .json, .jsonl or .parquet",
              file=sys.stderr)
        return 2
    if args.clean_out and Path(args.clean_out).resolve() == records.resolve():
        print("error: --clean-out must not overwrite the records file being checked", file=sys.stderr)
        return 2

    cfg = load_config_or_none(args.config, args.overrides)
    if cfg is None:
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    d = cfg.data
    if not args.no_decode:
        start_workers_early()  # the decode workers' imports overlap the processor load
    try:
        budget = training_budget(cfg)
    except (OSError, ValueError) as err:
        print(f"error: cannot build the training frame budget from model.path={cfg.model.path}: {err}", file=sys.stderr)
        return 2
    timeout_s = args.timeout_s if args.timeout_s is not None else d.decode_timeout_s
    try:
        report = check_dataset(records, budget, clean_out=args.clean_out, batch_size=args.batch_size,
                               video_root=args.video_root or d.video_root, timeout_s=timeout_s, workers=args.workers,
                               threads=d.decode_threads, progress=not args.no_progress, decode=not args.no_decode,
                               quiet=not args.decoder_log)
    except (OSError, ValueError, RuntimeError) as err:  # the file cannot be read, or the decode workers cannot start
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = write_report(report, report_path(args.records, args.report, args.out))
    print(report.summary())
    if report.clean_out:
        print(f"wrote {report.clean_records} good records to {report.clean_out}")
    print(f"wrote {out}")
    return 1 if report.bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
