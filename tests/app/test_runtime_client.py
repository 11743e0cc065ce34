"""The image's entry point under the real awslambdaric client, against a fake Lambda Runtime API.

This is what `sam local invoke` does inside the container, minus Docker: the runtime client
polls /invocation/next, calls app.handler.lambda_handler and posts the result back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ROOT, load_event

pytest.importorskip("awslambdaric")


class FakeRuntimeApi:
    """Hands out queued events and records responses, errors and init errors."""

    def __init__(self, events: list[dict]) -> None:
        self.events = list(events)
        self.responses: dict[str, dict] = {}
        self.errors: dict[str, dict] = {}
        self.init_errors: list[dict] = []
        self.done = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.endswith("/runtime/invocation/next"):
                    self.send_error(404)
                    return
                if not api.events:
                    api.done.set()
                    time.sleep(30)  # the runtime waits; the test stops it
                    return
                index = len(api.responses) + len(api.errors)
                body = json.dumps(api.events.pop(0)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Lambda-Runtime-Aws-Request-Id", f"req-{index}")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                 "arn:aws:lambda:eu-west-1:123456789012:function:sentiment")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                payload = json.loads(data or b"{}")
                parts = self.path.split("/")
                if self.path.endswith("/init/error"):
                    api.init_errors.append(payload)
                    api.done.set()
                elif self.path.endswith("/response"):
                    api.responses[parts[-2]] = payload
                elif self.path.endswith("/error"):
                    api.errors[parts[-2]] = payload
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_runtime(model_dir: Path, events: list[dict], timeout: float = 120) -> FakeRuntimeApi:
    api = FakeRuntimeApi(events)
    env = {**os.environ, "AWS_LAMBDA_RUNTIME_API": api.address, "MODEL_DIR": str(model_dir),
           "MODEL_BACKEND": "tflite", "AWS_LAMBDA_FUNCTION_NAME": "sentiment", "LAMBDA_TASK_ROOT": str(ROOT),
           "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "awslambdaric", "app.handler.lambda_handler"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert api.done.wait(timeout), "the runtime client did not finish the events in time"
    finally:
        process.kill()
        process.wait()
        api.close()
    return api


def test_invocations_round_trip_through_awslambdaric(tiny_artifacts: Path) -> None:
    api = run_runtime(tiny_artifacts, [load_event("predict_single"), load_event("invalid_json"), load_event("health")])
    assert not api.errors and not api.init_errors
    assert set(api.responses) == {"req-0", "req-1", "req-2"}
    first = api.responses["req-0"]
    assert first["statusCode"] == 200
    assert json.loads(first["body"])["results"][0]["label"] in ("NEGATIVE", "POSITIVE")
    assert api.responses["req-1"]["statusCode"] == 400
    assert json.loads(api.responses["req-2"]["body"])["status"] == "ok"


def test_broken_artifacts_are_an_init_error_naming_the_file(tmp_path: Path) -> None:
    api = run_runtime(tmp_path, [load_event("predict_single")])
    assert api.init_errors, "start-up with no model must fail"
    assert f"{tmp_path}/model.json: missing" in api.init_errors[0]["errorMessage"]
    assert api.init_errors[0]["errorType"].endswith("ModelLoadError")
