"""``app.batch.lambda_handler`` against moto's S3: real boto3 calls, events as S3 and Step Functions send them."""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote_plus

import pytest

from local.invoke import LocalContext
from tests.synthetic import reviews

moto = pytest.importorskip("moto")
BUCKET = "reviews-bucket"


class ClockContext(LocalContext):
    """A context whose remaining time runs out after ``budget`` questions (then says 1 s left)."""

    def __init__(self, budget: int = 10**9) -> None:
        super().__init__(function_name="sentiment-batch",
                         invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:sentiment-batch")
        self.budget = budget

    def get_remaining_time_in_millis(self) -> int:
        self.budget -= 1
        return 600_000 if self.budget >= 0 else 1_000


@pytest.fixture(scope="module")
def batch(tiny_artifacts: Path) -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in {"MODEL_DIR": str(tiny_artifacts), "BULK_CHUNK": "64", "BULK_PART_BYTES": str(5 << 20),
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"}.items():
            mp.setenv(key, value)
        # app.bulk is not reloaded: other tests hold its classes (its limits come from app.schemas at first import)
        for name in ("app.settings", "app.batch"):
            if name in sys.modules:
                importlib.reload(sys.modules[name])
            else:
                importlib.import_module(name)
        yield sys.modules["app.batch"]
    importlib.reload(sys.modules["app.settings"])


@pytest.fixture
def s3(batch: ModuleType) -> Iterator[object]:
    with moto.mock_aws():
        batch.clients.cache_clear()
        client, _ = batch.clients()
        client.create_bucket(Bucket=BUCKET)
        yield client
    batch.clients.cache_clear()


def s3_event(key: str) -> dict:
    """An ObjectCreated notification as S3 sends it: the key URL-encoded (spaces as '+')."""
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventName": "ObjectCreated:Put",
        "eventTime": "2026-11-26T12:00:00.000Z",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "incoming",
               "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
               "object": {"key": quote_plus(key, safe="/"), "size": 1, "eTag": "x", "sequencer": "0"}}}]}


def read(s3: object, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # type: ignore[attr-defined]


GOOD_AND_BAD = [
    json.dumps({"id": "r1", "text": "Great value, works perfectly."}),
    "{broken json",
    json.dumps({"id": 2, "text": "Stopped working after two days."}),
    json.dumps({"id": "r3"}),
    "",
    json.dumps({"id": "r4", "text": "x" * 5001}),  # over MAX_TEXT_CHARS (5,000, or 2,000 in the handler tests)
    json.dumps({"id": "r5", "text": "Does what it says."}),
]


def test_jsonl_dropped_under_incoming_yields_results_and_summary(batch: ModuleType, s3: object) -> None:
    key = "incoming/2026/nov reviews+extra:1.jsonl"
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(GOOD_AND_BAD).encode())  # type: ignore[attr-defined]
    reply = batch.lambda_handler(s3_event(key), ClockContext())
    assert reply["results"][0]["status"] == "done"
    results_key, summary_key = "results/2026/nov reviews+extra:1.jsonl", "results/2026/nov reviews+extra:1.summary.json"
    records = [json.loads(line) for line in read(s3, results_key).splitlines()]
    assert [r.get("id") for r in records] == ["r1", None, 2, "r3", "r4", "r5"]
    assert [r.get("line") for r in records] == [None, 2, None, 4, 6, None]
    assert [r["error"]["code"] for r in records if "error" in r] == ["invalid_json", "invalid_record", "invalid_record"]
    texts = [json.loads(GOOD_AND_BAD[i])["text"] for i in (0, 2, 6)]
    expected = batch.model.predict(texts)
    scored = [r for r in records if "label" in r]
    assert [(r["label"], r["score"], r["scores"]) for r in scored] == [(p.label, p.score, p.scores) for p in expected]
    summary = json.loads(read(s3, summary_key))
    assert summary["status"] == "done" and summary["input"]["key"] == key
    assert (summary["lines"], summary["records"], summary["scored"], summary["errors"], summary["blank_lines"]) == (7, 6, 3, 3, 1)
    assert summary["model"]["version"] == batch.model.version and summary["results"] == results_key


