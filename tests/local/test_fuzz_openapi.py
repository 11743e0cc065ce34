"""Schema-driven fuzzing: schemathesis reads the service's own OpenAPI document and attacks `make serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from tests.conftest import ROOT  # noqa: E402
from tests.local.test_local import _free_port  # noqa: E402


@pytest.fixture(scope="module")
def served_schema(tiny_artifacts: Path) -> Iterator[object]:
    port = _free_port()
    env = {**os.environ, "MODEL_DIR": str(tiny_artifacts), "MODEL_BACKEND": "tflite",
           "MAX_BATCH_SIZE": "16", "MAX_TEXT_CHARS": "1000", "MAX_BODY_BYTES": "20000", "POWERTOOLS_LOG_LEVEL": "WARNING"}
    log = open(os.environ.get("FUZZ_SERVER_LOG", os.devnull), "w")
    server = subprocess.Popen([sys.executable, "-m", "local.serve", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/health", timeout=2).read()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield schemathesis.openapi.from_url(url + "/openapi.json")
    finally:
        server.terminate()
        server.wait(timeout=10)


schema = schemathesis.pytest.from_fixture("served_schema")


@schema.parametrize()
@settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz(case) -> None:
    response = case.call()
    assert response.status_code < 500, response.text[:300]
    body = response.json()
    if response.status_code == 200:
        assert set(body) <= {"results", "model", "status", "labels", "max_length"}
    else:
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
