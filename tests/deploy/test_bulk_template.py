"""Bulk scoring in template.yaml: the S3 notification, the batch function and the Distributed Map state machine."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.deploy.test_template import _CfnLoader, _tool

ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


@pytest.fixture(scope="module")
def resources() -> dict:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)["Resources"]


@pytest.fixture(scope="module")
def definition(resources: dict) -> dict:
    """The state machine as Step Functions receives it: placeholders substituted."""
    machine = resources["BacklogStateMachine"]["Properties"]
    text = json.dumps(machine["Definition"])
    for name in machine["DefinitionSubstitutions"]:
        text = text.replace("${" + name + "}", {
            "BatchFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:stack-batch",
            "Bucket": "sentiment-reviews-123456789012-us-east-1"}[name])
    assert "${" not in text, "a placeholder has no DefinitionSubstitutions entry"
    return json.loads(text)


def _asl_validate(definition: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    if not ASL_VALIDATOR.exists():
        pytest.skip("asl-validator is not installed: run `npm ci` (make test does when npm is present)")
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(definition))
    return subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True, timeout=120)


def test_state_machine_passes_asl_validator(definition: dict, tmp_path: Path) -> None:
    run = _asl_validate(definition, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    broken = copy.deepcopy(definition)
    broken["States"]["ScoreObjects"]["ItemProcessor"]["States"]["Finished"]["Default"] = "Nowhere"
    run = _asl_validate(broken, tmp_path)
    assert run.returncode != 0 and "Nowhere" in run.stdout + run.stderr  # the validator does catch mistakes


def test_state_machine_passes_cfn_lint_schema(definition: dict, tmp_path: Path) -> None:
    # cfn-lint checks definitions of AWS::StepFunctions::StateMachine, not of SAM's resource: wrap it.
    raw = {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {"Machine": {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {"RoleArn": "arn:aws:iam::123456789012:role/machine", "Definition": definition}}}}
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(raw))
    run = subprocess.run([_tool("cfn-lint"), str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_distributed_map_over_a_prefix_with_limits_and_continuation(definition: dict, resources: dict) -> None:
    scoring = definition["States"]["ScoreObjects"]
    assert scoring["Type"] == "Map" and scoring["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert scoring["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert scoring["ItemReader"]["Parameters"]["Prefix.$"] == "$.prefix"
    assert isinstance(scoring["MaxConcurrency"], int) and 0 < scoring["MaxConcurrency"] <= 1000
    assert 0 <= scoring["ToleratedFailurePercentage"] <= 100
    assert scoring["ItemSelector"] == {"bucket": "sentiment-reviews-123456789012-us-east-1",
                                       "key.$": "$$.Map.Item.Value.Key"}
    states = scoring["ItemProcessor"]["States"]
    task = states[scoring["ItemProcessor"]["StartAt"]]
    assert task["Parameters"]["FunctionName"].endswith(":function:stack-batch") and task["Parameters"]["Payload.$"] == "$"
    choices = {c["StringEquals"]: c["Next"] for c in states[task["Next"]]["Choices"]}
    assert choices["continued"] == scoring["ItemProcessor"]["StartAt"]  # a long file loops until done
    assert states[choices["failed"]]["Type"] == "Fail"  # counts against ToleratedFailurePercentage
    policies = json.dumps(resources["BacklogStateMachine"]["Properties"]["Policies"])
    assert "states:StartExecution" in policies and "LambdaInvokePolicy" in policies


def test_bucket_notification_triggers_the_batch_function(resources: dict) -> None:
    function = resources["BatchFunction"]
    assert function["Properties"]["ImageConfig"]["Command"] == ["app.batch.lambda_handler"]
    assert function["Properties"]["Timeout"] == 900
    event = function["Properties"]["Events"]["Incoming"]["Properties"]
    assert event["Bucket"] == {"Ref": "ReviewsBucket"} and event["Events"] == "s3:ObjectCreated:*"
    assert event["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "incoming/"}]
    # The function's policy names the bucket by the same string the bucket is created with (no Ref: no cycle).
    bucket_name = resources["ReviewsBucket"]["Properties"]["BucketName"]["Sub"]
    statements = function["Properties"]["Policies"][0]["Statement"]
    assert {s["Resource"]["Sub"] for s in statements if s["Action"] == "s3:ListBucket"} == {
        f"arn:${{AWS::Partition}}:s3:::{bucket_name}"}
    assert function["Metadata"]["Dockerfile"] == resources["SentimentFunction"]["Metadata"]["Dockerfile"]
    lifecycle = {rule["Id"] for rule in resources["ReviewsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert lifecycle == {"abort-stale-multipart-uploads", "expire-checkpoints"}