def test_rerun_is_skipped_forced_rerun_is_identical_changed_object_is_rescored(batch: ModuleType, s3: object) -> None:
    key = "incoming/batch.jsonl"
    s3.put_object(Bucket=BUCKET, Key=key, Body="\n".join(GOOD_AND_BAD).encode())  # type: ignore[attr-defined]
    assert batch.lambda_handler(s3_event(key), ClockContext())["results"][0]["status"] == "done"
    first = read(s3, "results/batch.jsonl"), read(s3, "results/batch.summary.json")
    assert batch.lambda_handler(s3_event(key), ClockContext())["results"][0]["status"] == "skipped"
    assert batch.lambda_handler({"bucket": BUCKET, "key": key, "force": True}, ClockContext())["status"] == "done"
    assert (read(s3, "results/batch.jsonl"), read(s3, "results/batch.summary.json")) == first
    s3.put_object(Bucket=BUCKET, Key=key, Body=GOOD_AND_BAD[0].encode())  # type: ignore[attr-defined]
    assert batch.lambda_handler(s3_event(key), ClockContext())["results"][0]["status"] == "done"
    assert len(read(s3, "results/batch.jsonl").splitlines()) == 1


def _csv_rows(n: int) -> tuple[bytes, list[str]]:
    texts, _ = reviews(n, seed=11)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "stars", "text"])
    ids = []
    for i, text in enumerate(texts):
        ids.append(f"row-{i}")
        writer.writerow([ids[-1], i % 5 + 1, f"{text}, \"quoted\"\nsecond line" if i % 1000 == 0 else text])
    return buffer.getvalue().encode(), ids


def test_20000_row_csv_is_scored_in_full(batch: ModuleType, s3: object) -> None:
    body, ids = _csv_rows(20_000)
    s3.put_object(Bucket=BUCKET, Key="incoming/big.csv", Body=body)  # type: ignore[attr-defined]
    reply = batch.lambda_handler({"bucket": BUCKET, "key": "incoming/big.csv"}, ClockContext())
    assert reply["status"] == "done" and reply["scored"] == 20_000 and reply["errors"] == 0
    records = [json.loads(line) for line in read(s3, "results/big.jsonl").splitlines()]
    assert [r["id"] for r in records] == ids
    assert {r["label"] for r in records} <= {"POSITIVE", "NEGATIVE"}


def test_time_running_out_continues_the_file_and_output_is_the_same(batch: ModuleType, s3: object,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    body, ids = _csv_rows(700)
    s3.put_object(Bucket=BUCKET, Key="incoming/slow.csv", Body=body)  # type: ignore[attr-defined]
    assert batch.lambda_handler({"bucket": BUCKET, "key": "incoming/slow.csv"}, ClockContext())["status"] == "done"
    whole = read(s3, "results/slow.jsonl"), read(s3, "results/slow.summary.json")

    # Step Functions style: the function returns "continued" and is called again with what it returned.
    payload: dict = {"bucket": BUCKET, "key": "incoming/slow.csv", "force": True}
    calls = 0
    while True:
        calls += 1
        reply = batch.lambda_handler(payload, ClockContext(budget=2))
        if reply["status"] != "continued":
            break
        payload = {"bucket": reply["bucket"], "key": reply["key"], "run": reply["run"]}
    assert reply["status"] == "done" and calls >= 4
    assert (read(s3, "results/slow.jsonl"), read(s3, "results/slow.summary.json")) == whole
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="_work/")  # type: ignore[attr-defined]

    # S3-event style: the function re-invokes itself asynchronously with the run to continue.
    sent: list[dict] = []
    _, lambda_client = batch.clients()
    monkeypatch.setattr(lambda_client, "invoke", lambda **kw: sent.append(kw) or {"StatusCode": 202})
    s3.put_object(Bucket=BUCKET, Key="incoming/slow.csv", Body=body + b"row-x,1,one more\n")  # type: ignore[attr-defined]
    assert batch.lambda_handler(s3_event("incoming/slow.csv"), ClockContext(budget=3))["results"][0]["status"] == "continued"
    while sent:
        call = sent.pop()
        assert call["InvocationType"] == "Event" and call["FunctionName"].endswith(":sentiment-batch")
        batch.lambda_handler(json.loads(call["Payload"]), ClockContext(budget=3))
    records = [json.loads(line)["id"] for line in read(s3, "results/slow.jsonl").splitlines()]
    assert records == [*ids, "row-x"]


