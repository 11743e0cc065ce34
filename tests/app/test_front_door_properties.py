"""Property-based: no event of any shape raises out of the handler, and every front door answers a request alike."""

from __future__ import annotations

import copy
import json
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app.test_front_doors import DOORS, answer, through
from tests.app.test_handler import event_with
from tests.conftest import load_event

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["version", "httpMethod", "path", "rawPath", "routeKey", "headers", "multiValueHeaders", "body",
          "isBase64Encoded", "requestContext", "queryStringParameters", "multiValueQueryStringParameters", "cookies",
          "pathParameters", "stageVariables", "Records"]
# Dicts that look like events: known field names with any values, plus any other keys.
EVENT_LIKE = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), JSON, max_size=8)
GOLDEN = ["predict_single", "health", "http_api_predict", "http_api_health", "http_api_v1_predict", "function_url_predict",
          "function_url_health"]
WHERE = ["", "requestContext", "requestContext.http", "headers"]  # the top level and the objects a resolver reads
FAST = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_answered(response: object) -> tuple[int, dict]:
    assert isinstance(response, dict) and isinstance(response.get("statusCode"), int), response
    body = json.loads(response["body"])
    status = response["statusCode"]
    if status >= 400:
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return status, body


@FAST
@given(event=JSON | EVENT_LIKE)
def test_no_event_raises_out_of_the_handler(handler: ModuleType, lambda_context, event: object) -> None:
    status, body = _assert_answered(handler.lambda_handler(event, lambda_context))
    assert status in {200, 400, 404, 405, 413, 415, 422}, body  # never a 5xx: a broken event is the caller's fault


@st.composite
def mutated_golden_events(draw: st.DrawFn) -> dict:
    """A golden event of some front door with a few fields, at any depth, replaced by any JSON or removed."""
    event = copy.deepcopy(load_event(draw(st.sampled_from(GOLDEN))))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(WHERE))
        target = event
        for part in filter(None, where.split(".")):
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict) or not target:
            continue
        key = draw(st.sampled_from(sorted(target)))
        if draw(st.booleans()):
            target[key] = draw(JSON)
        else:
            del target[key]
    return event


@FAST
@given(event=mutated_golden_events())
def test_real_events_with_broken_fields_are_answered_never_a_5xx(handler: ModuleType, lambda_context, event: dict) -> None:
    status, body = _assert_answered(handler.lambda_handler(event, lambda_context))
    assert status < 500, body


@FAST
@given(method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
       path=st.sampled_from(["/predict", "/health", "/openapi.json", "/predict/", "/"]) | st.text(
           alphabet="abcdehiloprt/._-%~", max_size=20).map(lambda p: "/" + p),
       content_type=st.sampled_from([None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x", "application/json; charset=utf-8"]),
       body=st.none() | st.sampled_from(['{"text": "Lovely kettle."}', '{"texts": ["ok", " "]}', "{", "[1]"])
       | st.text(max_size=40),
       b64=st.booleans())
def test_every_front_door_answers_a_request_as_rest_does(handler: ModuleType, lambda_context, method: str, path: str,
                                                         content_type: str | None, body: str | None, b64: bool) -> None:
    rest = event_with(body, method=method, path=path, b64=b64 and body is not None, content_type=content_type)
    expected = answer(handler, rest, lambda_context)
    for door in DOORS:
        assert answer(handler, through(door, rest), lambda_context) == expected, door

