"""Bulk scoring inside the image: `sam local invoke BatchFunction` against a local S3 (moto's server).

The server runs in a container of its own (tests/image/moto.Dockerfile) on a Docker network made for the
test, published on 127.0.0.1 only; SAM attaches the function's container to that network
(--docker-network), and the function reaches the server through the environment (S3_ENDPOINT_URL, added
to a copy of the built template: SAM's --env-vars overrides only variables the template declares). SAM's
``--docker-network host`` does not give host networking (SAM only skips the network attach), so a server
on the host's loopback is out of the container's reach. The same objects scored by app.batch in a process
of this machine (the in-process path tests/app/test_batch.py exercises) must give the same results.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from image import sam
from tests.conftest import BUNDLED, ROOT
from tests.image.conftest import derived_template, docker, free_port
from tests.synthetic import reviews

boto3 = pytest.importorskip("boto3")
NETWORK, SERVER = "sentiment-test", "sentiment-test-s3"


@pytest.fixture(scope="module")
def s3_endpoint(sam_built: Path) -> Iterator[tuple[str, str]]:
    """(endpoint from this machine, endpoint from the function's container)."""
    docker("build", "-q", "-t", "sentiment-test-moto:5.2.5", "-f", str(Path(__file__).with_name("moto.Dockerfile")),
           str(Path(__file__).parent), timeout=900)
    docker("rm", "-f", SERVER, check=False)
    docker("network", "rm", NETWORK, check=False)
    docker("network", "create", NETWORK)
    port = free_port()
    docker("run", "-d", "--name", SERVER, "--network", NETWORK, "-p", f"127.0.0.1:{port}:5000",
           "sentiment-test-moto:5.2.5")
    try:
        host = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                client(host).list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield host, f"http://{SERVER}:5000"
    finally:
        docker("rm", "-f", SERVER, check=False)
        docker("network", "rm", NETWORK, check=False)


def client(endpoint: str) -> object:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local",
                        aws_secret_access_key="local")


def objects() -> dict[str, bytes]:
    """A JSONL file with a bad line and a CSV file with a quoted multi-line field, synthetic texts."""
    texts, _ = reviews(60, seed=23)
    lines = [json.dumps({"id": f"j{i}", "text": t}) for i, t in enumerate(texts[:30])]
    lines.insert(5, "{not json")
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "stars", "text"])
    for i, text in enumerate(texts[30:]):
        writer.writerow([f"c{i}", i % 5 + 1, f'{text}, "quoted"\nsecond line' if i == 3 else text])
    return {"incoming/reviews.jsonl": "\n".join(lines).encode(), "incoming/shop/reviews.csv": buffer.getvalue().encode()}


def s3_event(bucket: str, key: str) -> dict:
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                         "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket},
                                                                  "object": {"key": key, "size": 1}}}]}


def seed(endpoint: str, bucket: str) -> None:
    s3 = client(endpoint)
    s3.create_bucket(Bucket=bucket)
    for key, body in objects().items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def outputs(endpoint: str, bucket: str) -> dict[str, bytes]:
    s3 = client(endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="results/").get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in sorted(keys)}


def comparable(results: dict[str, bytes]) -> dict[str, object]:
    """Results files as bytes; summaries without what names the bucket or the object's etag."""
    out: dict[str, object] = {}
    for key, body in results.items():
        if key.endswith(".summary.json"):
            summary = json.loads(body)
            summary["input"] = {k: v for k, v in summary["input"].items() if k not in ("bucket", "etag")}
            out[key] = summary
        else:
            out[key] = body
    return out


def in_process(endpoint: str, bucket: str) -> None:
    """app.batch in a fresh process of this machine, on the bundled model, with the template's settings."""
    code = ("import json, sys; from app.batch import lambda_handler; from local.invoke import LocalContext; "
            "ctx = LocalContext(function_name='batch'); "
            f"lambda_handler({{'bucket': {bucket!r}, 'key': 'incoming/reviews.jsonl'}}, ctx); "
            f"lambda_handler({json.dumps(s3_event(bucket, 'incoming/shop/reviews.csv'))}, ctx)")
    env = {**os.environ, "MODEL_DIR": str(BUNDLED), "MODEL_BACKEND": "tflite", "S3_ENDPOINT_URL": endpoint,
           "INFERENCE_BATCH_SIZE": "32", "BULK_TIME_MARGIN_S": "60", "AWS_ACCESS_KEY_ID": "local",
           "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_batch_function_in_the_image_scores_jsonl_and_csv(sam_built: Path, s3_endpoint: tuple[str, str],
                                                          tmp_path: Path) -> None:
    host, inside = s3_endpoint
    seed(host, "image-run")
    template = derived_template(sam_built, "batch-local-s3", "BatchFunction", env={"S3_ENDPOINT_URL": inside})
    replies = []
    for name, event in {"direct": {"bucket": "image-run", "key": "incoming/reviews.jsonl"},
                        "s3": s3_event("image-run", "incoming/shop/reviews.csv")}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(event))
        response, stderr = sam.invoke(path, "BatchFunction", extra=["-t", str(template), "--docker-network", NETWORK])
        assert not sam.failed(response), f"{response}\n{stderr[-3000:]}"
        replies.append(response)
    assert replies[0]["status"] == "done" and replies[0]["scored"] == 30 and replies[0]["errors"] == 1
    assert replies[1]["results"][0]["status"] == "done" and replies[1]["results"][0]["scored"] == 30
    image = outputs(host, "image-run")
    assert set(image) == {"results/reviews.jsonl", "results/reviews.summary.json", "results/shop/reviews.jsonl",
                          "results/shop/reviews.summary.json"}

    seed(host, "direct-run")
    in_process(host, "direct-run")
    direct = outputs(host, "direct-run")
    assert comparable(image) == comparable(direct)