def test_large_output_goes_up_in_parts(batch: ModuleType, s3: object) -> None:
    output = batch.S3Output(s3, BUCKET, "results/parts.jsonl", part_bytes=5 << 20)
    chunk = (b"x" * 1023 + b"\n") * 1024  # 1 MiB
    for _ in range(12):
        output.write(chunk)
        assert len(output.buffer) < 5 << 20
    output.close()
    assert len(output.parts) == 3 and read(s3, "results/parts.jsonl") == chunk * 12


def test_file_level_errors_are_reported_in_the_summary(batch: ModuleType, s3: object) -> None:
    s3.put_object(Bucket=BUCKET, Key="incoming/no_text.csv", Body=b"id,body\n1,hello\n")  # type: ignore[attr-defined]
    s3.put_object(Bucket=BUCKET, Key="incoming/data.parquet", Body=b"PAR1")  # type: ignore[attr-defined]
    first = batch.lambda_handler({"bucket": BUCKET, "key": "incoming/no_text.csv"}, ClockContext())
    second = batch.lambda_handler({"bucket": BUCKET, "key": "incoming/data.parquet"}, ClockContext())
    assert (first["status"], first["error"]["code"]) == ("failed", "invalid_header")
    assert (second["status"], second["error"]["code"]) == ("failed", "unsupported_format")
    summary = json.loads(read(s3, "results/no_text.summary.json"))
    assert summary["status"] == "failed" and summary["error"]["code"] == "invalid_header"


def test_unknown_event_shape_is_refused(batch: ModuleType, s3: object) -> None:
    with pytest.raises(ValueError, match="S3 event notification"):
        batch.lambda_handler({"hello": "world"}, ClockContext())


def test_golden_s3_event_names_the_decoded_key(batch: ModuleType) -> None:
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "s3_object_created.json").read_text())
    jobs, chain_async = batch._jobs(event)
    assert chain_async and [(j.bucket, j.key) for j in jobs] == [
        ("sentiment-reviews-123456789012-us-east-1", "incoming/2026/november reviews(part 1).jsonl")]
    assert batch.output_keys(jobs[0].key) == ("results/2026/november reviews(part 1).jsonl",
                                               "results/2026/november reviews(part 1).summary.json")


def test_continuation_across_uploaded_parts_keeps_every_record_once(batch: ModuleType, s3: object) -> None:
    # ~90 bytes a result: 150,000 rows make two 5 MiB parts and a tail; stopping at row ~64,000 means
    # one part is already uploaded and the rest of the buffer is carried to the next call.
    rows = 150_000
    body = "".join(json.dumps({"id": i, "text": "fine" if i % 2 else "bad"}) + "\n" for i in range(rows)).encode()
    s3.put_object(Bucket=BUCKET, Key="incoming/huge.jsonl", Body=body)  # type: ignore[attr-defined]
    reply = batch.lambda_handler({"bucket": BUCKET, "key": "incoming/huge.jsonl"}, ClockContext(budget=1000))
    assert reply["status"] == "continued"
    checkpoint = json.loads(read(s3, f"_work/results/huge.jsonl/{reply['run']}.checkpoint.json"))
    assert len(checkpoint["parts"]) == 1 and checkpoint["upload_id"]
    reply = batch.lambda_handler({"bucket": BUCKET, "key": "incoming/huge.jsonl", "run": reply["run"]}, ClockContext())
    assert reply["status"] == "done" and reply["records"] == rows
    data = read(s3, "results/huge.jsonl")
    assert len(data) > 10 << 20
    assert [json.loads(line)["id"] for line in data.splitlines()] == list(range(rows))
