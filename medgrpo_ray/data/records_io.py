"""Read and write `VideoRecord`s as a JSON list, JSON Lines or Parquet, streaming.

Reading validates every record; a malformed one raises (`on_bad="raise"`) or is skipped and counted in a
`LoadReport` (`on_bad="skip"`), never dropped silently. Parquet is read in batches (`iter_batches`), never
whole. The Parquet layout keeps the schema stable across tasks: the per-task nested fields (`struc_info`,
`RC_info`, `metadata`, `conversations`, unknown keys) are JSON strings, so JSON -> Parquet -> JSON is lossless.
Layout: docs/data.md.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from medgrpo_ray.data.records import KNOWN_KEYS, RecordError, VideoRecord
from medgrpo_ray.io.atomic import atomic_path

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")
FORMAT_TAG = "medgrpo_ray.videorecord/1"
# Columns read back; the written `task` and `dataset` columns are derived (for filtering) and ignored on read.
_JSON_COLUMNS = ("conversations", "metadata", "struc_info", "RC_info", "extra")
_READ_COLUMNS = ("qa_type", "data_source", "is_RC", "video_file", "video_frames", *_JSON_COLUMNS, "key_order")


@dataclass
class LoadReport:
    """What a read produced: records loaded, records skipped by reason (the field at fault), first messages."""

    source: str = ""
    loaded: int = 0
    skipped: int = 0
    batches: int = 0  # Parquet batches (or JSON documents) read
    by_reason: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    max_messages: int = 20
    rejected: list[tuple[int | None, str, str]] = field(default_factory=list)  # (index, field, message) per skip
    max_rejected: int = 100_000

    def skip(self, err: RecordError) -> None:
        """Count a skipped record under its field (indices removed: `struc_info[0].spans` -> `struc_info.spans`)."""
        reason = field_reason(err.field)
        self.skipped += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if len(self.messages) < self.max_messages:
            self.messages.append(str(err))
        if len(self.rejected) < self.max_rejected:
            self.rejected.append((err.index, err.field, str(err)))

    def summary(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_reason.items(), key=lambda kv: -kv[1]))
        text = f"{self.source}: loaded {self.loaded} records, skipped {self.skipped}"
        return text + (f" (by field: {reasons})" if reasons else "")


def iter_records(path: str | os.PathLike, on_bad: str = "skip", report: LoadReport | None = None,
                 batch_size: int = 1024) -> Iterator[VideoRecord]:
    """Stream the records of a `.json` (a list, or JSON Lines), `.jsonl` or `.parquet` file.

    on_bad: "raise" -> the first malformed record raises RecordError (file, index, field); "skip" -> it is counted
    in `report` (pass one to read the counts) and a summary is logged when the file is exhausted. A missing file
    or an unknown format raises at once, before iteration.
    """
    if on_bad not in ("skip", "raise"):
        raise ValueError(f"on_bad={on_bad!r}: expected 'skip' or 'raise' (data.on_bad_record)")
    report = report if report is not None else LoadReport()
    return _records(iter_parsed(path, batch_size=batch_size, report=report), on_bad, report)


def iter_dicts(path: str | os.PathLike, batch_size: int = 1024,
               report: LoadReport | None = None) -> Iterator[tuple[int, Any]]:
    """Stream (index, raw published dict) of a records file, unvalidated (what `iter_records` validates).

    An item is a `RecordError` instead of a dict where the file itself holds something unreadable at that index
    (a JSON Lines line that is not JSON, a Parquet JSON column that is not JSON). Parquet is read `batch_size`
    rows at a time. A missing file or an unknown format raises at once, before iteration; `report` (if given)
    gets the source and the number of batches read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: records file not found (check data.train_path / data.test_path)")
    suffix = path.suffix.lower()
    if suffix not in PARQUET_SUFFIXES + (".json", ".jsonl"):
        raise ValueError(f"{path}: unknown records format {path.suffix!r}; expected .json, .jsonl or .parquet")
    report = report if report is not None else LoadReport()
    report.source = str(path)
    return _parquet_dicts(path, batch_size, report) if suffix in PARQUET_SUFFIXES else _json_dicts(path, report)


