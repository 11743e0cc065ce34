"""Bulk scoring entry point: S3 object in, ``results/<path>.jsonl`` and ``.summary.json`` out.

Invoked two ways, by the same image:

* by the S3 notification for objects created under ``INPUT_PREFIX`` (``incoming/``): an S3 event;
* directly, with ``{"bucket": ..., "key": ...}``: by the Step Functions Distributed Map for backlogs,
  or by hand (``"force": true`` re-scores a file whose summary says it is done).

The input is streamed and the output written as an S3 multipart upload, so memory stays bounded. When
the remaining time runs short the call stops at a record boundary and saves a checkpoint under
``WORK_PREFIX``; the file is then continued, not cut: an S3-triggered call re-invokes the function
asynchronously, a direct call returns ``{"status": "continued", ...}`` for its caller (the state
machine loops on it). Results are deterministic: a rerun writes the same bytes, and a rerun on an
unchanged object with the same model is skipped.
"""

from __future__ import annotations

import functools
import json
import os
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from app.bulk import READ_CHUNK, Counts, InputFileError, Position, detect_format, score_stream
from app.model import SentimentModel
from app.settings import settings

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "sentiment")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SentimentService"), service=SERVICE)

model = SentimentModel.from_settings(settings)


@functools.cache
def clients() -> tuple[Any, Any]:
    """(s3, lambda) clients, created on first use (tests clear this cache inside moto)."""
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url), boto3.client("lambda")


@dataclass(frozen=True)
class Job:
    bucket: str
    key: str
    run: str | None = None  # set when continuing a checkpointed run
    force: bool = False


def output_keys(key: str) -> tuple[str, str]:
    """``incoming/a/b.csv`` -> (``results/a/b.jsonl``, ``results/a/b.summary.json``)."""
    path = key.removeprefix(settings.input_prefix)
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return f"{settings.results_prefix}{stem}.jsonl", f"{settings.results_prefix}{stem}.summary.json"


def _work_keys(results_key: str, run: str) -> tuple[str, str]:
    base = f"{settings.work_prefix}{results_key}/{run}"
    return f"{base}.checkpoint.json", f"{base}.carry"


class S3Output:
    """Bytes streamed into one object: parts of ``part_bytes`` once that much is written, else one PUT."""

    def __init__(self, s3: Any, bucket: str, key: str, part_bytes: int, upload_id: str | None = None,
                 parts: list[dict[str, Any]] | None = None, carry: bytes = b"") -> None:
        self.s3, self.bucket, self.key, self.part_bytes = s3, bucket, key, part_bytes
        self.upload_id = upload_id
        self.parts: list[dict[str, Any]] = list(parts or [])
        self.buffer = bytearray(carry)

    def write(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= self.part_bytes:
            self._upload(bytes(self.buffer[: self.part_bytes]))
            del self.buffer[: self.part_bytes]

    def _upload(self, body: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType="application/x-ndjson")["UploadId"]
        number = len(self.parts) + 1
        etag = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                                   Body=body)["ETag"]
        self.parts.append({"PartNumber": number, "ETag": etag})

    def close(self) -> None:
        if self.upload_id is None:
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer),
                               ContentType="application/x-ndjson")
        else:
            if self.buffer:
                self._upload(bytes(self.buffer))
            self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                                              MultipartUpload={"Parts": self.parts})
        self.buffer = bytearray()

    def abort(self) -> None:
        if self.upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)
            self.upload_id = None


def _read_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
            return None
        raise


def _put_json(s3: Any, bucket: str, key: str, data: dict[str, Any]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(data, indent=2).encode(), ContentType="application/json")


def _summary(job: Job, etag: str, size: int, fmt: str | None, results_key: str, counts: Counts,
             error: InputFileError | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "status": "failed" if error else "done",
        "input": {"bucket": job.bucket, "key": job.key, "etag": etag, "size": size, "format": fmt},
        "results": None if error else results_key,
        "model": model.info(),
        **counts.to_dict(),
    }
    if error:
        summary["error"] = {"code": error.code, "message": str(error)}
    return summary


def _failed(job: Job, head: tuple[str, int], fmt: str | None, counts: Counts, exc: InputFileError,
            reply: dict[str, Any]) -> dict[str, Any]:
    """The file cannot be scored as a whole: a failed summary says why (the Map counts it as failed)."""
    s3, _ = clients()
    _put_json(s3, job.bucket, reply["summary"], _summary(job, *head, fmt, reply["results"], counts, exc))
    logger.warning("file not scored", extra={"key": job.key, "code": exc.code})
    return {"status": "failed", "error": {"code": exc.code, "message": str(exc)}, **reply}


