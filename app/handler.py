"""Entry point behind every front door (API Gateway REST or HTTP API, Function URL): routes and error mapping.

The routes are defined once, on a Router, and each payload format's Powertools resolver includes them;
app/front_doors.py tells which resolver reads an event. The model loads at import.
"""

import binascii
import functools
import json
import logging
import os
import time
import traceback
from collections import Counter
from dataclasses import asdict
from http import HTTPStatus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.router import Router
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from app import docs
from app.errors import BodyTooLargeError, error_response, parse_json_body, validation_details
from app.front_doors import (
    FUNCTION_URL,
    HTTP,
    REST,
    FunctionUrlResolver,
    HttpApiResolver,
    event_keys,
    event_problem,
    front_door,
    proxy_error,
)
from app.model import SentimentModel
from app.schemas import ErrorResponse, HealthResponse, ModelInfo, PredictRequest, PredictResponse, Result
from app.settings import settings

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "sentiment")
logger = Logger(service=SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SentimentService"), service=SERVICE)
# The routes and error handlers, defined once; every resolver in RESOLVERS includes them (bottom of the module).
app = Router()
_options = {"enable_validation": True, "json_body_deserializer": parse_json_body(settings.max_body_bytes)}
RESOLVERS = {REST: APIGatewayRestResolver(**_options), HTTP: HttpApiResolver(**_options),
             FUNCTION_URL: FunctionUrlResolver(**_options)}

# Cold start: load once per execution environment; a broken artifact stops start-up here.
model = SentimentModel.from_settings(settings)
INTERNAL_MESSAGE = "the service failed to answer; retry, and quote request_id if it persists"  # no internals, ever
ROUTES = {"/predict": ("POST",), "/health": ("GET",), "/openapi.json": ("GET",)}
if settings.api_docs:
    ROUTES.update({"/docs": ("GET",), **{f"/docs/{name}": ("GET",) for name in docs.ASSETS}})
ERRORS = {int(s): {"description": s.phrase, "content": {"application/json": {"model": ErrorResponse}}} for s in (
    HTTPStatus.BAD_REQUEST, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    HTTPStatus.UNPROCESSABLE_ENTITY, HTTPStatus.INTERNAL_SERVER_ERROR)}


MODEL_INFO = ModelInfo(**model.info())  # type: ignore[arg-type]


def _request_id() -> str | None:
    try:
        return app.current_event.request_context.request_id or app.lambda_context.aws_request_id
    except (AttributeError, KeyError, TypeError):
        return None


def read_predict_request() -> PredictRequest:
    """The request body as a ``PredictRequest``; errors are raised as Powertools raises them, for the handlers below.

    pydantic validates the body here, not Powertools' OpenAPI validation middleware: the same model and
    checks, 0.14 ms a request less (measured: README, "Benchmark"). ``openapi()`` documents the body
    from the same model.
    """
    event = app.current_event
    content_type = (event.headers.get("content-type") or "").strip()
    if content_type and not content_type.lower().startswith("application/json"):
        raise RequestUnsupportedContentType("unsupported content type", errors=[])
    try:
        body = event.json_body  # the resolver's deserializer: size limit first, then JSON
    except json.JSONDecodeError as exc:
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                       "input": {}, "ctx": {"error": exc.msg}}]) from None
    try:
        return PredictRequest.model_validate(body)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors(include_url=False, include_input=False)]) from None


@app.post("/predict", summary="Sentiment of one review or a batch", enable_validation=False,
          responses={200: {"description": "one result per text, in input order",
                           "content": {"application/json": {"model": PredictResponse}}}, **ERRORS})