def field_reason(field_name: str) -> str:
    """A record field with its indices removed, for counting by reason: `struc_info[0].spans` -> `struc_info.spans`."""
    return re.sub(r"\[[^\]]*\]", "", field_name or "<record>")


def _records(parsed: Iterator["Parsed"], on_bad: str, report: LoadReport) -> Iterator[VideoRecord]:
    for item in parsed:
        if item.error is not None:
            if on_bad == "raise":
                raise item.error
            report.skip(item.error)
            continue
        report.loaded += 1
        yield item.record
    if report.skipped:
        log.warning("%s; first problems:\n  %s", report.summary(), "\n  ".join(report.messages))


@dataclass
class Parsed:
    """One item of a records file, in input order: the raw item, the parsed record, or the error that stopped it."""

    position: int  # 0-based position among the file's items
    index: int | None  # index in the source file (as iter_dicts gives it)
    raw: Any  # the published dict, or None where the file itself was unreadable at this index
    record: VideoRecord | None = None
    error: RecordError | None = None

    @property
    def uid(self) -> str | None:
        return self.record.uid if self.record is not None else None


def iter_parsed(path: str | os.PathLike, batch_size: int = 1024,
                report: LoadReport | None = None) -> Iterator[Parsed]:
    """Every item of a records file in input order, validated: the one loop the loader, the data check and
    inference share. A malformed item carries its `RecordError` (file, index, field) instead of a record."""
    dicts = iter_dicts(path, batch_size=batch_size, report=report)  # a missing file raises here, not on next()
    return _parsed(dicts, str(path))


def _parsed(dicts: Iterator[tuple[int, Any]], source: str) -> Iterator[Parsed]:
    for position, (index, d) in enumerate(dicts):
        if isinstance(d, RecordError):
            yield Parsed(position, index, None, error=d)
            continue
        try:
            yield Parsed(position, index, d, record=VideoRecord.from_dict(d, source=source, index=index))
        except RecordError as err:
            yield Parsed(position, index, d, error=err)
        except ValueError as err:  # a value the record type rejects without naming a field
            yield Parsed(position, index, d, error=RecordError(str(err), source=source, index=index))


def load_records(path: str | os.PathLike, on_bad: str = "skip",
                 batch_size: int = 1024) -> tuple[list[VideoRecord], LoadReport]:
    """All records of a file plus the report of what was skipped (see `iter_records`)."""
    report = LoadReport()
    records = list(iter_records(path, on_bad=on_bad, report=report, batch_size=batch_size))
    return records, report


def _json_dicts(path: Path, report: LoadReport) -> Iterator[tuple[int, Any]]:
    """(index, dict) from a JSON list (loaded at once: no streaming JSON parser is installed) or JSON Lines
    (streamed line by line; a line that is not JSON becomes a RecordError for that index)."""
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
        f.seek(0)
        if head.startswith("["):
            try:
                data = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err}); expected a list of records") from None
            report.batches += 1
            yield from enumerate(data)
            return
        if head and not head.startswith("{"):
            raise ValueError(f"{path}: expected a JSON list of records or JSON Lines (one object per line)")
        report.batches += 1
        index = 0
        for line in f:
            if not line.strip():
                continue
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as err:
                yield index, RecordError(f"line is not valid JSON ({err}); expected one JSON object per line",
                                         source=str(path), index=index, field="<json>")
            index += 1


