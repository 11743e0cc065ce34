"""The function image, built and run through a real container engine and the pinned SAM CLI.

Every test here carries the ``image`` marker and skips, saying why, where the engine, CPython 3.12 (for
the stand-in base) or the SAM CLI cannot be had. The engine is started once for the session where none
answers and stopped again at its end (image/engine.sh); `make test` and CI run these tests.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from image import sam
from tests.conftest import ROOT

ENGINE = ROOT / "image" / "engine.sh"
STATE = Path(os.environ.get("SENTIMENT_ENGINE_STATE", "/var/lib/sentiment-engine"))
BASE = "public.ecr.aws/lambda/python:3.12"
SIZES: dict[str, int] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.image)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SIZES:
        terminalreporter.write_sep("-", "function image sizes (tests/image)")
        for tag, size in sorted(SIZES.items()):
            terminalreporter.write_line(f"{tag}: {size / 1e6:.0f} MB")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def engine_unavailable() -> str | None:
    """Why the image tests cannot have an engine and the SAM CLI here (None when they can)."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    if not sam.SAM.is_file():
        return ".venv-sam/ has no SAM CLI (make .venv-sam/.installed)"
    if shutil.which("dockerd") is None and os.geteuid() != 0:
        return "no container engine and no root to install one"
    return None


def _standin_possible() -> str | None:
    """Why the stand-in base cannot be built here (None when it can)."""
    py312 = os.environ.get("PY312") or "/root/.pyenv/versions/3.12.1"
    if not Path(py312, "bin", "python3.12").is_file():
        return f"no CPython 3.12 at {py312} for the stand-in base (set PY312), and the real base is absent"
    if os.geteuid() != 0:
        return "building the stand-in base needs root (mmdebstrap, dockerd)"
    return None


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    """An answering engine with the base image (the stand-in where the real one is absent)."""
    reason = engine_unavailable()
    if reason:
        pytest.skip(reason)
    context = sam.engine()
    try:
        context.__enter__()
    except sam.SamError as exc:
        pytest.skip(f"{exc} (see /var/lib/sentiment-engine/dockerd.log)")
    try:
        if docker("image", "inspect", BASE, check=False).returncode != 0:
            reason = _standin_possible()
            if reason:
                pytest.skip(reason)
        yield
    finally:
        context.__exit__(None, None, None)


@pytest.fixture(scope="session")
def image(engine: None) -> Iterator[dict[str, str]]:
    """``make image`` for both backends: tag -> build log (stderr of image/build.sh)."""
    logs = {}
    for backend in ("tflite", "savedmodel"):
        run = subprocess.run(["bash", str(ROOT / "image" / "build.sh"), backend], cwd=ROOT, capture_output=True,
                             text=True, timeout=1200, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
        assert run.returncode == 0, f"make image BACKEND={backend} failed:\n{run.stderr[-4000:]}"
        tag = f"sentiment:{backend}"
        SIZES[tag] = int(docker("image", "inspect", "-f", "{{ .Size }}", tag).stdout)
        logs[tag] = run.stderr
    return logs


@pytest.fixture(scope="session")
def sam_built(image: dict[str, str]) -> Path:
    """``sam build`` (when sources changed): .aws-sam/build/template.yaml, the images in the engine."""
    sam.ensure_built()
    return sam.WORK / "build" / "template.yaml"


def derived_template(built: Path, name: str, function: str, env: dict[str, str] | None = None,
                     image_uri: str | None = None) -> Path:
    """The built template with one function's environment extended or its image replaced (SAM lets
    --env-vars override only variables the template declares; the project's template stays as it is)."""
    template = yaml.safe_load(built.read_text())
    props = template["Resources"][function]["Properties"]
    if env:
        props.setdefault("Environment", {}).setdefault("Variables", {}).update(env)
    if image_uri:
        props["ImageUri"] = image_uri
    path = built.parent / f"{name}.template.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


class Server:
    """A SAM local server (start-api / start-lambda) on 127.0.0.1, stopped with SIGTERM by its pid."""

    def __init__(self, command: list[str], port: int, timeout: float = 180) -> None:
        self.port = port
        self.log = (sam.WORK / "tmp" / f"server-{port}.log").open("w")
        self.process = subprocess.Popen([str(sam.SAM), *command, "--host", "127.0.0.1", "--port", str(port),
                                         "--skip-pull-image"], cwd=ROOT, env=sam.environment(), stdout=self.log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"sam {command[1]} exited {self.process.returncode}: {self.output()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.5)
        self.stop()
        raise AssertionError(f"sam {command[1]} did not listen on 127.0.0.1:{port} in {timeout} s")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())
