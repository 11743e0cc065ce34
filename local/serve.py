"""``python -m local.serve``: answer HTTP on 127.0.0.1 through the real Lambda handler.

Each request becomes an API Gateway REST proxy event, as API Gateway would build it, so curl or
a browser sees what a deployed endpoint answers (minus the API key check). ``GET /docs`` answers
Swagger UI (``API_DOCS=true`` unless the environment or ``--no-docs`` says otherwise).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from local.invoke import LocalContext

_lock = threading.Lock()  # one invocation at a time, like one Lambda execution environment


def to_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict:
    """An API Gateway REST (v1) proxy event for one HTTP request."""
    url = urlsplit(target)
    query = dict(parse_qsl(url.query)) or None
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    request_id = str(uuid.uuid4())
    return {
        "resource": url.path, "path": url.path, "httpMethod": method,
        "headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None,
        "requestContext": {"resourcePath": url.path, "httpMethod": method, "path": url.path, "stage": "local",
                           "requestId": request_id, "requestTimeEpoch": int(time.time() * 1000),
                           "identity": {"sourceIp": "127.0.0.1"}, "accountId": "000000000000", "apiId": "local"},
        "body": text if body else None, "isBase64Encoded": encoded,
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "sentiment-local"

    def _handle(self) -> None:
        from app.handler import lambda_handler

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        event = to_event(self.command, self.path, dict(self.headers.items()), body)
        with _lock:
            response = lambda_handler(event, LocalContext())
        payload = response.get("body") or ""
        data = base64.b64decode(payload) if response.get("isBase64Encoded") else payload.encode()
        self.send_response(response["statusCode"])
        for name, values in (response.get("multiValueHeaders") or {}).items():
            for value in values:
                self.send_header(name, value)
        for name, value in (response.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def __getattr__(self, name: str):  # every method (GET, TRACE, QUERY, ...) goes to the handler
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--no-docs", action="store_true", help="leave GET /docs off, as the deployed API's default")
    args = parser.parse_args(argv)
    sys.stdout = sys.stderr  # keep Powertools' logs with the server's
    # Swagger UI is for people trying the API: on here unless asked not to (the handler reads it at import).
    os.environ["API_DOCS"] = "false" if args.no_docs else os.environ.get("API_DOCS", "true")
    import app.handler  # noqa: F401  cold start before the first request

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    from app.settings import settings

    docs = f", Swagger UI on http://{args.host}:{args.port}/docs" if settings.api_docs else ""
    print(f"serving the Lambda handler on http://{args.host}:{args.port} "
          f"(POST /predict, GET /health, GET /openapi.json{docs}); Ctrl-C stops", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print(json.dumps({"stopped": True}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