def _parquet_dicts(path: Path, batch_size: int, report: LoadReport) -> Iterator[tuple[int, Any]]:
    """(index, published dict) per Parquet row, read `batch_size` rows at a time."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    missing = [c for c in _READ_COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise ValueError(f"{path}: Parquet file lacks columns {missing}; write it with "
                         "`python -m medgrpo_ray.data.convert in.json out.parquet`")
    index = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=list(_READ_COLUMNS)):
        report.batches += 1
        for row in batch.to_pylist():
            yield index, _row_to_dict(row, path, index)
            index += 1


def _row_to_dict(row: dict[str, Any], path: Path, index: int) -> dict[str, Any] | RecordError:
    """Rebuild the published dict from one Parquet row (absent optional keys stay absent)."""
    values: dict[str, Any] = {}
    for col in _JSON_COLUMNS:
        if row[col] is not None:
            try:
                values[col] = json.loads(row[col])
            except json.JSONDecodeError as err:
                return RecordError(f"column holds invalid JSON ({err}); expected JSON text as write_parquet writes",
                                   source=str(path), index=index, field=col)
    values["video"] = row["video_file"] if row["video_file"] is not None else row["video_frames"]
    for col in ("qa_type", "data_source", "is_RC"):
        values[col] = row[col]
    extra = values.pop("extra", None) or {}
    out: dict[str, Any] = {}
    for k in row["key_order"] or []:  # a known key listed but null in its column was an explicit null
        out[k] = values.get(k) if k in values or k in KNOWN_KEYS else extra.get(k)
    for k, v in values.items():
        if k not in out and v is not None:
            out[k] = v
    for k, v in extra.items():
        out.setdefault(k, v)
    return out


def _row(record: VideoRecord) -> dict[str, Any]:
    def dumps(value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False)

    return {
        "qa_type": record.qa_type,
        "data_source": record.data_source,
        "is_RC": record.is_RC,
        "video_file": record.video_path,
        "video_frames": None if record.is_video_file else record.frame_paths,
        "conversations": dumps(record.conversations),
        "metadata": dumps(record.metadata),
        "struc_info": dumps(record.struc_info),
        "RC_info": dumps(record.RC_info),
        "extra": dumps(record.extra) if record.extra else None,
        "key_order": list(record.key_order),
        "task": record.task,
        "dataset": record.dataset,
    }


def parquet_schema():
    """The Parquet schema records are written with (nested per-task fields as JSON strings)."""
    import pyarrow as pa

    text = pa.string()
    fields = [("qa_type", text), ("data_source", text), ("is_RC", pa.bool_()), ("video_file", text),
              ("video_frames", pa.list_(text)), *[(c, text) for c in _JSON_COLUMNS], ("key_order", pa.list_(text)),
              ("task", text), ("dataset", text)]
    return pa.schema(fields, metadata={"format": FORMAT_TAG})


def write_parquet(records: Iterable[VideoRecord], path: str | os.PathLike, batch_size: int = 1024) -> int:
    """Write records to Parquet, one row group per `batch_size` records, streaming; returns the count.

    Written atomically (io/atomic.py): a failed or killed write leaves no partial file behind.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, schema = Path(path), parquet_schema()
    count, rows = 0, []
    with atomic_path(path, suffix=".parquet") as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for record in records:
                rows.append(_row(record))
                if len(rows) == batch_size:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema), row_group_size=batch_size)
                    count, rows = count + len(rows), []
            if rows or count == 0:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema), row_group_size=max(1, batch_size))
                count += len(rows)
    return count


def write_json(records: Iterable[VideoRecord], path: str | os.PathLike) -> int:
    """Write records as a JSON list (`.json`, one record per line inside the list) or JSON Lines (`.jsonl`),
    streaming; returns the count."""
    path = Path(path)
    lines = path.suffix.lower() == ".jsonl"
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("" if lines else "[")
            for record in records:
                text = json.dumps(record.to_dict(), ensure_ascii=False)
                f.write(text + "\n" if lines else ("\n" if count == 0 else ",\n") + text)
                count += 1
            f.write("" if lines else "\n]\n")
    return count
