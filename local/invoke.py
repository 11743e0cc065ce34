"""``python -m local.invoke EVENT``: the real handler on one event; the proxy response on stdout, logs on stderr.

What `sam local invoke -e events/EVENT.json` does, minus Docker.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

EVENTS = Path(__file__).resolve().parent.parent / "events"


@dataclass
class LocalContext:
    """The LambdaContext fields Powertools reads."""

    function_name: str = "sentiment-local"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:sentiment-local"
    aws_request_id: str = ""
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def resolve_event(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    candidate = EVENTS / f"{name.removesuffix('.json')}.json"
    if candidate.is_file():
        return candidate
    names = sorted(p.stem for p in EVENTS.glob("*.json"))
    raise SystemExit(f"error: no event {name!r}; choose a file or one of: {', '.join(names)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("event", nargs="?", default="predict_single", help="events/ name or a path")
    args = parser.parse_args(argv)
    event = json.loads(resolve_event(args.event).read_text(encoding="utf-8"))
    stdout = sys.stdout
    sys.stdout = sys.stderr  # Powertools writes logs and metrics to stdout: keep stdout for the response
    try:
        from app.handler import lambda_handler

        response = lambda_handler(event, LocalContext())
    finally:
        sys.stdout = stdout
    if isinstance(response.get("body"), str) and not response.get("isBase64Encoded"):
        try:
            response["body"] = json.loads(response["body"])
        except json.JSONDecodeError:
            pass
    json.dump(response, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0 if response.get("statusCode", 500) < 500 else 1


if __name__ == "__main__":
    sys.exit(main())
