"""template.yaml's ApiType: each front door renders to a valid template, with the same routes, and only that door.

SAM's translator (in .venv-sam/, as `sam deploy` has CloudFormation run it) turns the template into plain
CloudFormation for given parameters; the test then applies the conditions as CloudFormation would, checks that
every reference left points at a resource that exists, and lints the result with cfn-lint.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.deploy.test_template import _tool

SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
API_TYPES = ["rest", "http", "function-url"]
NO_VALUE = object()
DOOR_TYPES = {"AWS::ApiGateway::RestApi", "AWS::ApiGatewayV2::Api", "AWS::Lambda::Url", "AWS::ApiGateway::ApiKey",
              "AWS::ApiGateway::UsagePlan"}


def render(**parameters: str) -> dict:
    """The template as CloudFormation would deploy it with ``parameters``: translated, conditions applied."""
    return json.loads(_render(json.dumps(parameters, sort_keys=True)))  # a copy: tests may not share changes


@functools.cache
def _render(parameters_json: str) -> str:
    parameters = json.loads(parameters_json)
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI's virtualenv is missing: make .venv-sam/.installed (make test does)")
    run = subprocess.run([str(SAM_PYTHON), str(Path(__file__).with_name("sam_render.py")), "template.yaml",
                          json.dumps(parameters)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.dumps(apply_conditions(json.loads(run.stdout), parameters))


def apply_conditions(template: dict, parameters: dict[str, str]) -> dict:
    values = {name: parameters.get(name, spec.get("Default")) for name, spec in template.get("Parameters", {}).items()}
    conditions: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            return values[node["Ref"]]
        return node

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = evaluate(template["Conditions"][name])
        return conditions[name]

    def evaluate(node: Any) -> bool:
        (function, arguments), = node.items()
        if function == "Fn::Equals":
            return str(value(arguments[0])) == str(value(arguments[1]))
        if function == "Fn::And":
            return all(evaluate(a) for a in arguments)
        if function == "Fn::Or":
            return any(evaluate(a) for a in arguments)
        if function == "Fn::Not":
            return not evaluate(arguments[0])
        if function == "Condition":
            return condition(arguments)
        raise AssertionError(f"unexpected condition function {function}")

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, if_true, if_false = node["Fn::If"]
                return resolve(if_true if condition(name) else if_false)
            if node == {"Ref": "AWS::NoValue"}:
                return NO_VALUE
            resolved = {k: resolve(v) for k, v in node.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (resolve(item) for item in node) if v is not NO_VALUE]
        return node

    def unconditional(entries: dict) -> dict:
        return {name: {k: v for k, v in entry.items() if k != "Condition"} for name, entry in entries.items()
                if "Condition" not in entry or condition(entry["Condition"])}

    rendered = {k: v for k, v in template.items() if k != "Conditions"}  # every condition is applied below
    rendered["Resources"] = resolve(unconditional(template["Resources"]))
    rendered["Outputs"] = resolve(unconditional(template.get("Outputs", {})))
    text = json.dumps([rendered["Resources"], rendered["Outputs"]])
    rendered["Parameters"] = {name: spec for name, spec in template.get("Parameters", {}).items()
                              if f'{{"Ref": "{name}"}}' in text or f"${{{name}}}" in text}
    return rendered


def dangling_references(template: dict) -> list[str]:
    """Every Ref, GetAtt, Sub variable and DependsOn that names no resource or parameter of ``template``."""
    known = set(template["Resources"]) | set(template.get("Parameters", {}))
    missing: list[str] = []

    def check(name: str, where: str) -> None:
        if not name.startswith("AWS::") and name.split(".")[0] not in known:
            missing.append(f"{where}: {name}")

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, item in node.items():
                if key == "Ref" and isinstance(item, str):
                    check(item, where)
                elif key == "Fn::GetAtt":
                    check(item[0] if isinstance(item, list) else item, where)
                elif key == "Fn::Sub":
                    text, variables = (item, {}) if isinstance(item, str) else item
                    for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                        if name not in variables:
                            check(name, where)
                    walk(variables, where)
                else:
                    walk(item, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    for name, resource in template["Resources"].items():
        walk(resource.get("Properties", {}), name)
        depends = resource.get("DependsOn", [])
        for target in [depends] if isinstance(depends, str) else depends:
            check(target, f"{name} DependsOn")
    walk(template.get("Outputs", {}), "Outputs")
    return missing


@pytest.fixture(scope="module", params=[
    {"ApiType": "rest"}, {"ApiType": "http"}, {"ApiType": "http", "FrontDoorAuth": "NONE"},
    {"ApiType": "function-url"}, {"ApiType": "function-url", "FrontDoorAuth": "NONE"},
    {"ApiType": "rest", "ApiDocs": "true", "AccessLogs": "true"}, {"ApiType": "http", "ApiDocs": "true", "AccessLogs": "true"},
], ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def deployed(request: pytest.FixtureRequest) -> tuple[dict, dict]:
    return request.param, render(**request.param)


def test_every_front_door_renders_with_no_dangling_reference(deployed: tuple[dict, dict]) -> None:
    _, template = deployed
    assert dangling_references(template) == []


def test_every_front_door_renders_to_a_template_cfn_lint_accepts(deployed: tuple[dict, dict], tmp_path: Path) -> None:
    _, template = deployed
    path = tmp_path / "rendered.json"
    path.write_text(json.dumps(template))
    run = subprocess.run([_tool("cfn-lint"), str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_check_finds_what_a_function_event_on_a_conditional_api_leaves_behind() -> None:
    # Why the routes are not SAM function events: the permission SAM makes for one has no condition.
    template = {"Parameters": {"ApiType": {"Type": "String", "Default": "http"}},
                "Conditions": {"WithRestApi": {"Fn::Equals": [{"Ref": "ApiType"}, "rest"]}},
                "Resources": {
                    "Api": {"Type": "AWS::ApiGateway::RestApi", "Condition": "WithRestApi", "Properties": {}},
                    "Permission": {"Type": "AWS::Lambda::Permission", "Properties": {"SourceArn": {
                        "Fn::Sub": ["arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/*",
                                    {"__ApiId__": {"Ref": "Api"}}]}}}}}
    assert dangling_references(apply_conditions(template, {})) == ["Permission: Api"]


def _doors(template: dict) -> set[str]:
    return {resource["Type"] for resource in template["Resources"].values() if resource["Type"] in DOOR_TYPES}


def _routes(body: dict) -> dict[tuple[str, str], dict]:
    return {(path, method): operation for path, item in body["paths"].items() for method, operation in item.items()}


def _function_routes(body: dict) -> set[tuple[str, str]]:
    return {route for route, operation in _routes(body).items()
            if "SentimentFunction.Arn" in json.dumps(operation["x-amazon-apigateway-integration"]["uri"])}


@pytest.mark.parametrize("api_type", API_TYPES)
def test_only_the_chosen_front_door_is_deployed(api_type: str) -> None:
    template = render(ApiType=api_type)
    expected = {"rest": {"AWS::ApiGateway::RestApi", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlan"},
                "http": {"AWS::ApiGatewayV2::Api"}, "function-url": {"AWS::Lambda::Url"}}[api_type]
    assert _doors(template) == expected
    permissions = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"
                   and r["Properties"]["FunctionName"] == {"Ref": "SentimentFunction"}]
    if api_type == "function-url":
        assert permissions == []  # AWS_IAM: callers' own IAM policies grant lambda:InvokeFunctionUrl
    else:
        (permission,) = permissions
        api = "SentimentApi" if api_type == "rest" else "SentimentHttpApi"
        assert permission["Principal"] == "apigateway.amazonaws.com" and f"${{{api}}}/" in permission["SourceArn"]["Fn::Sub"]
    url = json.dumps(template["Outputs"]["PredictUrl"]["Value"])
    assert {"rest": "SentimentApi}", "http": "SentimentHttpApi}", "function-url": "SentimentFunctionUrl.FunctionUrl"}[
        api_type] in url and url.endswith('predict"}')
    assert ("ApiKeyId" in template["Outputs"]) == (api_type == "rest")


def test_rest_and_http_api_route_the_same_requests_to_the_function() -> None:
    rest = render(ApiType="rest")["Resources"]["SentimentApi"]["Properties"]["Body"]
    http = render(ApiType="http")["Resources"]["SentimentHttpApi"]["Properties"]["Body"]
    assert _function_routes(rest) == _function_routes(http) == {("/predict", "post"), ("/health", "get")}
    for (path, method), operation in _routes(http).items():
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy" and integration["payloadFormatVersion"] == "2.0", path
        assert operation["security"] == [{"AWS_IAM": []}], (path, method)
    assert http["components"]["securitySchemes"]["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for route in _function_routes(rest):
        assert _routes(rest)[route]["security"] == [{"api_key": []}], route


def test_http_api_throttles_with_the_rest_api_limits_and_auth_follows_front_door_auth() -> None:
    template = render(ApiType="http", FrontDoorAuth="NONE")
    stages = [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    (stage,) = stages
    assert stage["Properties"]["StageName"] == "$default"
    assert stage["Properties"]["DefaultRouteSettings"] == {"ThrottlingRateLimit": {"Ref": "ThrottleRateLimit"},
                                                           "ThrottlingBurstLimit": {"Ref": "ThrottleBurstLimit"}}
    assert {"ThrottleRateLimit", "ThrottleBurstLimit"} <= set(template["Parameters"])
    body = template["Resources"]["SentimentHttpApi"]["Properties"]["Body"]
    assert all(operation["security"] == [] for operation in _routes(body).values())  # public, as asked


@pytest.mark.parametrize(("auth", "public"), [("AWS_IAM", False), ("NONE", True)])
def test_function_url_auth(auth: str, public: bool) -> None:
    resources = render(ApiType="function-url", FrontDoorAuth=auth)["Resources"]
    url = resources["SentimentFunctionUrl"]["Properties"]
    assert url["AuthType"] == {"Ref": "FrontDoorAuth"}
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": ["SentimentFunction", "Arn"]}
    granted = {(p["Action"], p.get("FunctionUrlAuthType"), p.get("InvokedViaFunctionUrl")) for p in (
        r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission") if p["Principal"] == "*"}
    # A public URL needs both grants since October 2025: InvokeFunctionUrl, and InvokeFunction via the URL only.
    assert granted == ({("lambda:InvokeFunctionUrl", "NONE", None), ("lambda:InvokeFunction", None, True)} if public else set())


def test_docs_routes_need_no_key_and_exist_only_on_the_rest_api() -> None:
    rest = render(ApiType="rest", ApiDocs="true")
    routes = _routes(rest["Resources"]["SentimentApi"]["Properties"]["Body"])
    assert {path for path, _ in routes if path.startswith("/docs")} == {"/docs", "/docs/swagger-ui.js", "/docs/swagger-ui.css"}
    assert all(op["security"] == [] for (path, _), op in routes.items() if path.startswith("/docs"))
    assert "DocsFunction" in rest["Resources"] and "DocsUrl" in rest["Outputs"]
    http = render(ApiType="http", ApiDocs="true")
    assert "DocsFunction" not in http["Resources"] and "DocsUrl" not in http["Outputs"]
    assert "/docs" not in _routes(render(ApiType="rest")["Resources"]["SentimentApi"]["Properties"]["Body"]).__str__()


def test_sam_local_start_api_reads_the_routes(tmp_path: Path) -> None:
    # `make sam-api` serves what the SAM CLI finds in the API definitions (it ignores conditions, so it sees every
    # door); a security entry it cannot read (an Fn::If instead of a list) stops it before it serves anything.
    if not SAM_PYTHON.exists():
        pytest.skip("the SAM CLI's virtualenv is missing: make .venv-sam/.installed (make test does)")
    code = ("import json\n"
            "from samcli.lib.providers.api_provider import ApiProvider\n"
            "from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider\n"
            "stacks, _ = SamLocalStackProvider.get_stacks('template.yaml')\n"
            "print(json.dumps([[r.path, m, r.function_name, r.payload_format_version]"
            " for r in ApiProvider(stacks).api.routes for m in r.methods]))\n")
    run = subprocess.run([str(SAM_PYTHON), "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                              "SAM_CLI_TELEMETRY": "0"})
    assert run.returncode == 0, run.stderr[-3000:]
    routes = {(path, method): (function, version) for path, method, function, version in json.loads(run.stdout)}
    assert routes[("/predict", "POST")][0] == routes[("/health", "GET")][0] == "SentimentFunction"
