"""Bulk scoring of JSON Lines and CSV streams: the core shared by ``app.batch`` (S3) and ``make score`` (files).

Input is read line by line from a byte stream, so memory stays bounded whatever the file size. Every
input record gives exactly one output line, in input order: a prediction, or an error record saying
what was wrong with that line. Blank lines are skipped (and counted). A :class:`Position` after any
flushed record lets a later call continue exactly where this one stopped.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from app.errors import validation_details
from app.model import Prediction
from app.schemas import Text

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
READ_CHUNK = 1 << 16
MAX_LINE_BYTES = 1 << 20  # a longer physical line is an error record, and is never held in memory whole
_SURROGATE = re.compile("[\udc80-\udcff]")


class InputFileError(ValueError):
    """The file as a whole cannot be scored (unknown format, CSV header without id/text)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Model(Protocol):
    def predict(self, texts: list[str]) -> list[Prediction]: ...


class Record(BaseModel):
    """One input record; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: StrictStr | StrictInt
    text: Text


class CsvRecord(Record):
    id: Annotated[StrictStr, Field(min_length=1)]


def detect_format(name: str) -> str:
    """``jsonl`` or ``csv`` from the file name's extension."""
    lowered = name.lower()
    for suffix, fmt in FORMATS.items():
        if lowered.endswith(suffix):
            return fmt
    raise InputFileError("unsupported_format", f"{name}: unknown extension; use one of {', '.join(FORMATS)}")


@dataclass
class Position:
    """Where the next call continues: bytes and physical lines consumed, and the CSV header once read."""

    offset: int = 0
    line: int = 0
    header: list[str] | None = None


@dataclass
class Counts:
    """What the summary reports; restored on continuation."""

    lines: int = 0  # physical lines read (CSV header and blank lines included)
    records: int = 0  # output lines written: scored + errors
    scored: int = 0
    errors: int = 0
    blank_lines: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    sentiments: dict[str, int] = field(default_factory=dict)  # four-way, with a star-head model
    error_codes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Item:
    """One input line (or CSV record) on its way out: text to score, an error already decided, or a
    line that writes nothing (``blank``, or a CSV header when neither text nor error is set)."""

    line: int
    end: Position
    id: str | int | None = None
    text: str | None = None
    error: tuple[str, str] | None = None
    blank: bool = False