def predict() -> Response[str]:
    request = read_predict_request()
    texts = request.items()
    started = time.perf_counter()
    predictions = model.predict(texts, sentences=request.sentences)
    latency_ms = (time.perf_counter() - started) * 1000
    metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=latency_ms)
    metrics.add_metric(name="Texts", unit=MetricUnit.Count, value=len(texts))
    for label in model.labels:
        count = sum(p.label == label for p in predictions)
        if count:
            metrics.add_metric(name=f"Predictions{label.title()}", unit=MetricUnit.Count, value=count)
    if predictions and predictions[0].sentiment is not None:
        for sentiment, count in Counter(p.sentiment for p in predictions).items():
            metrics.add_metric(name=f"Sentiment{str(sentiment).title()}", unit=MetricUnit.Count, value=count)
    # One line per request only at DEBUG: formatting it costs ~0.3 ms and a log line per request costs
    # about as much CloudWatch ingestion as the compute; the EMF metrics above carry the numbers.
    if logger.log_level <= logging.DEBUG:
        logger.debug("predicted", extra={"texts": len(texts), "chars_total": sum(map(len, texts)),
                                         "chars_max": max(map(len, texts)),
                                         "truncated": sum(p.truncated for p in predictions), "latency_ms": round(latency_ms, 2)})
    response = PredictResponse(results=[Result(**asdict(p)) for p in predictions], model=MODEL_INFO)
    # A model without a star head has no four-way fields: they are left out, not null.
    return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, response.model_dump_json(exclude_none=True))


@app.get("/health", summary="Liveness and model version")
def health() -> HealthResponse:
    return HealthResponse(status="ok", model=MODEL_INFO, labels=model.labels, max_length=model.max_length)


@app.get("/openapi.json", summary="This API's OpenAPI document", include_in_schema=False)
@functools.cache
def openapi() -> dict:
    document = json.loads(RESOLVERS[REST].get_openapi_json_schema(title="Sentiment API", version=model.version))
    # /predict validates its body itself (read_predict_request), so Powertools does not see it: add it here.
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    request_schema = PredictRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(request_schema.pop("$defs", {}))
    schemas["PredictRequest"] = request_schema
    document["paths"]["/predict"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}}}
    return document


def _base_path() -> str:
    """``/<stage>`` when the request's path carries the API Gateway stage (an execute-api URL), else ``""``.

    ``""`` for a custom domain, a ``$default`` stage, a Function URL and make serve: the page then links from the root.
    """
    event = app.current_event.raw_event
    context = event.get("requestContext") or {}
    stage, path = context.get("stage"), context.get("path") or event.get("rawPath") or ""
    return f"/{stage}" if stage and stage != "$default" and path.startswith(f"/{stage}/") else ""


if settings.api_docs:  # off unless asked for (API_DOCS=true; template parameter ApiDocs): see app/docs.py

    @app.get("/docs", summary="Swagger UI for this API", include_in_schema=False, enable_validation=False)
    def docs_page() -> Response[str]:
        html, headers = docs.page(openapi(), _base_path())
        return Response(HTTPStatus.OK.value, "text/html; charset=utf-8", html, headers=headers)

    @app.get("/docs/<name>", include_in_schema=False, enable_validation=False)
    def docs_asset(name: str) -> Response[str]:
        if name not in docs.ASSETS:
            raise NotFoundError
        body, content_type = docs.asset(name)
        return Response(HTTPStatus.OK.value, content_type, body, headers={"Cache-Control": "public, max-age=86400"})


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_media_type(exc: RequestUnsupportedContentType) -> Response:
    content_type = app.current_event.headers.get("content-type") or ""
    logger.info("rejected", extra={"status": 415, "content_type": content_type[:100]})
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                          "send a JSON body with Content-Type: application/json", request_id=_request_id())


@app.exception_handler(ValueError)
def value_error(exc: ValueError) -> Response:
    # Powertools parses form and multipart bodies itself and raises ValueError on malformed ones
    # (a multipart type without boundary): that is the client's content type, not our fault.
    content_type = app.current_event.headers.get("content-type") or "application/json"
    if not content_type.lower().startswith("application/json"):
        return unsupported_media_type(RequestUnsupportedContentType("unsupported content type", errors=[]))
    return internal_error(exc)


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    errors = list(exc.errors())
    content_type = app.current_event.headers.get("content-type") or "application/json"
    if not content_type.lower().startswith("application/json"):  # e.g. form-encoded, curl -d's default
        return unsupported_media_type(RequestUnsupportedContentType("unsupported content type", errors=[]))
    if any(e.get("type") == "json_invalid" for e in errors):
        logger.info("rejected", extra={"status": 400, "reason": "json_invalid"})
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_json", "the request body is not valid JSON",
                              request_id=_request_id())
    if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") in {"model_attributes_type", "model_type", "dict_type",
                                                                       "missing"}
           for e in errors):
        logger.info("rejected", extra={"status": 400, "reason": "not_an_object"})
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_body",
                              'the request body must be a JSON object: {"text": "..."} or {"texts": ["...", ...]}',
                              request_id=_request_id())
    details = validation_details(errors)
    logger.info("rejected", extra={"status": 422, "errors": [d.type for d in details]})
    return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, "validation_error", "the request does not match the schema",
                          details, request_id=_request_id())