def process(job: Job, context: LambdaContext, chain_async: bool) -> dict[str, Any]:
    """Score one object (or continue it); returns what the caller needs to know."""
    s3, _ = clients()
    results_key, summary_key = output_keys(job.key)
    head = s3.head_object(Bucket=job.bucket, Key=job.key)
    etag, size = head["ETag"], head["ContentLength"]
    reply = {"bucket": job.bucket, "key": job.key, "results": results_key, "summary": summary_key}

    checkpoint = None
    if job.run:
        checkpoint = _read_json(s3, job.bucket, _work_keys(results_key, job.run)[0])
        if checkpoint is None or checkpoint["etag"] != etag or checkpoint["model_version"] != model.version:
            logger.warning("checkpoint missing or stale (object or model changed): scoring from the start",
                           extra={"key": job.key, "run": job.run})
            checkpoint = None
    elif not job.force:
        previous = _read_json(s3, job.bucket, summary_key)
        if previous and previous.get("status") == "done" and previous["input"].get("etag") == etag \
                and previous["model"].get("version") == model.version:
            logger.info("unchanged object already scored by this model: skipped", extra={"key": job.key})
            return {"status": "skipped", **reply}

    run = job.run if checkpoint else uuid.uuid4().hex[:12]
    checkpoint_key, carry_key = _work_keys(results_key, run)
    try:
        fmt = detect_format(job.key)
    except InputFileError as exc:
        return _failed(job, (etag, size), None, Counts(), exc, reply)

    if checkpoint:
        position, counts = Position(**checkpoint["position"]), Counts(**checkpoint["counts"])
        carry = s3.get_object(Bucket=job.bucket, Key=carry_key)["Body"].read()
        output = S3Output(s3, job.bucket, results_key, settings.bulk_part_bytes, checkpoint["upload_id"],
                          checkpoint["parts"], carry)
    else:
        position, counts = Position(), Counts()
        output = S3Output(s3, job.bucket, results_key, settings.bulk_part_bytes)

    started, first_line = time.perf_counter(), counts.records
    margin_ms = settings.bulk_time_margin_s * 1000
    chunks: Any = iter(())
    if position.offset < size:
        body = s3.get_object(Bucket=job.bucket, Key=job.key, Range=f"bytes={position.offset}-", IfMatch=etag)["Body"]
        chunks = body.iter_chunks(READ_CHUNK)
    try:
        outcome = score_stream(chunks, fmt, model, output.write, start=position, counts=counts,
                               chunk_size=settings.bulk_chunk,
                               should_stop=lambda: context.get_remaining_time_in_millis() < margin_ms)
    except InputFileError as exc:
        output.abort()
        return _failed(job, (etag, size), fmt, counts, exc, reply)

    elapsed = time.perf_counter() - started
    done_now = outcome.counts.records - first_line
    logger.info("scored", extra={"key": job.key, "records": done_now, "seconds": round(elapsed, 2),
                                 "records_per_s": round(done_now / elapsed, 1) if elapsed else None,
                                 "done": outcome.done, "run": run})
    metrics.add_metric(name="BulkRecords", unit=MetricUnit.Count, value=done_now)
    if not outcome.done:
        # Save where we are; parts already uploaded stay in the open multipart upload.
        s3.put_object(Bucket=job.bucket, Key=carry_key, Body=bytes(output.buffer))
        _put_json(s3, job.bucket, checkpoint_key, {
            "run": run, "etag": etag, "model_version": model.version, "position": asdict(outcome.position),
            "counts": outcome.counts.to_dict(), "upload_id": output.upload_id, "parts": output.parts})
        next_call = {"bucket": job.bucket, "key": job.key, "run": run}
        if chain_async:
            _, lambda_client = clients()
            lambda_client.invoke(FunctionName=context.invoked_function_arn, InvocationType="Event",
                                 Payload=json.dumps({**next_call, "chain": "async"}).encode())
        return {"status": "continued", **reply, **next_call, "records": outcome.counts.records}

    output.close()
    summary = _summary(job, etag, size, fmt, results_key, outcome.counts)
    _put_json(s3, job.bucket, summary_key, summary)
    if checkpoint:
        s3.delete_objects(Bucket=job.bucket, Delete={"Objects": [{"Key": checkpoint_key}, {"Key": carry_key}]})
    metrics.add_metric(name="BulkFiles", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BulkErrors", unit=MetricUnit.Count, value=outcome.counts.errors)
    return {"status": "done", **reply, "records": outcome.counts.records, "scored": outcome.counts.scored,
            "errors": outcome.counts.errors}


def _jobs(event: dict[str, Any]) -> tuple[list[Job], bool]:
    """Jobs in the event, and whether continuation chains itself asynchronously."""
    if "Records" in event:
        # Keys arrive URL-encoded ('+' for space); only S3Event.object_key decodes, and only the first record's.
        return [Job(r.s3.bucket.name, unquote_plus(r.s3.get_object.key)) for r in S3Event(event).records], True
    if isinstance(event.get("bucket"), str) and isinstance(event.get("key"), str):
        job = Job(event["bucket"], event["key"], event.get("run"), bool(event.get("force", False)))
        return [job], event.get("chain") == "async"
    raise ValueError("expected an S3 event notification or {\"bucket\": ..., \"key\": ...}")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    jobs, chain_async = _jobs(event)
    replies = []
    try:
        for job in jobs:
            replies.append(process(job, context, chain_async))
    except Exception as exc:
        # Stack frames, not the message: keep review text out of the logs. The invocation fails and is retried.
        logger.error("bulk scoring failed", extra={"error_type": type(exc).__name__,
                                                   "stack": "".join(traceback.format_tb(exc.__traceback__))})
        raise
    return replies[0] if len(replies) == 1 and "Records" not in event else {"results": replies}
