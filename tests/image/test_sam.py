"""The image as a user runs it: `sam local invoke` on every golden event, `make sam-invoke`, start-api, start-lambda."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from types import ModuleType

import pytest

from image import sam
from tests.app.conftest import load_handler
from tests.conftest import BUNDLED, ROOT, load_event
from tests.image.conftest import Server, free_port

# The API function's events (s3_object_created is the bulk function's).
EVENTS = sorted(p.stem for p in (ROOT / "events").glob("*.json") if p.stem != "s3_object_created")


@pytest.fixture(scope="module")
def direct() -> Iterator[ModuleType]:
    """The handler in this process, on the bundled model and default limits: the reference."""
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MAX_BATCH_SIZE", "MAX_TEXT_CHARS", "MAX_BODY_BYTES"):
            mp.delenv(key, raising=False)
        yield load_handler(mp, BUNDLED, "tflite")


def normalised(body: object) -> object:
    """The body without what differs per call (request ids, timestamps); floats rounded to 1e-5."""
    if isinstance(body, dict):
        return {k: normalised(v) for k, v in body.items() if k not in ("request_id", "requestId", "timestamp")}
    if isinstance(body, list):
        return [normalised(v) for v in body]
    if isinstance(body, float):
        return round(body, 5) if math.isfinite(body) else body
    return body


def same_response(got: dict, expected: dict) -> None:
    assert got["statusCode"] == expected["statusCode"]
    assert normalised(json.loads(got["body"])) == normalised(json.loads(expected["body"]))


def test_every_golden_event_answers_as_the_handler_does(sam_built, direct, lambda_context) -> None:
    for name in EVENTS:
        response, stderr = sam.invoke(ROOT / "events" / f"{name}.json")
        assert not sam.failed(response), f"{name}: {response}\n{stderr[-2000:]}"
        same_response(response, direct.lambda_handler(load_event(name), lambda_context))


def test_make_sam_invoke_prints_only_the_response(sam_built) -> None:
    run = subprocess.run(["make", "--no-print-directory", "sam-invoke", "EVENT=predict_batch"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    response = json.loads(run.stdout)  # the whole of stdout is the one response
    labels = [r["label"] for r in json.loads(response["body"])["results"]]
    assert response["statusCode"] == 200 and labels[:2] == ["POSITIVE", "NEGATIVE"]


def test_sam_invoke_exit_status_follows_the_function(tmp_path) -> None:
    """SAM exits 0 whatever the function did: the wrapper's status reads the response."""
    assert sam.failed({"errorMessage": "boom", "errorType": "ModelLoadError"})
    assert sam.failed({"statusCode": 500, "body": "{}"})
    assert not sam.failed({"statusCode": 400, "body": "{}"})
    with pytest.raises(sam.SamError):
        sam.parse_response("START RequestId: x\nno json here\n")
    assert sam.parse_response('log line\n{"statusCode": 200}\n') == {"statusCode": 200}
    with pytest.raises(sam.SamError, match="no event 'nope'"):
        sam.resolve_event("nope")


def test_sam_runs_offline_without_credentials(monkeypatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_PROFILE", "someone")
    env = sam.environment()
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_PROFILE" not in env
    assert env["SAM_CLI_TELEMETRY"] == "0" and env["HOME"].startswith(str(sam.WORK))
    metadata = json.loads((sam.WORK / "home" / ".aws-sam" / "metadata.json").read_text())
    assert time.time() - metadata["lastVersionCheck"] < 60


def test_start_api_answers_http(sam_built) -> None:
    port = free_port()
    server = Server(["local", "start-api"], port)
    try:
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=120).read())
        assert health["status"] == "ok"
        body = json.dumps({"text": "Works perfectly, great value."}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        result = json.loads(urllib.request.urlopen(request, timeout=120).read())
        assert result["results"][0]["label"] == "POSITIVE"
    finally:
        server.stop()


def test_boto3_lambda_invoke_against_start_lambda(sam_built) -> None:
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    port = free_port()
    server = Server(["local", "start-lambda"], port)
    try:
        client = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local",
                              config=Config(read_timeout=120, retries={"max_attempts": 0}))
        reply = client.invoke(FunctionName="SentimentFunction", Payload=json.dumps(load_event("predict_single")))
        assert reply["StatusCode"] == 200 and "FunctionError" not in reply
        response = json.loads(reply["Payload"].read())
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["results"][0]["label"] in ("POSITIVE", "NEGATIVE")
    finally:
        server.stop()


def test_image_module_runs_with_the_system_python() -> None:
    """`make sam-invoke` runs image.sam with plain python3: it must need nothing outside the standard library."""
    run = subprocess.run([os.environ.get("PYTHON", "python3"), "-c", "import image.sam"], cwd=ROOT,
                         capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stderr
