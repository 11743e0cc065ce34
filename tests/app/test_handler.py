"""The handler through golden events and an error matrix, with both backends on an exported model."""

from __future__ import annotations

import base64
import copy
import json
from types import ModuleType

import pytest

from tests.app.conftest import call
from tests.conftest import load_event

ERROR_KEYS = {"code", "message"}


def event_with(body: str | bytes | None, *, method: str = "POST", path: str = "/predict", b64: bool = False,
               content_type: str | None = "application/json") -> dict:
    event = copy.deepcopy(load_event("predict_single"))
    event["httpMethod"], event["path"] = method, path
    if isinstance(body, bytes) or b64:
        raw = body if isinstance(body, bytes) else body.encode()
        event["body"], event["isBase64Encoded"] = base64.b64encode(raw).decode(), True
    else:
        event["body"] = body
    if content_type is None:
        event["headers"].pop("Content-Type")
    else:
        event["headers"]["Content-Type"] = content_type
    return event


def assert_error(body: dict, code: str) -> None:
    assert set(body) == {"error"}
    assert ERROR_KEYS <= set(body["error"])
    assert body["error"]["code"] == code
    assert isinstance(body["error"].get("details", []), list)
    assert body["error"]["request_id"]


def test_single_prediction(handler: ModuleType, lambda_context) -> None:
    status, body, headers = call(handler, load_event("predict_single"), lambda_context)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    (result,) = body["results"]
    assert result["label"] in ("NEGATIVE", "POSITIVE")
    assert result["score"] == max(result["scores"].values())
    assert sum(result["scores"].values()) == pytest.approx(1, abs=1e-5)
    assert result["truncated"] is False
    assert body["model"] == {"name": handler.model.name, "version": handler.model.version,
                             "backend": handler.model.backend}


def test_batch_keeps_input_order(handler: ModuleType, lambda_context) -> None:
    event = load_event("predict_batch")
    texts = json.loads(event["body"])["texts"]
    status, body, _ = call(handler, event, lambda_context)
    assert status == 200
    singles = [handler.model.predict([t])[0] for t in texts]
    assert [r["label"] for r in body["results"]] == [s.label for s in singles]
    for result, single in zip(body["results"], singles, strict=True):
        assert result["score"] == pytest.approx(single.score, abs=1e-4)


def test_base64_body_and_odd_unicode(handler: ModuleType, lambda_context) -> None:
    status, body, _ = call(handler, load_event("predict_base64"), lambda_context)
    assert status == 200 and len(body["results"]) == 2
    odd = ["\u200b\u200bzero width\u200d", "مرحبا بالعالم שלום", "emoji 👍🏽🔥 only", "ctrl \x00\x07\x1b chars",
           "\ud800 lone surrogate"[1:], "ＦＵＬＬＷＩＤＴＨ", "a" * 1999]
    status, body, _ = call(handler, event_with(json.dumps({"texts": odd})), lambda_context)
    assert status == 200
    assert len(body["results"]) == len(odd)


def test_long_text_is_truncated_and_says_so(handler: ModuleType, lambda_context) -> None:
    text = " ".join(["wonderful kettle"] * 300)[:1999]
    status, body, _ = call(handler, event_with(json.dumps({"text": text})), lambda_context)
    assert status == 200 and body["results"][0]["truncated"] is True


def test_health(handler: ModuleType, lambda_context) -> None:
    status, body, _ = call(handler, load_event("health"), lambda_context)
    assert status == 200
    assert body["status"] == "ok" and body["model"]["version"] == handler.model.version
    assert body["labels"] == ["NEGATIVE", "POSITIVE"]


def test_openapi_document_comes_from_the_models(handler: ModuleType, lambda_context) -> None:
    status, body, _ = call(handler, event_with(None, method="GET", path="/openapi.json", content_type=None),
                           lambda_context)
    assert status == 200
    assert "/predict" in body["paths"] and "/health" in body["paths"]
    schemas = body["components"]["schemas"]
    assert {"PredictRequest", "PredictResponse", "ErrorResponse"} <= set(schemas)
    assert schemas["PredictRequest"]["additionalProperties"] is False
    post = body["paths"]["/predict"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PredictRequest"}
    assert post["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictResponse"}
    refs = json.dumps(body).split('"$ref": "#/components/schemas/')[1:]
    assert {ref.split('"')[0] for ref in refs} <= set(schemas)  # every reference resolves


@pytest.mark.parametrize(("event_name", "status", "code"), [
    ("invalid_json", 400, "invalid_json"),
    ("invalid_not_object", 400, "invalid_body"),
    ("invalid_empty_text", 422, "validation_error"),
    ("invalid_both_fields", 422, "validation_error"),
    ("invalid_extra_field", 422, "validation_error"),
    ("wrong_method", 405, "method_not_allowed"),
    ("unknown_path", 404, "not_found"),
])
def test_golden_invalid_events(handler: ModuleType, lambda_context, event_name: str, status: int, code: str) -> None:
    got, body, _ = call(handler, load_event(event_name), lambda_context)
    assert got == status
    assert_error(body, code)


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ("{}", 422, "validation_error", None),
    ('{"text": ""}', 422, "validation_error", "text"),
    ('{"text": 42}', 422, "validation_error", "text"),
    ('{"texts": []}', 422, "validation_error", "texts"),
    ('{"texts": ["ok", "  "]}', 422, "validation_error", "texts[1]"),
    ('{"texts": ["ok", "\\u001f\\u001c"]}', 422, "validation_error", "texts[1]"),  # found by hypothesis
    ('{"texts": "not a list"}', 422, "validation_error", "texts"),
    (json.dumps({"texts": ["fine"] * 9}), 422, "validation_error", "texts"),
    (json.dumps({"text": "x" * 2001}), 422, "validation_error", "text"),
    ("null", 400, "invalid_body", None),
    ('"a string"', 400, "invalid_body", None),
    ("[" * 100_00, 400, "invalid_json", None),
    ("", 400, "invalid_body", None),
])
def test_error_matrix(handler: ModuleType, lambda_context, body: str, status: int, code: str, field: str | None) -> None:
    got, answer, _ = call(handler, event_with(body), lambda_context)
    assert got == status, answer
    assert_error(answer, code)
    if field:
        assert field in [d.get("field") for d in answer["error"]["details"]]


