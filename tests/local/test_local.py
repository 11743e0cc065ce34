"""`make invoke` and `make serve` go through the real handler."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import ROOT


def _env(model_dir: Path) -> dict[str, str]:
    return {**os.environ, "MODEL_DIR": str(model_dir), "MODEL_BACKEND": "tflite"}


def test_invoke_prints_only_the_proxy_response_on_stdout(tiny_artifacts: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "local.invoke", "predict_batch"], cwd=ROOT, env=_env(tiny_artifacts),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    response = json.loads(run.stdout)
    assert response["statusCode"] == 200
    assert len(response["body"]["results"]) == 3
    assert '"_aws"' in run.stderr  # the EMF metrics line (and any log line) went to stderr


def test_invoke_unknown_event_lists_the_choices(tiny_artifacts: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "local.invoke", "nope"], cwd=ROOT, env=_env(tiny_artifacts),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "predict_single" in run.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, data: bytes | None = None, method: str = "GET",
             content_type: str = "application/json") -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def test_serve_answers_http_through_the_handler(tiny_artifacts: Path) -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "local.serve", "--port", str(port)], cwd=ROOT,
                              env=_env(tiny_artifacts), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                status, body, _ = _request(base + "/health")
                break
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.2)
        assert status == 200 and body["status"] == "ok"
        status, body, _ = _request(base + "/predict", json.dumps({"texts": ["Lovely.", "Awful."]}).encode(), "POST")
        assert status == 200 and len(body["results"]) == 2
        status, body, _ = _request(base + "/predict", b'{"text": ', "POST")
        assert status == 400 and body["error"]["code"] == "invalid_json"
        status, body, headers = _request(base + "/predict", method="DELETE")
        assert status == 405 and headers["Allow"] == "POST"
        status, body, _ = _request(base + "/openapi.json")
        assert status == 200 and "/predict" in body["paths"]
    finally:
        server.terminate()
        server.wait(timeout=10)
