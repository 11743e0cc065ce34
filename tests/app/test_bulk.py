"""The streaming core of bulk scoring: readers, ordering, error records, continuation, bounded memory."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator

import pytest

from app.bulk import MAX_LINE_BYTES, InputFileError, Position, detect_format, score_stream
from app.model import Prediction
from tests.synthetic import reviews


class KeywordModel:
    """A stand-in with a known answer: POSITIVE iff the text contains 'good'. Counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, texts: list[str]) -> list[Prediction]:
        self.calls.append(len(texts))
        out = []
        for text in texts:
            p = 0.9 if "good" in text else 0.2
            out.append(Prediction("POSITIVE" if p > 0.5 else "NEGATIVE", max(p, 1 - p),
                                  {"NEGATIVE": round(1 - p, 6), "POSITIVE": p}, False))
        return out


def run(data: bytes, fmt: str, chunk_bytes: int = 7, **kwargs: object) -> tuple[list[dict], object]:
    out = io.BytesIO()
    chunks = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    outcome = score_stream(chunks, fmt, kwargs.pop("model", KeywordModel()), out.write, **kwargs)  # type: ignore[arg-type]
    return [json.loads(line) for line in out.getvalue().splitlines()], outcome


JSONL = (
    b'{"id": "a", "text": "a good one"}\n'
    b'not json\n'
    b'\n'
    b'{"id": 7, "text": "bad, broke"}\n'
    b'["id", "text"]\n'
    b'{"text": "no id here"}\n'
    b'{"id": "e", "text": "   "}\n'
    b'{"id": "f", "text": "caf\xc3\xa9 good", "stars": 5}\r\n'
    b'{"id": "g", "text": "\xff\xfe broken bytes"}\n'
    b'{"id": true, "text": "bool id"}\n'
    b'{"id": "last", "text": "no newline at the end, good"}'
)


def test_jsonl_one_record_per_line_in_order_with_errors() -> None:
    records, outcome = run(JSONL, "jsonl", chunk_size=2)
    assert [r.get("id") for r in records] == ["a", None, 7, None, None, "e", "f", None, None, "last"]
    assert [r.get("line") for r in records] == [None, 2, None, 5, 6, 7, None, 9, 10, None]
    assert [r["label"] for r in records if "label" in r] == ["POSITIVE", "NEGATIVE", "POSITIVE", "POSITIVE"]
    assert records[0] == {"id": "a", "label": "POSITIVE", "score": 0.9, "scores": {"NEGATIVE": 0.1, "POSITIVE": 0.9}}
    codes = {r["line"]: r["error"]["code"] for r in records if "error" in r}
    assert codes == {2: "invalid_json", 5: "invalid_record", 6: "invalid_record", 7: "invalid_record",
                     9: "invalid_utf8", 10: "invalid_record"}
    messages = " ".join(r["error"]["message"] for r in records if "error" in r)
    assert "id: Field required" in messages and "text:" in messages
    assert "broken bytes" not in messages and "bool id" not in messages  # input is never echoed
    counts = outcome.counts  # type: ignore[attr-defined]
    assert (counts.lines, counts.records, counts.scored, counts.errors, counts.blank_lines) == (11, 10, 4, 6, 1)
    assert counts.labels == {"NEGATIVE": 1, "POSITIVE": 3}
    assert outcome.done and outcome.position.offset == len(JSONL)  # type: ignore[attr-defined]


def _csv(rows: list[list[str]], header: tuple[str, ...] = ("id", "text")) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def test_csv_quotes_newlines_extra_columns_and_bad_rows() -> None:
    data = _csv([["1", "good, really good", "x"], ["2", "line one\nline two", "y"], ["", "no id", "z"],
                 ["4", "only two", "w"]], header=("ID", "text", "stars"))
    data += b'5,"short row"\n6,"good again",q\n'
    records, outcome = run(data, "csv", chunk_size=3)
    assert [r.get("id") for r in records] == ["1", "2", None, "4", "5", "6"]
    assert [r.get("line") for r in records] == [None, None, 5, None, 7, None]
    assert [r["error"]["code"] for r in records if "error" in r] == ["invalid_record", "invalid_record"]
    assert records[1]["label"] == "NEGATIVE" and records[5]["label"] == "POSITIVE"
    assert outcome.counts.lines == 8  # type: ignore[attr-defined]


