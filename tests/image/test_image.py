"""`make image`: both backends build from the unchanged Dockerfile; what the image holds; a broken artifact."""

from __future__ import annotations

import json
import subprocess

import pytest
from packaging.utils import canonicalize_name

from image import sam
from image.lock import parse_lock
from tests.conftest import ROOT
from tests.image.conftest import BASE, derived_template, docker

ARTIFACTS = {"tflite": {"model.json", "model.tflite", "tokenizer.json"},
             "savedmodel": {"model.json", "saved_model", "tokenizer.json"}}
# What the image must not hold: the training stack, and the other backend's runtime.
ABSENT = {"tflite": ["torch", "transformers", "tensorflow"], "savedmodel": ["torch", "transformers", "ai_edge_litert"]}


def in_image(tag: str, code: str) -> str:
    """Run Python inside the image (its own interpreter, the entrypoint bypassed)."""
    return docker("run", "--rm", "--network", "none", "--entrypoint", "/var/lang/bin/python3.12", tag, "-c", code).stdout


def test_build_says_when_it_used_the_stand_in(image: dict[str, str]) -> None:
    label = docker("image", "inspect", "-f", '{{ index .Config.Labels "org.sentiment.standin" }}', BASE).stdout.strip()
    for log in image.values():
        assert "image: built sentiment:" in log
        if label and label != "<no value>":
            assert "stand-in" in log and "glibc 2.36" in log, log


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_image_holds_only_its_backend(image: dict[str, str], backend: str) -> None:
    tag = f"sentiment:{backend}"
    code = ("import importlib.util, json, os; "
            f"print(json.dumps({{'found': [m for m in {ABSENT[backend]!r} if importlib.util.find_spec(m)], "
            "'model': sorted(os.listdir(os.environ['MODEL_DIR'])), 'backend': os.environ['MODEL_BACKEND']}))")
    seen = json.loads(in_image(tag, code))
    assert seen["found"] == [], f"{tag} holds {seen['found']}"
    assert set(seen["model"]) == ARTIFACTS[backend]
    assert seen["backend"] == backend


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_image_installs_the_locked_versions(image: dict[str, str], backend: str) -> None:
    """Every package in the image is the version its lock file pins (and nothing unlocked)."""
    lock = ROOT / "requirements" / "lock" / f"{backend}.txt"
    if not lock.is_file():
        pytest.skip(f"{lock.relative_to(ROOT)} is not there")
    pinned = {canonicalize_name(name): entry["version"] for name, entry in parse_lock(lock.read_text()).items()}
    code = ("import importlib.metadata as m, json; "
            "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    installed = {canonicalize_name(k): v for k, v in json.loads(in_image(f"sentiment:{backend}", code)).items()}
    installed.pop("pip", None)
    installed.pop("awslambdaric", None)  # the base image's, in /var/runtime
    installed.pop("simplejson", None)
    installed.pop("snapshot-restore-py", None)
    wrong = {name: (version, pinned.get(name)) for name, version in installed.items() if pinned.get(name) != version}
    assert not wrong, f"installed vs locked: {wrong}"


def test_broken_artifact_fails_init_naming_the_file(sam_built, tmp_path) -> None:
    """A truncated model.tflite: the function's init fails, and the message names the file."""
    (tmp_path / "Dockerfile").write_text(
        "FROM sentimentfunction:tflite\n"
        "RUN head -c 4096 /opt/ml/model/model.tflite > /tmp/m && mv /tmp/m /opt/ml/model/model.tflite\n")
    docker("build", "-q", "-t", "sentiment-broken:test", str(tmp_path))
    try:
        template = derived_template(sam_built, "broken", "SentimentFunction", image_uri="sentiment-broken:test")
        run = subprocess.run([str(sam.SAM), "local", "invoke", "SentimentFunction", "-t", str(template), "-e",
                              str(ROOT / "events" / "health.json"), "--skip-pull-image"], cwd=ROOT,
                             env=sam.environment(), capture_output=True, text=True, timeout=300)
    finally:
        docker("rmi", "-f", "sentiment-broken:test", "sentiment-broken:rapid-x86_64", check=False)
    response = sam.parse_response(run.stdout)
    assert sam.failed(response)
    assert "/opt/ml/model/model.tflite: not a loadable TFLite model" in response["errorMessage"], response
    assert response["errorType"].endswith("ModelLoadError")
