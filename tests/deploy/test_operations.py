"""Alarms, their SNS topic and the dashboard in template.yaml, checked against the metrics the code really emits.

The emitted set comes from running the API and batch handlers (tests/deploy/emit_metrics.py) in the environment
the template gives each function and reading Powertools' EMF output: every alarm and dashboard metric in the
service's namespace must name a metric and a dimension set that came out.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from app.docs import ASSETS
from tests.conftest import BUNDLED, ROOT
from tests.deploy.test_template import _CfnLoader

Metric = tuple[str, str, frozenset]  # namespace, metric name, {(dimension, value)}


RAW = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)
# Every front door the template offers (ApiType); the alarms and the dashboard must follow each.
API_TYPES = RAW["Parameters"].get("ApiType", {}).get("AllowedValues", ["rest"])
# What API Gateway or Lambda calls each door's request metrics: (namespace, 5xx, requests, latency, 4xx).
DOOR_METRICS = {"rest": ("AWS/ApiGateway", "5XXError", "Count", "Latency", "4XXError"),
                "http": ("AWS/ApiGateway", "5xx", "Count", "Latency", "4xx"),
                "function-url": ("AWS/Lambda", "Url5xxCount", "UrlRequestCount", "UrlRequestLatency", "Url4xxCount")}


def render(raw: dict, **parameters: str) -> dict:
    """The template as CloudFormation would see it for these parameter values (defaults otherwise): conditions
    evaluated, resources whose condition is false left out, Fn::If resolved, Fn::Sub's variable map substituted."""
    values = {name: str(p.get("Default", "")) for name, p in raw["Parameters"].items()} | parameters
    conditions: dict[str, bool] = {}

    def evaluate(node: Any) -> Any:
        if isinstance(node, dict) and len(node) == 1:
            (kind, arg), = node.items()
            if kind == "Ref":
                return values[arg]
            if kind == "Equals":
                return str(evaluate(arg[0])) == str(evaluate(arg[1]))
            if kind == "Not":
                return not evaluate(arg[0])
            if kind == "And":
                return all(evaluate(a) for a in arg)
            if kind == "Or":
                return any(evaluate(a) for a in arg)
            if kind == "Condition":
                return condition(arg)
        return node

    def condition(name: str) -> bool:
        if name not in conditions:
            conditions[name] = bool(evaluate(raw["Conditions"][name]))
        return conditions[name]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"If"}:
                name, yes, no = node["If"]
                return resolve(yes if condition(name) else no)
            if set(node) == {"Sub"} and isinstance(node["Sub"], list):
                text, variables = node["Sub"]
                for key, value in resolve(variables).items():
                    text = text.replace("${" + key + "}", value["Sub"] if isinstance(value, dict) else value)
                return {"Sub": text}
            out = {k: resolve(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v != {"Ref": "AWS::NoValue"}}
        if isinstance(node, list):
            return [resolve(v) for v in node if v != {"Ref": "AWS::NoValue"}]
        return node

    rendered = copy.deepcopy(raw)
    rendered["Resources"] = {name: resolve(r) for name, r in raw["Resources"].items()
                             if "Condition" not in r or condition(r["Condition"])}
    rendered["ApiType"] = values.get("ApiType", "rest")
    return rendered


@pytest.fixture(scope="module", params=API_TYPES)
def template(request: pytest.FixtureRequest) -> dict:
    """The template rendered for one front door (ApiType)."""
    return render(RAW, **({"ApiType": request.param} if "ApiType" in RAW["Parameters"] else {}))


@pytest.fixture(scope="module")
def raw() -> dict:
    return RAW


def _value(value: Any) -> str:
    """A dimension value as the tests compare it: literal text, or <Resource> / <Resource.Attribute> for Ref / GetAtt."""
    if isinstance(value, dict) and len(value) == 1:
        (kind, target), = value.items()
        if kind in ("Ref", "GetAtt"):
            return f"<{target if isinstance(target, str) else '.'.join(target)}>"
    if isinstance(value, str):
        return re.sub(r"\$\{([^}]+)\}", r"<\1>", value)  # a dashboard's ${Name} substitution
    raise AssertionError(f"unexpected dimension value {value!r}")


def _emitted(function: str, template: dict, kind: str) -> set[Metric]:
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    env.update({"MODEL_DIR": str(BUNDLED), "MODEL_BACKEND": "tflite", "POWERTOOLS_LOG_LEVEL": "WARNING",
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                **{k: v for k, v in variables.items() if k.startswith("POWERTOOLS_") and isinstance(v, str)}})
    run = subprocess.run([sys.executable, "-m", "tests.deploy.emit_metrics", kind, f"<{function}>"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = set()
    for line in run.stdout.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dims = frozenset((name, str(blob[name])) for name in dimension_set)
                metrics.update((directive["Namespace"], m["Name"], dims) for m in directive["Metrics"])
    return metrics


@pytest.fixture(scope="module")
def emitted(raw: dict) -> set[Metric]:
    if not (BUNDLED / "model.json").is_file():
        pytest.skip("model_artifacts/ holds no bundled model")
    pytest.importorskip("moto")
    return _emitted("SentimentFunction", raw, "api") | _emitted("BatchFunction", raw, "batch")


def alarm_metrics(template: dict) -> dict[str, list[Metric]]:
    """Each alarm's metrics (a plain alarm's one, or every MetricStat of a metric-math alarm)."""
    found: dict[str, list[Metric]] = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        specs = [props] if "MetricName" in props else [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]
        found[name] = [(s["Namespace"], s["MetricName"], frozenset((d["Name"], _value(d["Value"]))
                                                                   for d in s.get("Dimensions", []))) for s in specs]
    return found


def dashboard_widgets(template: dict) -> list[dict]:
    """The dashboard's widgets, with ${...} substitutions written as <...>."""
    body = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Sub"]
    return json.loads(_value(body))["widgets"]


def widget_metrics(widget: dict) -> list[Metric]:
    """The metrics a widget plots: [namespace, name, dim, value, ..., {options}] rows ('.' repeats the row above)."""
    rows, previous = [], []
    for row in widget["properties"].get("metrics", []):
        fields = [f for f in row if not isinstance(f, dict)]
        if not fields:  # a math expression row
            continue
        fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
        previous = fields
        namespace, name, *pairs = fields
        rows.append((namespace, name, frozenset(zip(pairs[::2], pairs[1::2], strict=True))))
    return rows


def _service_namespace(template: dict) -> str:
    return template["Resources"]["SentimentFunction"]["Properties"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]


def not_emitted(template: dict, emitted: set[Metric]) -> list[str]:
    """Every alarm or dashboard metric in the service's namespace that the code does not emit."""
    namespace = _service_namespace(template)
    referenced = [(f"alarm {name}", m) for name, ms in alarm_metrics(template).items() for m in ms]
    referenced += [(f"widget {w['properties'].get('title')!r}", m)
                   for w in dashboard_widgets(template) for m in widget_metrics(w)]
    return [f"{where}: {name} {dict(dims)}" for where, (ns, name, dims) in referenced if ns == namespace
            and (ns, name, dims) not in emitted]


def test_every_service_metric_in_alarms_and_dashboard_is_emitted_by_the_code(template: dict,
                                                                              emitted: set[Metric]) -> None:
    namespace = _service_namespace(template)
    ours = {name for ns, name, _ in emitted if ns == namespace}
    # the run went through every path: per-label predictions, latency, cold start, faults, bulk records
    assert {"ColdStart", "InferenceLatency", "Texts", "PredictionsPositive", "PredictionsNegative", "InternalErrors",
            "BulkRecords", "BulkFiles", "BulkErrors"} <= ours
    assert not_emitted(template, emitted) == []
    used = {m[1] for ms in alarm_metrics(template).values() for m in ms if m[0] == namespace}
    used |= {m[1] for w in dashboard_widgets(template) for m in widget_metrics(w) if m[0] == namespace}
    assert used >= {"ColdStart", "InferenceLatency", "PredictionsPositive", "PredictionsNegative", "InternalErrors",
                    "BulkRecords"}


def test_a_misnamed_metric_or_dimension_is_caught(template: dict, emitted: set[Metric]) -> None:
    broken = copy.deepcopy(template)
    stat = broken["Resources"]["FunctionErrorsAlarm"]["Properties"]["Metrics"][2]["MetricStat"]["Metric"]
    stat["MetricName"] = "InternalError"
    body = broken["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    body["Sub"] = body["Sub"].replace('"ColdStart", "function_name"', '"ColdStart", "FunctionName"')
    assert len(not_emitted(broken, emitted)) == 2


def test_dashboard_plots_what_operators_ask_for(template: dict) -> None:
    widgets = {w["properties"]["title"]: w for w in dashboard_widgets(template) if w["type"] == "metric"}
    names = {title: {m[1] for m in widget_metrics(w)} for title, w in widgets.items()}
    stats = {title: {o.get("stat") for row in w["properties"]["metrics"] for o in row if isinstance(o, dict)}
             for title, w in widgets.items()}
    labels = json.loads((BUNDLED / "model.json").read_text())["labels"]
    door = DOOR_METRICS[template["ApiType"]]
    assert any({door[1], door[2], door[4]} <= n for n in names.values())  # requests, 5xx, 4xx of this front door
    assert any({"p50", "p99"} <= stats[t] and {door[3], "InferenceLatency"} <= names[t] for t in widgets)
    assert any({f"Predictions{label.title()}" for label in labels} <= n for n in names.values())
    assert any("ColdStart" in n for n in names.values())
    assert any({"Errors", "InternalErrors"} <= n for n in names.values())
    bulk = next(w for w in widgets.values() if "BulkRecords" in names[w["properties"]["title"]])
    expression = next(o for row in bulk["properties"]["metrics"] for o in row if isinstance(o, dict) and "expression" in o)
    records_id = next(o["id"] for row in bulk["properties"]["metrics"] for o in row
                      if isinstance(o, dict) and o.get("id") and "BulkRecords" in row)
    assert expression["expression"] == f"{records_id} / PERIOD({records_id})"  # per second, whatever the period
    alarms = next(w for w in dashboard_widgets(template) if w["type"] == "alarm")["properties"]["alarms"]
    assert {a.removesuffix(".Arn>").removeprefix("<") for a in alarms} == set(alarm_metrics(template))


def test_aws_metrics_name_this_stacks_resources(template: dict) -> None:
    resources = template["Resources"]
    references = [m for ms in alarm_metrics(template).values() for m in ms]
    references += [m for w in dashboard_widgets(template) for m in widget_metrics(w)]
    namespace = _service_namespace(template)
    door = DOOR_METRICS[template["ApiType"]]
    for ns, name, dims in references:
        dims = dict(dims)
        if ns == "AWS/ApiGateway":
            assert door[0] == ns and name in door, (template["ApiType"], name)
            if template["ApiType"] == "rest":  # the REST API is named after the stack (its title), stage Prod
                api = resources["SentimentApi"]["Properties"]
                title = api.get("DefinitionBody", {}).get("info", {}).get("title", {"Ref": "AWS::StackName"})
                assert "Name" not in api and title == {"Ref": "AWS::StackName"}
                assert dims == {"ApiName": "<AWS::StackName>", "Stage": api["StageName"]}, name
            else:
                assert dims == {"ApiId": "<SentimentHttpApi>"} and "SentimentHttpApi" in resources, name
        elif ns == "AWS/Lambda":
            target = dims["FunctionName"].strip("<>")
            assert set(dims) == {"FunctionName"} and resources[target]["Type"] == "AWS::Serverless::Function", name
            assert not name.startswith("Url") or template["ApiType"] == "function-url", name
        elif ns == "AWS/SQS":
            assert dims == {"QueueName": "<BatchDeadLetterQueue.QueueName>"}, name
        else:
            assert ns == namespace, ns
    # every ${Resource} the dashboard names exists for this front door
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Sub"]
    named = {m.split(".")[0] for m in re.findall(r"\$\{([^}]+)\}", body) if not m.startswith("AWS::")}
    assert named <= set(resources), named - set(resources)


def test_each_required_alarm_exists_and_notifies_the_topic(template: dict) -> None:
    resources, parameters = template["Resources"], template["Parameters"]
    metrics = alarm_metrics(template)
    door = DOOR_METRICS[template["ApiType"]]
    wanted = {
        "API 5xx rate": lambda ms: {m[:2] for m in ms} == {(door[0], door[1]), (door[0], door[2])},
        "p99 latency": lambda ms: [m[:2] for m in ms] == [(door[0], door[3])],
        "throttles": lambda ms: [m[:2] for m in ms] == [("AWS/Lambda", "Throttles")],
        "function errors": lambda ms: {m[1] for m in ms} == {"Errors", "InternalErrors"},
        "batch errors": lambda ms: ms == [("AWS/Lambda", "Errors", frozenset({("FunctionName", "<BatchFunction>")}))],
        "dead letters": lambda ms: [m[:2] for m in ms] == [("AWS/SQS", "ApproximateNumberOfMessagesVisible")],
    }
    for what, matches in wanted.items():
        assert [name for name, ms in metrics.items() if matches(ms)], f"no alarm for {what}"
    latency = next(resources[n]["Properties"] for n, ms in metrics.items() if ms[0][1] == door[3])
    assert latency.get("ExtendedStatistic") == "p99" or [q["MetricStat"]["Stat"] for q in latency["Metrics"]] == ["p99"]
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name in metrics:
        props = resources[name]["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}] and props["OKActions"] == [{"Ref": "AlarmTopic"}], name
        threshold = props["Threshold"]["Ref"]  # every threshold is a parameter with a default ...
        assert "Default" in parameters[threshold] and parameters[threshold]["Description"], name
        assert f"`{threshold}`" in operations and name in operations, f"docs/operations.md does not document {name}"
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


def test_email_subscription_is_optional(raw: dict) -> None:
    template = raw
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Type"] == "AWS::SNS::Subscription"
    assert subscription["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                          "Endpoint": {"Ref": "AlarmEmail"}}
    assert template["Conditions"][subscription["Condition"]] == {"Not": [{"Equals": [{"Ref": "AlarmEmail"}, ""]}]}
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    pattern = re.compile(template["Parameters"]["AlarmEmail"]["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("ops@example.com") and not pattern.fullmatch("not an address")


def _docs_routes(template: dict) -> dict[tuple[str, str], bool]:
    """(path, method) -> whether it needs the API key, for every route that reaches DocsFunction.

    Either as DocsFunction's own Api events (SAM then makes the paths conditional) or as paths of SentimentApi's
    DefinitionBody wrapped in Fn::If on the docs condition.
    """
    resources = template["Resources"]
    condition = resources["DocsFunction"]["Condition"]
    routes = {}
    for event in resources["DocsFunction"]["Properties"].get("Events", {}).values():
        props = event["Properties"]
        assert event["Type"] == "Api" and props["RestApiId"] == {"Ref": "SentimentApi"}
        routes[(props["Path"], props["Method"])] = props.get("Auth", {}).get("ApiKeyRequired", True)
    body = resources["SentimentApi"]["Properties"].get("DefinitionBody", {})
    for path, item in body.get("paths", {}).items():
        if "DocsFunction.Arn" not in json.dumps(item):
            continue
        assert set(item) == {"If"} and item["If"][0] == condition and item["If"][2] == {"Ref": "AWS::NoValue"}, path
        for method, operation in item["If"][1].items():
            routes[(path, method)] = operation.get("security") != []
    return routes


def test_docs_routes_exist_only_with_api_docs(raw: dict) -> None:
    template = raw
    resources = template["Resources"]
    docs = resources["DocsFunction"]
    on = {"Equals": [{"Ref": "ApiDocs"}, "true"]}
    assert template["Conditions"][docs["Condition"]] in (on, {"And": [on, {"Condition": "WithRestApi"}]})
    assert template["Parameters"]["ApiDocs"]["Default"] == "false"
    routes = _docs_routes(template)
    assert set(routes) == {("/docs", "get"), *{(f"/docs/{name}", "get") for name in ASSETS}}
    assert not any(routes.values())  # no key: a browser opening the page cannot send x-api-key
    assert docs["Properties"]["Environment"]["Variables"]["API_DOCS"] == "true"
    assert docs["Metadata"] | {"checkov": None} == resources["SentimentFunction"]["Metadata"] | {"checkov": None}
    assert resources["DocsFunctionLogGroup"]["Condition"] == docs["Condition"]
    assert template["Outputs"]["DocsUrl"]["Condition"] == docs["Condition"]
    # the prediction function never answers /docs: API_DOCS is not set on it
    assert "API_DOCS" not in resources["SentimentFunction"]["Properties"]["Environment"]["Variables"]
