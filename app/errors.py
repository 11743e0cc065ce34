"""The error contract: ``{"error": {"code", "message", "details", "request_id"}}`` and its status codes.

Validation errors are rebuilt from pydantic's error list without its ``input`` field, so a
review's text is never echoed back or logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from app.schemas import ErrorBody, ErrorDetail, ErrorResponse


class BodyTooLargeError(Exception):
    """The request body is larger than MAX_BODY_BYTES."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body is {size} bytes; the limit is {limit}")
        self.size, self.limit = size, limit


def parse_json_body(limit: int):  # type: ignore[no-untyped-def]
    """A JSON deserializer for the resolver that refuses bodies over ``limit`` bytes first."""

    def parse(body: str) -> Any:
        if len(body) > limit or (len(body) * 4 > limit and len(body.encode("utf-8", "surrogatepass")) > limit):
            raise BodyTooLargeError(len(body.encode("utf-8", "surrogatepass")), limit)
        try:
            return json.loads(body)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", body, 0) from None

    return parse


def error_response(status: HTTPStatus, code: str, message: str, details: Iterable[ErrorDetail] = (),
                   request_id: str | None = None, headers: dict[str, str] | None = None) -> Response:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=list(details), request_id=request_id))
    return Response(status_code=status.value, content_type=content_types.APPLICATION_JSON,
                    body=body.model_dump_json(exclude_none=True), headers=headers)


def _field(loc: Sequence[Any]) -> str | None:
    parts = [str(p) for p in loc if p != "body"]
    if not parts:
        return None
    name = parts[0]
    for part in parts[1:]:
        name += f"[{part}]" if part.isdigit() else f".{part}"
    return name


def validation_details(errors: Sequence[dict[str, Any]]) -> list[ErrorDetail]:
    """Field, message and type of each pydantic error; never its ``input``."""
    details = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if error.get("type") == "string_pattern_mismatch":
            message = "must contain at least one non-whitespace character"
        details.append(ErrorDetail(field=_field(error.get("loc", ())), message=message, type=error.get("type")))
    return details