@app.exception_handler(BodyTooLargeError)
def too_large(exc: BodyTooLargeError) -> Response:
    logger.info("rejected", extra={"status": 413, "body_bytes": exc.size})
    return error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body_too_large", str(exc), request_id=_request_id())


@app.exception_handler([UnicodeDecodeError, binascii.Error])
def undecodable(exc: Exception) -> Response:
    logger.info("rejected", extra={"status": 400, "reason": type(exc).__name__})
    return error_response(HTTPStatus.BAD_REQUEST, "invalid_encoding",
                          "the request body is not valid base64-encoded UTF-8", request_id=_request_id())


@app.exception_handler(NotFoundError)
def not_found(exc: NotFoundError) -> Response:
    path, method = app.current_event.path, app.current_event.http_method
    allowed = ROUTES.get(path.rstrip("/") or "/")
    if allowed and method not in allowed:
        return error_response(HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed",
                              f"{method} is not allowed on {path}; use {', '.join(allowed)}",
                              request_id=_request_id(), headers={"Allow": ", ".join(allowed)})
    return error_response(HTTPStatus.NOT_FOUND, "not_found", f"no route for {method} {path[:200]}",
                          request_id=_request_id())


@app.exception_handler(Exception)
def internal_error(exc: Exception) -> Response:
    problem = event_problem(app.current_event.raw_event)
    if problem:  # a field no front door sends (headers of numbers, say) failed us: the caller's event, not our fault
        return error_response(HTTPStatus.BAD_REQUEST, "invalid_event", _invalid_event(app.current_event.raw_event, problem),
                              request_id=_request_id())
    _log_failure(exc)
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error",
                          INTERNAL_MESSAGE,
                          request_id=_request_id())


def _log_failure(exc: Exception) -> None:
    # The stack's frames, not the exception's message: a message can quote its input, i.e. a review.
    logger.error("unhandled error", extra={"error_type": type(exc).__name__,
                                           "stack": "".join(traceback.format_tb(exc.__traceback__))})
    metrics.add_metric(name="InternalErrors", unit=MetricUnit.Count, value=1)


def _invalid_event(event: object, problem: str) -> str:
    """Log and count an event that no front door sends; return the message for the caller."""
    logger.warning("invalid event", extra={"status": 400, "reason": problem, "event_type": type(event).__name__,
                                           "keys": event_keys(event)})
    metrics.add_metric(name="InvalidEvents", unit=MetricUnit.Count, value=1)
    return f"this function answers HTTP requests from API Gateway (REST or HTTP API) or a Lambda Function URL; {problem}"


# After every route and handler above: include_router copies what the Router holds when it is called.
# (Router.current_event reads the class-level event that whichever resolver runs has set.)
for _resolver in RESOLVERS.values():
    _resolver.include_router(app)


# The three front doors' request ids sit at the same path (correlation_paths.API_GATEWAY_HTTP and
# LAMBDA_FUNCTION_URL equal API_GATEWAY_REST).
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # No Powertools Tracer: Lambda's active tracing (template.yaml) already records each invocation and its
    # Initialization, and this function calls nothing downstream. The Tracer cost 0.3 s of cold start
    # (importing and patching the AWS SDK) and 0.09 ms a request for one subsegment (README, "Benchmark").
    request_id = getattr(context, "aws_request_id", None)
    resolver = RESOLVERS.get(front_door(event))  # a dict lookup on the event's shape, no resolver tried and failed
    if resolver is None:
        message = _invalid_event(event, event_problem(event) or "its fields are not an HTTP request's")
        return proxy_error(HTTPStatus.BAD_REQUEST, "invalid_event", message, request_id)
    try:
        return resolver.resolve(event, context)
    except Exception as exc:  # past front_door's checks yet unreadable to Powertools: answer anyway, never raise out
        problem = event_problem(event)
        if problem:
            return proxy_error(HTTPStatus.BAD_REQUEST, "invalid_event", _invalid_event(event, problem), request_id)
        _log_failure(exc)
        return proxy_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal_error",
                           INTERNAL_MESSAGE, request_id)
