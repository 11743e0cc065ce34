"""Which Powertools resolver answers an event, and what an event that no resolver can read gets instead.

The function can sit behind three front doors (template.yaml's ``ApiType``), which send two payload formats:

* ``rest``: payload format 1.0, from an API Gateway REST API (no ``version`` field) or an HTTP API set to
  format 1.0 (``"version": "1.0"``); read by Powertools' ``APIGatewayRestResolver``.
* ``http``: payload format 2.0 from an API Gateway HTTP API; ``APIGatewayHttpResolver``.
* ``function-url``: payload format 2.0 from a Lambda Function URL (its domain is
  ``<url-id>.lambda-url.<region>.on.aws``); ``LambdaFunctionUrlResolver``.

``front_door`` checks the fields Powertools reads before it routes (a few dict lookups and type checks), so a
request pays no try/except around a resolver that might fail. ``event_problem`` is the thorough check, run only
once something has failed, to tell a malformed event (400) from the service's own failure (500).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    APIGatewayRestResolver,
    LambdaFunctionUrlResolver,
    content_types,
)

from app.schemas import ErrorBody, ErrorResponse

REST, HTTP, FUNCTION_URL = "rest", "http", "function-url"
_SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:$-]{0,39}")  # AWS field names and sources; anything else is not logged


class HttpApiResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API (payload 2.0) resolver, matching paths as its REST resolver does.

    The REST resolver ignores trailing slashes (``/predict/`` is ``/predict``); the 2.0 resolvers do not. A
    Function URL passes every path to the function, so without this ``POST /predict/`` would be a 200 behind
    one front door and a 404 behind another.
    """

    _compile_regex = staticmethod(APIGatewayRestResolver._compile_regex)


class FunctionUrlResolver(LambdaFunctionUrlResolver):
    """Powertools' Function URL (payload 2.0) resolver, matching paths as its REST resolver does."""

    _compile_regex = staticmethod(APIGatewayRestResolver._compile_regex)


def front_door(event: object) -> str | None:
    """``REST``, ``HTTP`` or ``FUNCTION_URL``: which resolver reads ``event``; None when none of them can.

    Checks only what the resolvers read before routing (method, path, stage, headers, body); a request
    that passes can still be malformed further in, which the handler's error path sorts out.
    """
    if not isinstance(event, dict):
        return None
    version = event.get("version")
    if version == "2.0":
        context = event.get("requestContext")
        http = context.get("http") if isinstance(context, dict) else None
        if not (isinstance(http, dict) and isinstance(http.get("method"), str) and isinstance(event.get("rawPath"), str)
                and isinstance(context.get("stage"), str)):
            return None
        door = FUNCTION_URL if ".lambda-url." in str(context.get("domainName")) else HTTP
    elif version is None or version == "1.0":
        if not (isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str)):
            return None
        door = REST
    else:
        return None
    headers, body = event.get("headers"), event.get("body")
    if (headers is not None and not isinstance(headers, dict)) or (body is not None and not isinstance(body, str)):
        return None
    return door


def _strings(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _string_lists(value: object) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v) for k, v in value.items())


def _optional(check, value: object) -> bool:  # type: ignore[no-untyped-def]
    return value is None or check(value)


def event_problem(event: object) -> str | None:
    """Why ``event`` is no HTTP request this function can answer, in words fit for a caller; None if it is one.

    The words name fields and types only, never a value: an event can carry a review.
    """
    if not isinstance(event, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
            type(event), "null" if event is None else "not a JSON object")
        return f"the event is {kind}, not an HTTP request object"
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        source = records[0].get("eventSource") or records[0].get("EventSource")
        named = source if isinstance(source, str) and _SAFE_NAME.fullmatch(source) else "an AWS service"
        hint = " (S3 notifications go to the bulk-scoring function, app.batch.lambda_handler)" if named == "aws:s3" else ""
        return f"the event is a notification from {named}, not an HTTP request{hint}"
    door = front_door(event)
    if door is None:
        return ("the event is neither API Gateway payload format 1.0 (httpMethod and path) nor 2.0 "
                '(version "2.0", rawPath, requestContext.http.method, requestContext.stage) with headers an object '
                "and body a string")
    checks: list[tuple[str, bool]] = [
        ("headers must be an object of strings", _optional(_strings, event.get("headers"))),
        ("queryStringParameters must be an object of strings", _optional(_strings, event.get("queryStringParameters"))),
        ("pathParameters must be an object of strings", _optional(_strings, event.get("pathParameters"))),
        ("isBase64Encoded must be a boolean", _optional(lambda v: isinstance(v, bool), event.get("isBase64Encoded"))),
        ("requestContext must be an object", isinstance(event.get("requestContext"), dict)
         or (door == REST and event.get("requestContext") is None)),
    ]
    if door == REST:
        checks += [
            ("multiValueHeaders must be an object of string lists", _optional(_string_lists, event.get("multiValueHeaders"))),
            ("multiValueQueryStringParameters must be an object of string lists",
             _optional(_string_lists, event.get("multiValueQueryStringParameters"))),
        ]
    else:
        checks.append(("cookies must be an array of strings", _optional(
            lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), event.get("cookies"))))
    return next((problem for problem, ok in checks if not ok), None)


def event_keys(event: object) -> list[str]:
    """Top-level field names of ``event`` fit to log (AWS-style names only, at most 20)."""
    if not isinstance(event, dict):
        return []
    return [k for k in list(event)[:20] if isinstance(k, str) and _SAFE_NAME.fullmatch(k)]


def proxy_error(status: HTTPStatus, code: str, message: str, request_id: str | None) -> dict[str, Any]:
    """A proxy response with the error contract, readable by every front door (payload 1.0 and 2.0 alike).

    For answers given without a resolver: an event none of them reads, or a resolver that failed.
    """
    body = ErrorResponse(error=ErrorBody(code=code, message=message, request_id=request_id))
    return {"statusCode": status.value, "headers": {"Content-Type": content_types.APPLICATION_JSON},
            "body": body.model_dump_json(exclude_none=True), "isBase64Encoded": False}
