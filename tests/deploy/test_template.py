"""template.yaml and Dockerfile: real linters, plus the properties the product relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub ...) as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: (
    {suffix: loader.construct_scalar(node)} if isinstance(node, yaml.ScalarNode)
    else {suffix: loader.construct_sequence(node)}))


@pytest.fixture(scope="module")
def template() -> dict:
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=_CfnLoader)


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -r requirements/dev.txt)")
    return found


def test_cfn_lint_is_clean() -> None:
    run = subprocess.run([_tool("cfn-lint"), "template.yaml"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_is_clean() -> None:
    run = subprocess.run([_tool("hadolint"), "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_function_is_a_container_image_with_docker_metadata(template: dict) -> None:
    function = template["Resources"]["SentimentFunction"]
    assert function["Properties"]["PackageType"] == "Image"
    assert function["Metadata"]["Dockerfile"] == "Dockerfile"
    assert function["Metadata"]["DockerBuildArgs"]["BACKEND"] in ("tflite", "savedmodel")
    assert function["Properties"]["Environment"]["Variables"]["MODEL_BACKEND"] == {"Ref": "ModelBackend"}
    # The routes live in the API's definition (ApiType makes the API conditional; test_front_doors_template.py).
    paths = template["Resources"]["SentimentApi"]["Properties"]["DefinitionBody"]["paths"]
    routes = {(path, method) for path, item in paths.items() if "If" not in item for method in item}
    assert routes == {("/predict", "post"), ("/health", "get")}


def test_api_requires_a_key_under_a_throttled_usage_plan(template: dict) -> None:
    resources = template["Resources"]
    api = resources["SentimentApi"]["Properties"]["DefinitionBody"]
    assert api["components"]["securitySchemes"]["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert all(item[method]["security"] == [{"api_key": []}] for item in api["paths"].values() if "If" not in item
               for method in item)
    plan = resources["SentimentUsagePlan"]["Properties"]
    assert set(plan["Throttle"]) == {"RateLimit", "BurstLimit"}
    assert plan["Quota"]["Period"] == "DAY"
    assert resources["SentimentUsagePlanKey"]["Properties"]["KeyType"] == "API_KEY"


def test_parameters_outputs_and_log_retention(template: dict) -> None:
    assert {"MemorySize", "Timeout", "ModelBackend", "LogLevel", "LogRetentionDays"} <= set(template["Parameters"])
    assert template["Parameters"]["ModelBackend"]["AllowedValues"] == ["tflite", "savedmodel"]
    log_group = template["Resources"]["SentimentFunctionLogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert {"PredictUrl", "ApiKeyId"} <= set(template["Outputs"])


def test_dockerfile_installs_only_the_chosen_backend() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM public\.ecr\.aws/lambda/python:3\.12\b", dockerfile, re.M)
    assert 'CMD ["app.handler.lambda_handler"]' in dockerfile
    assert "requirements/lock/${BACKEND}.txt" in dockerfile and "--require-hashes" in dockerfile
    assert "torch" not in (ROOT / "requirements" / "app.txt").read_text()
    for backend, packages in {"tflite": ["ai-edge-litert"], "savedmodel": ["tensorflow-cpu"]}.items():
        text = (ROOT / "requirements" / f"backend-{backend}.txt").read_text()
        assert all(p in text for p in packages)
    assert "!model_artifacts/" in (ROOT / ".dockerignore").read_text()


@pytest.mark.parametrize(("backend", "kept", "removed"), [
    ("tflite", "model.tflite", "saved_model"), ("savedmodel", "saved_model", "model.tflite")])
def test_artifact_stage_keeps_only_the_backend_files(tmp_path: Path, backend: str, kept: str, removed: str) -> None:
    """Run the Dockerfile's artifact-pruning RUN line on a fake /staging folder."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    command = re.search(r"^RUN (if \[ \"\$BACKEND\".*?)(?=^\s*$|^#|^FROM)", dockerfile, re.M | re.S).group(1)
    command = command.replace("\\\n", " ").replace("/staging", str(tmp_path))
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "pytorch").mkdir()
    for name in ("model.tflite", "model.json", "tokenizer.json", "MODEL_CARD.md", "plot.png"):
        (tmp_path / name).write_text("x")
    run = subprocess.run(["sh", "-c", command], env={"BACKEND": backend, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {kept, "model.json", "tokenizer.json"}
    assert removed not in left
