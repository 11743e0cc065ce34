"""Load the handler module against a chosen model directory, backend and limits."""

from __future__ import annotations

import importlib
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import BUNDLED


def load_handler(mp: pytest.MonkeyPatch, model_dir: Path, backend: str = "tflite", **env: str) -> ModuleType:
    """(Re)import app.settings, app.schemas, app.errors and app.handler under this environment."""
    for key, value in {"MODEL_DIR": str(model_dir), "MODEL_BACKEND": backend, **env}.items():
        mp.setenv(key, value)
    for name in ("app.settings", "app.schemas", "app.errors", "app.handler"):
        if name in sys.modules:
            importlib.reload(sys.modules[name])
        else:
            importlib.import_module(name)
    return sys.modules["app.handler"]


@pytest.fixture(scope="module", params=["tflite", "savedmodel"])
def handler(request: pytest.FixtureRequest, tiny_artifacts: Path) -> Iterator[ModuleType]:
    """The handler on the small exported model, once per backend, with small limits for the tests."""
    with pytest.MonkeyPatch.context() as mp:
        yield load_handler(mp, tiny_artifacts, request.param, MAX_BATCH_SIZE="8", MAX_TEXT_CHARS="2000",
                           MAX_BODY_BYTES="20000")


@pytest.fixture(scope="module")
def bundled_handler() -> Iterator[ModuleType]:
    if not (BUNDLED / "model.json").is_file():
        pytest.skip("model_artifacts/ holds no bundled model yet")
    with pytest.MonkeyPatch.context() as mp:
        for key in ("MAX_BATCH_SIZE", "MAX_TEXT_CHARS", "MAX_BODY_BYTES"):
            mp.delenv(key, raising=False)
        yield load_handler(mp, BUNDLED, "tflite")


@pytest.fixture
def logs(handler: ModuleType) -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test (its stream is bound at import)."""
    buffer = io.StringIO()
    previous = [h.setStream(buffer) for h in handler.logger.handlers]
    yield buffer
    for h, stream in zip(handler.logger.handlers, previous, strict=True):
        h.setStream(stream)


def call(handler: ModuleType, event: dict, context: object) -> tuple[int, dict, dict]:
    """Invoke; return status, parsed JSON body and the headers (single-valued)."""
    response = handler.lambda_handler(event, context)
    headers = {k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}
    headers.update(response.get("headers") or {})
    return response["statusCode"], json.loads(response["body"]), headers
