"""``python -m tests.deploy.emit_metrics api|batch FUNCTION_NAME``: run one function's real handler through the paths
that write metrics, with the environment the template gives it; Powertools prints the EMF blobs on stdout.

tests/deploy/test_operations.py reads them to learn which metric names and dimension sets the code really emits.
The API function: a batch with a clearly positive, a clearly negative, a neutral and a mixed review (one metric per
label and per four-way sentiment), /health,
a bad body and an inference fault (InternalErrors). The batch function: one JSONL object with a bad line, scored
from moto's S3.
"""

from __future__ import annotations

import json
import sys

from local.invoke import LocalContext

POSITIVE = "Absolutely love it, works perfectly and the battery lasts for days."  # synthetic, written here
NEGATIVE = "Terrible. It broke after one day and support never answered; a waste of money."
# With a star-head model these two give the other four-way classes (SentimentNeutral, SentimentMixed).
NEUTRAL = "Average blender. Does what it should, nothing more."
MIXED = "The screen is gorgeous, but the battery dies before lunch."


def _rest_event(method: str, path: str, body: str | None) -> dict:
    return {"resource": path, "path": path, "httpMethod": method, "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Content-Type": ["application/json"]}, "queryStringParameters": None,
            "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
            "requestContext": {"resourcePath": path, "httpMethod": method, "path": f"/Prod{path}", "stage": "Prod",
                               "requestId": "emit-metrics", "identity": {"sourceIp": "127.0.0.1"},
                               "accountId": "123456789012", "apiId": "emit"},
            "body": body, "isBase64Encoded": False}


def api(function_name: str) -> None:
    import app.handler as handler

    context = LocalContext(function_name=function_name)
    predict = _rest_event("POST", "/predict", json.dumps({"texts": [POSITIVE, NEGATIVE, NEUTRAL, MIXED]}))
    for event in (predict, _rest_event("GET", "/health", None), _rest_event("POST", "/predict", '{"text": ')):
        assert handler.lambda_handler(event, context)["statusCode"] < 500

    def broken(texts: list[str], sentences: bool = False) -> list:
        raise RuntimeError("inference failed")

    handler.model.predict = broken  # the fault path: a contract 500 and the InternalErrors metric
    assert handler.lambda_handler(predict, context)["statusCode"] == 500


def batch(function_name: str) -> None:
    import moto

    with moto.mock_aws():
        import app.batch as batch_handler

        s3, _ = batch_handler.clients()
        s3.create_bucket(Bucket="reviews")
        lines = [json.dumps({"id": "a", "text": POSITIVE}), "{not json", json.dumps({"id": "b", "text": NEGATIVE})]
        s3.put_object(Bucket="reviews", Key="incoming/emit.jsonl", Body="\n".join(lines).encode())
        context = LocalContext(function_name=function_name,
                               invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}")
        event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
                              "s3": {"bucket": {"name": "reviews", "arn": "arn:aws:s3:::reviews"},
                                     "object": {"key": "incoming/emit.jsonl", "size": 1}}}]}
        assert batch_handler.lambda_handler(event, context)["results"][0]["status"] == "done"


if __name__ == "__main__":
    {"api": api, "batch": batch}[sys.argv[1]](sys.argv[2])