class _LineReader:
    """Splits a byte stream into lines, tracking bytes consumed; over-long lines come out as ``None``."""

    def __init__(self, chunks: Iterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._chunks = iter(chunks)
        self._max = max_line_bytes
        self.consumed = 0  # bytes of every line handed out so far

    def __iter__(self) -> Iterator[bytes | None]:
        buffer = b""  # the unfinished last line only: lines are cut by index, never by re-slicing the rest
        skipping = 0  # bytes of an over-long line dropped so far
        for chunk in self._chunks:
            buffer = buffer + chunk if buffer else chunk
            start = 0
            while True:
                cut = buffer.find(b"\n", start)
                if cut < 0:
                    buffer = buffer[start:]
                    if len(buffer) > self._max:
                        skipping += len(buffer)
                        buffer = b""
                    break
                line, start = buffer[start : cut + 1], cut + 1
                if skipping or len(line) > self._max:
                    self.consumed += skipping + len(line)
                    skipping = 0
                    yield None
                else:
                    self.consumed += len(line)
                    yield line
        if skipping or len(buffer) > self._max:
            self.consumed += skipping + len(buffer)
            yield None
        elif buffer:
            self.consumed += len(buffer)
            yield buffer


def _validation_message(exc: ValidationError) -> str:
    """Field names and reasons, worded as the API words them; never the input itself."""
    details = validation_details(exc.errors(include_input=False, include_url=False))
    return "; ".join(f"{d.field or 'record'}: {d.message}" for d in details)


def _known_id(value: object) -> str | int | None:
    if isinstance(value, str) and value and len(value) <= 256:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _item(line: int, end: Position, data: dict[str, object], schema: type[Record]) -> Item:
    try:
        record = schema.model_validate(data)
    except ValidationError as exc:
        return Item(line, end, _known_id(data.get("id")), error=("invalid_record", _validation_message(exc)))
    return Item(line, end, record.id, text=record.text)


def read_jsonl(chunks: Iterable[bytes], start: Position) -> Iterator[Item]:
    """Items of a JSON Lines stream whose bytes from ``start.offset`` on are ``chunks``."""
    reader = _LineReader(chunks)
    line_no = start.line
    for raw in reader:
        line_no += 1
        end = Position(start.offset + reader.consumed, line_no)
        if raw is None:
            yield Item(line_no, end, error=("line_too_long", f"line is longer than {MAX_LINE_BYTES} bytes"))
            continue
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Item(line_no, end, error=("invalid_utf8", f"not UTF-8 at byte {exc.start}"))
            continue
        decoded = decoded.lstrip("\ufeff") if line_no == 1 else decoded
        if not decoded.strip():
            yield Item(line_no, end, blank=True)
            continue
        try:
            data = json.loads(decoded)
        except json.JSONDecodeError as exc:
            yield Item(line_no, end, error=("invalid_json", f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        except RecursionError:
            yield Item(line_no, end, error=("invalid_json", "not JSON: nested too deeply"))
            continue
        if not isinstance(data, dict):
            yield Item(line_no, end, error=("invalid_record", f"expected an object with id and text, got {type(data).__name__}"))
            continue
        yield _item(line_no, end, data, Record)


def read_csv(chunks: Iterable[bytes], start: Position) -> Iterator[Item]:
    """Items of a CSV stream with a header naming ``id`` and ``text`` (other columns ignored)."""
    reader = _LineReader(chunks)
    counter = {"line": start.line}
    too_long: list[int] = []

    def text_lines() -> Iterator[str]:
        for raw in reader:
            counter["line"] += 1
            if raw is None:
                too_long.append(counter["line"])
                yield "\n"
                continue
            yield raw.decode("utf-8", errors="surrogateescape")

    rows = csv.reader(text_lines(), strict=True)
    header = start.header
    line_no = start.line
    while True:
        first = line_no + 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            line_no = counter["line"]
            end = Position(start.offset + reader.consumed, line_no, header)
            yield Item(first, end, error=("invalid_csv", f"CSV error: {exc}"))
            continue
        line_no = counter["line"]
        end = Position(start.offset + reader.consumed, line_no, header)
        if too_long and too_long[-1] >= first:
            yield Item(first, end, error=("line_too_long", f"line is longer than {MAX_LINE_BYTES} bytes"))
            continue
        if header is None:
            names = [name.lstrip("\ufeff").strip().lower() for name in row]
            missing = [col for col in ("id", "text") if col not in names]
            if missing:
                raise InputFileError("invalid_header", f"CSV header has no {' or '.join(missing)} column "
                                                       f"(found {len(names)} columns)")
            header = names
            yield Item(first, Position(end.offset, line_no, header))
            continue
        if not any(cell.strip() for cell in row):
            yield Item(first, end, blank=True)
            continue
        if any(_SURROGATE.search(cell) for cell in row):
            yield Item(first, end, error=("invalid_utf8", "not UTF-8"))
            continue
        if len(row) != len(header):
            data = dict(zip(header, row, strict=False))
            yield Item(first, end, _known_id(data.get("id")),
                       error=("invalid_record", f"expected {len(header)} fields, got {len(row)}"))
            continue
        yield _item(first, end, dict(zip(header, row, strict=True)), CsvRecord)


READERS: dict[str, Callable[[Iterable[bytes], Position], Iterator[Item]]] = {
    "jsonl": read_jsonl, "csv": read_csv,
}


def _dumps(obj: dict[str, object]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


@dataclass
class Outcome:
    """How a call ended: ``done`` (input exhausted) or stopped early at ``position``."""

    done: bool
    position: Position
    counts: Counts


def score_stream(
    chunks: Iterable[bytes],
    fmt: str,
    model: Model,
    write: Callable[[bytes], None],
    *,
    start: Position | None = None,
    counts: Counts | None = None,
    chunk_size: int = 256,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] = lambda _consumed: None,
) -> Outcome:
    """Score records from ``chunks`` (the input from ``start.offset`` on) and ``write`` one JSON line each.

    Texts are scored ``chunk_size`` at a time (the model groups them by length); output is written in
    input order after each chunk. ``should_stop`` is asked after each chunk: when it says yes, the
    call returns with the position to continue from. ``progress`` gets the input bytes consumed.
    """
    position = start or Position()
    counts = counts or Counts()
    labels, error_codes = Counter(counts.labels), Counter(counts.error_codes)
    sentiments = Counter(counts.sentiments)
    pending: list[Item] = []
    scorable = 0

    def flush() -> None:
        nonlocal pending, scorable, position
        if not pending:
            return
        texts = [item.text for item in pending if item.text is not None]
        predictions = iter(model.predict(texts) if texts else [])
        out = bytearray()
        for item in pending:
            if item.error is not None:
                code, message = item.error
                record: dict[str, object] = {"id": item.id} if item.id is not None else {}
                record.update({"line": item.line, "error": {"code": code, "message": message}})
                counts.errors += 1
                error_codes[code] += 1
            elif item.text is not None:
                p = next(predictions)
                record = {"id": item.id, "label": p.label, "score": p.score, "scores": p.scores}
                if p.sentiment is not None:  # a star-head model: the API's four-way fields, after the binary ones
                    record.update(sentiment=p.sentiment, sentiment_scores=p.sentiment_scores, stars=p.stars,
                                  star_scores=p.star_scores)
                    sentiments[p.sentiment] += 1
                counts.scored += 1
                labels[p.label] += 1
            else:
                counts.blank_lines += item.blank
                continue
            out += _dumps(record)
            counts.records += 1
        if out:
            write(bytes(out))
        position = pending[-1].end
        counts.lines = position.line
        counts.labels, counts.error_codes = dict(sorted(labels.items())), dict(sorted(error_codes.items()))
        counts.sentiments = dict(sorted(sentiments.items()))
        pending, scorable = [], 0

    for item in READERS[fmt](chunks, position):
        pending.append(item)
        scorable += item.text is not None
        if scorable >= chunk_size or len(pending) >= 8 * chunk_size:
            flush()
            progress(position.offset)
            if should_stop():
                return Outcome(False, position, counts)
    flush()
    progress(position.offset)
    return Outcome(True, position, counts)
