"""Every front door (REST API, HTTP API payload 2.0 and 1.0, Function URL) answers alike; no event raises."""

from __future__ import annotations

import base64
import copy
import json
from types import ModuleType

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver, LambdaFunctionUrlResolver

from app.front_doors import FUNCTION_URL, HTTP, REST, front_door
from tests.app.conftest import call
from tests.app.test_handler import assert_error, event_with
from tests.conftest import load_event

DOORS = ["http", "function-url", "http-v1"]  # http-v1: an HTTP API set to payload format 1.0
DROPPED_HEADERS = {"host", "x-api-key", "content-type", "content-length"}  # the front door's own, or set per request


def through(door: str, rest: dict) -> dict:
    """The request ``rest`` (a REST API event) as ``door`` delivers it, built on that door's golden event.

    The request id is carried over, so error bodies (which quote it) compare equal.
    """
    method, path = rest["httpMethod"], rest["path"]
    if door == "http-v1":
        event = copy.deepcopy(load_event("http_api_v1_predict"))
        event["httpMethod"] = event["requestContext"]["httpMethod"] = method
        event["path"] = event["resource"] = event["requestContext"]["path"] = path
    else:
        event = copy.deepcopy(load_event("http_api_predict" if door == "http" else "function_url_predict"))
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["requestContext"]["http"]["method"] = method
        if door == "http":
            event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
    headers = {k: v for k, v in event["headers"].items() if k not in DROPPED_HEADERS}
    headers.update({k.lower(): v for k, v in (rest.get("headers") or {}).items() if k.lower() not in {"host", "x-api-key"}})
    event["headers"] = headers
    if door == "http-v1":
        event["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    event["requestContext"]["requestId"] = rest["requestContext"]["requestId"]
    event.pop("body", None)
    if rest.get("body") is not None or door == "http-v1":
        event["body"] = rest.get("body")
    event["isBase64Encoded"] = bool(rest.get("isBase64Encoded"))
    return event


def answer(handler: ModuleType, event: dict, context: object) -> tuple[int, dict, dict]:
    status, body, headers = call(handler, event, context)
    return status, body, {k.lower(): v for k, v in headers.items() if k.lower() in {"content-type", "allow"}}


GOLDEN_REST = ["predict_single", "predict_batch", "predict_base64", "health", "invalid_json", "invalid_not_object",
               "invalid_empty_text", "invalid_both_fields", "invalid_extra_field", "wrong_method", "unknown_path"]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("name", GOLDEN_REST)
def test_golden_events_answer_alike_through_every_door(handler: ModuleType, lambda_context, door: str, name: str) -> None:
    rest = load_event(name)
    expected = answer(handler, rest, lambda_context)
    assert answer(handler, through(door, rest), lambda_context) == expected


BIG = json.dumps({"texts": ["y" * 1500] * 14})  # > MAX_BODY_BYTES=20000
MATRIX = [  # method, path, body, content type, base64, expected status
    ("POST", "/predict", '{"text": "fine"}', "application/json", False, 200),
    ("POST", "/predict", '{"text": "fine"}', "application/json; charset=utf-8", True, 200),
    ("POST", "/predict", '{"text": "fine"}', None, False, 200),
    ("POST", "/predict/", '{"text": "fine"}', "application/json", False, 200),
    ("GET", "/health/", None, None, False, 200),
    ("GET", "/openapi.json", None, None, False, 200),
    ("POST", "/predict", '{"text": "unterminated', "application/json", False, 400),
    ("POST", "/predict", "null", "application/json", False, 400),
    ("POST", "/predict", "", "application/json", False, 400),
    ("POST", "/predict", "[" * 10_000, "application/json", False, 400),
    ("POST", "/predict", BIG, "application/json", False, 413),
    ("POST", "/predict", BIG, "application/json", True, 413),
    ("POST", "/predict", '{"text": "hi"}', "text/plain", False, 415),
    ("POST", "/predict", "text=hi", "application/x-www-form-urlencoded", False, 415),
    ("POST", "/predict", '{"text": "hi"}', "multipart/form-data", False, 415),
    ("POST", "/predict", '{"text": "   "}', "application/json", False, 422),
    ("POST", "/predict", '{"texts": []}', "application/json", False, 422),
    ("POST", "/predict", json.dumps({"texts": ["fine"] * 9}), "application/json", False, 422),
    ("POST", "/predict", '{"text": "a", "lang": "en"}', "application/json", False, 422),
    ("PUT", "/predict", '{"text": "hi"}', "application/json", False, 405),
    ("DELETE", "/health", None, None, False, 405),
    ("POST", "/health", '{"text": "hi"}', "application/json", False, 405),
    ("GET", "/", None, None, False, 404),
    ("POST", "/predict/extra", '{"text": "hi"}', "application/json", False, 404),
    ("GET", "/../etc/passwd", None, None, False, 404),
]


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(("method", "path", "body", "content_type", "b64", "status"), MATRIX)
def test_routes_and_errors_answer_alike_through_every_door(handler: ModuleType, lambda_context, door: str, method: str,
                                                            path: str, body: str | None, content_type: str | None,
                                                            b64: bool, status: int) -> None:
    rest = event_with(body, method=method, path=path, b64=b64, content_type=content_type)
    expected = answer(handler, rest, lambda_context)
    assert expected[0] == status, expected
    assert answer(handler, through(door, rest), lambda_context) == expected


def test_bad_encodings_answer_alike_through_every_door(handler: ModuleType, lambda_context) -> None:
    bad_base64 = event_with(None)
    bad_base64["body"], bad_base64["isBase64Encoded"] = "%%% not base64 %%%", True
    for rest in (bad_base64, event_with(b'{"text": "\xff\xfe bad"}')):
        expected = answer(handler, rest, lambda_context)
        assert expected[0] == 400 and expected[1]["error"]["code"] == "invalid_encoding"
        for door in DOORS:
            assert answer(handler, through(door, rest), lambda_context) == expected, door


@pytest.mark.parametrize(("name", "status", "code"), [
    ("http_api_predict", 200, None), ("http_api_predict_batch", 200, None), ("http_api_health", 200, None),
    ("http_api_invalid_json", 400, "invalid_json"), ("http_api_wrong_content_type", 415, "unsupported_media_type"),
    ("http_api_v1_predict", 200, None), ("function_url_predict", 200, None), ("function_url_health", 200, None),
    ("function_url_unknown_path", 404, "not_found"), ("function_url_wrong_method", 405, "method_not_allowed"),
    ("s3_object_created", 400, "invalid_event"),
])
def test_golden_payload_2_events(handler: ModuleType, lambda_context, name: str, status: int, code: str | None) -> None:
    got, body, headers = call(handler, load_event(name), lambda_context)
    assert got == status, body
    if code:
        assert_error(body, code)
    elif "results" in body:
        texts = json.loads(load_event(name)["body"])
        assert len(body["results"]) == len(texts.get("texts", [None]))
        assert body["model"]["version"] == handler.model.version
    else:
        assert body["status"] == "ok"
    if got == 405:
        assert headers["Allow"] == "POST"


def test_payload_2_predictions_equal_rest_predictions(handler: ModuleType, lambda_context) -> None:
    for rest, other in (("predict_single", "http_api_predict"), ("predict_single", "function_url_predict"),
                        ("predict_single", "http_api_v1_predict"), ("predict_batch", "http_api_predict_batch")):
        assert call(handler, load_event(other), lambda_context)[1] == call(handler, load_event(rest), lambda_context)[1]


@pytest.mark.parametrize(("name", "door", "resolver_class"), [
    ("predict_single", REST, APIGatewayRestResolver), ("http_api_v1_predict", REST, APIGatewayRestResolver),
    ("http_api_predict", HTTP, APIGatewayHttpResolver), ("function_url_predict", FUNCTION_URL, LambdaFunctionUrlResolver),
])
def test_each_payload_format_goes_to_its_powertools_resolver(handler: ModuleType, lambda_context,
                                                             monkeypatch: pytest.MonkeyPatch, name: str, door: str,
                                                             resolver_class: type) -> None:
    event = load_event(name)
    assert front_door(event) == door
    used = []
    for key, resolver in handler.RESOLVERS.items():
        monkeypatch.setattr(resolver, "resolve", lambda e, c, _key=key, _resolve=resolver.resolve: (
            used.append(_key), _resolve(e, c))[1])
    status, _, _ = call(handler, event, lambda_context)
    assert status == 200 and used == [door]
    assert isinstance(handler.RESOLVERS[door], resolver_class)


def _documented_payload_2(path: str, body: str, stage: str = "$default") -> dict:
    """A request in the documented HTTP API payload 2.0 format with every optional part filled in (own values)."""
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": "a=1&a=2&b=x",
        "cookies": ["session=abc", "theme=dark"],
        "headers": {"accept": "*/*", "x-multi": "one,two", "content-type": "application/json"},
        "queryStringParameters": {"a": "1,2", "b": "x"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "apiid12345",
            "authentication": {"clientCert": {"clientCertPem": "-----BEGIN CERTIFICATE-----", "subjectDN": "client.test",
                                              "issuerDN": "Test CA", "serialNumber": "01:02",
                                              "validity": {"notBefore": "Jan 1 00:00:00 2026 GMT",
                                                           "notAfter": "Jan 1 00:00:00 2027 GMT"}}},
            "authorizer": {"jwt": {"claims": {"sub": "user-1"}, "scopes": ["reviews.write"]}},
            "domainName": "apiid12345.execute-api.us-east-1.amazonaws.com", "domainPrefix": "apiid12345",
            "http": {"method": "POST", "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                     "userAgent": "agent"},
            "requestId": "doc-shape-1", "routeKey": "$default", "stage": stage,
            "time": "01/Dec/2026:10:00:00 +0000", "timeEpoch": 1796119200000},
        "body": body, "pathParameters": {"p": "v"}, "isBase64Encoded": False,
        "stageVariables": {"s": "v"},
    }


def test_the_documented_payload_2_shape_no_longer_raises(handler: ModuleType, lambda_context) -> None:
    # Powertools' HTTP API fixture (apiGatewayProxyV2Event.json) has this shape: it used to raise KeyError: 'httpMethod'.
    status, body, _ = call(handler, _documented_payload_2("/my/path", '{"message": "hello"}'), lambda_context)
    assert status == 404
    assert_error(body, "not_found")
    status, body, headers = call(handler, _documented_payload_2("/predict", '{"text": "Lovely kettle."}'), lambda_context)
    assert status == 200 and len(body["results"]) == 1 and headers["Content-Type"] == "application/json"
    status, body, _ = call(handler, _documented_payload_2("/predict", '{"text": "Lovely kettle."}', stage="Prod"),
                           lambda_context)  # a named stage: its name leads rawPath
    assert status == 200, body


def test_a_browser_get_on_a_function_url_root(handler: ModuleType, lambda_context) -> None:
    event = load_event("function_url_health")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/"
    event["headers"]["accept"] = "text/html,application/xhtml+xml"
    status, body, _ = call(handler, event, lambda_context)
    assert status == 404
    assert_error(body, "not_found")


SECRET = "zebra-unique-phrase purple kettle"
S3 = load_event("s3_object_created")
INVALID_EVENTS = [
    (None, "null"), ([], "an array"), ([{"httpMethod": "POST"}], "an array"), ("POST /predict", "a string"),
    (42, "a number"), (True, "a boolean"), ({}, "neither"), ({"text": SECRET}, "neither"),
    (S3, "aws:s3"), ({"Records": [{"eventSource": "aws:sqs", "body": SECRET}]}, "aws:sqs"),
    ({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": SECRET}}]}, "aws:sns"),
    ({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, "neither"),
    ({"version": "3.0", "rawPath": "/predict"}, "neither"),
    ({"version": "2.0", "rawPath": "/predict", "requestContext": {"http": {"method": "POST"}}}, "neither"),  # no stage
    ({"version": "2.0", "rawPath": "/predict", "requestContext": {"stage": "$default", "http": "POST"}}, "neither"),
    ({"httpMethod": ["POST"], "path": "/predict"}, "neither"), ({"httpMethod": "POST", "path": None}, "neither"),
    ({"httpMethod": "POST", "path": "/predict", "headers": [["content-type", "application/json"]]}, "neither"),
    ({"httpMethod": "POST", "path": "/predict", "body": {"text": SECRET}}, "neither"),
]


@pytest.mark.parametrize(("event", "reason"), INVALID_EVENTS)
def test_events_no_front_door_sends_get_a_contract_400_and_a_log_line(handler: ModuleType, lambda_context, logs,
                                                                      event: object, reason: str) -> None:
    assert front_door(event) is None
    status, body, headers = call(handler, copy.deepcopy(event), lambda_context)
    assert status == 400 and headers["Content-Type"] == "application/json"
    assert_error(body, "invalid_event")
    assert reason in body["error"]["message"]
    assert body["error"]["request_id"] == lambda_context.aws_request_id
    records = [json.loads(line) for line in logs.getvalue().splitlines()]
    (record,) = [r for r in records if r.get("message") == "invalid event"]
    assert record["level"] == "WARNING" and reason in record["reason"] and record["status"] == 400
    assert SECRET.split()[0] not in logs.getvalue() and SECRET.split()[0] not in json.dumps(body)
    assert call(handler, load_event("http_api_health"), lambda_context)[0] == 200  # and the process carries on


def _predict(door: str) -> dict:
    return through(door, load_event("predict_single")) if door != "rest" else load_event("predict_single")


PAYLOAD_2 = {"http", "function-url"}


@pytest.mark.parametrize("door", ["rest", *DOORS])
@pytest.mark.parametrize(("field", "value", "route", "broken_for"), [
    # A malformed field the request needs is the caller's 400; one nothing reads (or reads as absent) is ignored.
    ("headers", {"content-type": 5}, "predict", {"rest", *DOORS}),
    ("headers", {"content-type": None}, "predict", PAYLOAD_2),  # 1.0 reads None as no header; 2.0 splits values
    ("queryStringParameters", {"a": 1}, "health", {"rest", *DOORS}),
    ("cookies", [1], "health", PAYLOAD_2),  # only payload 2.0 has cookies
    ("requestContext", 5, "predict", PAYLOAD_2),  # 2.0 routes by requestContext.http; 1.0 only reads its request id
    ("multiValueHeaders", {"accept": "not a list"}, "health", set()),
    ("pathParameters", 5, "health", set()),
    ("stageVariables", 5, "predict", set()),
])
def test_malformed_fields_are_a_400_or_ignored_never_a_500(handler: ModuleType, lambda_context, door: str, field: str,
                                                           value: object, route: str, broken_for: set[str]) -> None:
    event = _predict(door)
    if route == "health":
        rest = event_with(None, method="GET", path="/health", content_type=None)
        event = rest if door == "rest" else through(door, rest)
    event[field] = value
    status, body, _ = call(handler, event, lambda_context)
    if door in broken_for:
        assert status == 400, body
        assert_error(body, "invalid_event")
    else:
        assert status == 200, body


def test_a_base64_flag_that_is_not_a_boolean(handler: ModuleType, lambda_context) -> None:
    for door in ["rest", *DOORS]:
        event = _predict(door)
        event["isBase64Encoded"] = "yes"  # truthy: the JSON body is then read as base64, and is not
        status, body, _ = call(handler, event, lambda_context)
        assert status == 400 and body["error"]["code"] == "invalid_encoding", door


@pytest.mark.parametrize("door", DOORS)
def test_a_failure_behind_a_payload_2_door_is_still_a_500(handler: ModuleType, lambda_context,
                                                          monkeypatch: pytest.MonkeyPatch, door: str) -> None:
    def broken(texts, sentences=False):
        raise RuntimeError(f"arena exhausted at /opt/ml/model while reading {texts[0]!r}")

    monkeypatch.setattr(handler.model, "predict", broken)
    status, body, _ = call(handler, _predict(door), lambda_context)
    assert status == 500
    assert_error(body, "internal_error")
    assert "arena" not in json.dumps(body)


def test_a_resolver_that_raises_is_answered_not_raised(handler: ModuleType, lambda_context, logs,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def exploding(event, context):
        raise RuntimeError(f"powertools broke on {event['body']}")  # a message that quotes the review

    monkeypatch.setattr(handler.RESOLVERS[HTTP], "resolve", exploding)
    status, body, headers = call(handler, load_event("http_api_predict"), lambda_context)
    assert status == 500 and headers["Content-Type"] == "application/json"
    assert_error(body, "internal_error")
    record = next(json.loads(line) for line in logs.getvalue().splitlines() if "unhandled error" in line)
    assert record["error_type"] == "RuntimeError" and "in exploding" in record["stack"]
    assert "Setup took" not in logs.getvalue()  # the stack is logged, the message (and so the review) is not
    event = load_event("http_api_predict")
    event["headers"]["content-type"] = 7  # the same failure on a malformed event: the caller's fault, a 400
    status, body, _ = call(handler, event, lambda_context)
    assert status == 400
    assert_error(body, "invalid_event")
    monkeypatch.undo()
    assert call(handler, load_event("http_api_predict"), lambda_context)[0] == 200


def test_base64_payload_2_body(handler: ModuleType, lambda_context) -> None:
    event = load_event("function_url_predict")
    event["body"] = base64.b64encode('{"texts": ["Très bien ✓", "Terrible."]}'.encode()).decode()
    event["isBase64Encoded"] = True
    status, body, _ = call(handler, event, lambda_context)
    assert status == 200 and len(body["results"]) == 2
