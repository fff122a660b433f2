"""Convert MedVidBench records between JSON (list or Lines) and Parquet, streaming, validating every record.

    python -m medgrpo_ray.data.convert in.json out.parquet
    python -m medgrpo_ray.data.convert in.parquet out.json [--on-bad raise] [--batch-size 1024]

Malformed records are skipped and counted (the summary is printed), or stop the conversion with `--on-bad raise`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medgrpo_ray.data.records import RecordError
from medgrpo_ray.data.records_io import PARQUET_SUFFIXES, LoadReport, iter_records, write_json, write_parquet


def convert(src: str | Path, dst: str | Path, on_bad: str = "skip", batch_size: int = 1024) -> LoadReport:
    """Stream `src` into `dst` (format from each suffix); returns the load report of `src`."""
    report = LoadReport()
    records = iter_records(src, on_bad=on_bad, report=report, batch_size=batch_size)
    if Path(dst).suffix.lower() in PARQUET_SUFFIXES:
        write_parquet(records, dst, batch_size=batch_size)
    elif Path(dst).suffix.lower() in (".json", ".jsonl"):
        write_json(records, dst)
    else:
        raise ValueError(f"{dst}: unknown output format; use .json, .jsonl or .parquet")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medgrpo_ray.data.convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="input records: .json (list or JSON Lines), .jsonl or .parquet")
    parser.add_argument("dst", help="output records: .json, .jsonl or .parquet")
    parser.add_argument("--on-bad", choices=("skip", "raise"), default="skip", help="malformed record policy")
    parser.add_argument("--batch-size", type=int, default=1024, help="rows per Parquet batch / row group")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        report = convert(args.src, args.dst, args.on_bad, args.batch_size)
    except (RecordError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{report.summary()} -> {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