def test_validation_errors_never_echo_the_input(handler: ModuleType, lambda_context) -> None:
    secret = "my private review text " * 100
    _, body, _ = call(handler, event_with(json.dumps({"text": secret})), lambda_context)
    assert "private review" not in json.dumps(body)


def test_body_too_large(handler: ModuleType, lambda_context) -> None:
    big = json.dumps({"texts": ["y" * 1500] * 14})  # > MAX_BODY_BYTES=20000
    status, body, _ = call(handler, event_with(big), lambda_context)
    assert status == 413
    assert_error(body, "body_too_large")
    status, body, _ = call(handler, event_with(big, b64=True), lambda_context)
    assert status == 413


def test_bad_base64_and_bad_utf8(handler: ModuleType, lambda_context) -> None:
    event = event_with(None)
    event["body"], event["isBase64Encoded"] = "%%% not base64 %%%", True
    status, body, _ = call(handler, event, lambda_context)
    assert status == 400 and body["error"]["code"] == "invalid_encoding"
    status, body, _ = call(handler, event_with(b'{"text": "\xff\xfe bad"}'), lambda_context)
    assert status == 400 and body["error"]["code"] == "invalid_encoding"


def test_wrong_content_type(handler: ModuleType, lambda_context) -> None:
    status, body, _ = call(handler, event_with('{"text": "hi"}', content_type="text/plain"), lambda_context)
    assert status == 415
    assert_error(body, "unsupported_media_type")
    status, _, _ = call(handler, event_with('{"text": "hi"}', content_type=None), lambda_context)
    assert status == 200
    for content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):  # found by schemathesis
        status, body, _ = call(handler, event_with('{"text": "hi"}', content_type=content_type), lambda_context)
        assert status == 415, body


@pytest.mark.parametrize(("method", "path", "status"), [
    ("PUT", "/predict", 405), ("DELETE", "/health", 405), ("POST", "/health", 405), ("GET", "/", 404),
    ("POST", "/predict/extra", 404), ("GET", "/../etc/passwd", 404),
])
def test_methods_and_paths(handler: ModuleType, lambda_context, method: str, path: str, status: int) -> None:
    got, body, headers = call(handler, event_with('{"text": "hi"}', method=method, path=path), lambda_context)
    assert got == status
    assert_error(body, "method_not_allowed" if status == 405 else "not_found")
    if status == 405:
        assert headers["Allow"]


def test_inference_failure_is_a_contract_500_and_the_next_request_works(
        handler: ModuleType, lambda_context, monkeypatch: pytest.MonkeyPatch, logs) -> None:
    def broken(texts, sentences=False):
        raise RuntimeError(f"tensor arena exhausted at /opt/ml/model/model.tflite while reading {texts[0]!r}")

    with monkeypatch.context() as mp:
        mp.setattr(handler.model, "predict", broken)
        status, body, _ = call(handler, load_event("predict_single"), lambda_context)
    assert status == 500
    assert_error(body, "internal_error")
    assert "arena" not in json.dumps(body) and "/opt/ml" not in json.dumps(body)
    record = next(json.loads(line) for line in logs.getvalue().splitlines() if "unhandled error" in line)
    assert record["error_type"] == "RuntimeError" and "in broken" in record["stack"]  # logged with the stack
    assert "Setup took" not in logs.getvalue()  # ... but not the exception message, which quoted the review
    status, _, _ = call(handler, load_event("predict_single"), lambda_context)
    assert status == 200


@pytest.mark.parametrize("level", ["DEBUG", "INFO", "WARNING"])
def test_logs_carry_counts_and_correlation_id_but_never_text(
        handler: ModuleType, lambda_context, logs, caplog: pytest.LogCaptureFixture, level: str) -> None:
    secret = "zebra-unique-phrase purple kettle review"
    handler.logger.setLevel(level)
    caplog.set_level(level)
    try:
        for body in (json.dumps({"texts": [secret, "another one"]}), json.dumps({"text": secret, "extra": secret}),
                     json.dumps({"text": secret + "x" * 3000}), '{"text": "' + secret, json.dumps([secret])):
            call(handler, event_with(body), lambda_context)
    finally:
        handler.logger.setLevel("INFO")
    written = logs.getvalue()
    assert "zebra-unique-phrase" not in written and "zebra-unique-phrase" not in caplog.text
    records = [json.loads(line) for line in written.splitlines()]
    predicted = [r for r in records if r.get("message") == "predicted"]
    if level != "DEBUG":  # the per-request line is DEBUG only (cost); warnings and errors still log at INFO
        assert not predicted
        return
    assert predicted and predicted[0]["texts"] == 2
    assert predicted[0]["correlation_id"] == load_event("predict_single")["requestContext"]["requestId"]