def test_csv_header_without_text_column_stops_the_file() -> None:
    with pytest.raises(InputFileError, match="no text column") as info:
        run(_csv([["1", "x"]], header=("id", "body")), "csv")
    assert info.value.code == "invalid_header"


def test_csv_unterminated_quote_and_invalid_utf8_are_error_records() -> None:
    data = _csv([["1", "good"]]) + b'2,"caf\xe9 latin-1"\n3,good end\n4,"open quote\n'
    records, _ = run(data, "csv")
    assert [(r.get("id"), r.get("error", {}).get("code")) for r in records] == [
        ("1", None), (None, "invalid_utf8"), ("3", None), (None, "invalid_csv")]


def test_overlong_line_is_an_error_and_never_held_whole() -> None:
    big = b'{"id": "big", "text": "' + b"a" * (MAX_LINE_BYTES + 10) + b'"}\n'
    data = b'{"id": 1, "text": "good"}\n' + big + b'{"id": 2, "text": "fine"}\n'
    records, outcome = run(data, "jsonl", chunk_bytes=1 << 16)
    assert [r.get("error", {}).get("code") for r in records] == [None, "line_too_long", None]
    assert records[1]["line"] == 2 and outcome.position.offset == len(data)  # type: ignore[attr-defined]


def test_stop_and_continue_gives_the_same_output() -> None:
    texts, _ = reviews(50, seed=3)
    data = b"".join(json.dumps({"id": i, "text": t}).encode() + b"\n" + (b"\n" if i % 7 == 0 else b"")
                    for i, t in enumerate(texts))
    whole, full = run(data, "jsonl", chunk_size=8)
    pieces: list[dict] = []
    position, counts, calls = Position(), None, 0
    while True:
        calls += 1
        part, outcome = run(data[position.offset:], "jsonl", chunk_size=8, start=position, counts=counts,
                            should_stop=lambda: True)
        pieces += part
        position, counts = outcome.position, outcome.counts  # type: ignore[attr-defined]
        if outcome.done:  # type: ignore[attr-defined]
            break
    assert calls > 3 and pieces == whole
    assert counts == full.counts  # type: ignore[attr-defined]


def test_csv_continuation_keeps_the_header() -> None:
    data = _csv([[str(i), f"text {i} {'good' if i % 2 else 'bad'}"] for i in range(20)], header=("text", "id"))
    whole, _ = run(data, "csv", chunk_size=4)
    first, outcome = run(data, "csv", chunk_size=4, should_stop=lambda: True)
    assert not outcome.done and outcome.position.header == ["text", "id"]  # type: ignore[attr-defined]
    rest, _ = run(data[outcome.position.offset:], "csv", chunk_size=100, start=outcome.position,  # type: ignore[attr-defined]
                  counts=outcome.counts)  # type: ignore[attr-defined]
    assert first + rest == whole and len(whole) == 20


def test_model_sees_chunks_of_texts_not_single_lines() -> None:
    model = KeywordModel()
    data = b"".join(json.dumps({"id": i, "text": f"t{i}"}).encode() + b"\n" for i in range(1000))
    run(data, "jsonl", chunk_bytes=4096, model=model, chunk_size=256)
    assert model.calls == [256, 256, 256, 232]


def test_format_from_extension() -> None:
    assert detect_format("incoming/a.JSONL") == "jsonl" and detect_format("x.csv") == "csv"
    with pytest.raises(InputFileError, match="unknown extension"):
        detect_format("incoming/a.parquet")


def _lines(n: int) -> Iterator[bytes]:
    """``n`` JSONL records produced lazily, in 64 KiB chunks: the input is never in memory whole."""
    buffer = b""
    for i in range(n):
        buffer += json.dumps({"id": f"r{i}", "text": f"review number {i} is {'good' if i % 3 else 'poor'}"}).encode() + b"\n"
        if len(buffer) >= 1 << 16:
            yield buffer
            buffer = b""
    yield buffer


def _peak(n: int) -> int:
    written = [0]

    def sink(data: bytes) -> None:
        written[0] += len(data)

    tracemalloc.start()
    outcome = score_stream(_lines(n), "jsonl", KeywordModel(), sink)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outcome.counts.scored == n
    return peak


def test_memory_stays_bounded_with_file_size() -> None:
    small, large = _peak(4_000), _peak(40_000)
    # Ten times the rows (about 3 MB more input and output): the peak must not grow with them.
    assert large < 1.3 * small + 200_000, (small, large)
