"""GET /docs: Swagger UI from the handler, only when API_DOCS=true, with the bundled assets and no other origin."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from app import docs
from tests.app.conftest import load_handler
from tests.conftest import load_event


def _get(path: str, stage_in_path: bool = False) -> dict:
    event = load_event("health")
    # As API Gateway sends it: the stage is in requestContext.path on an execute-api URL, not on a custom domain.
    event.update({"path": path, "resource": path, "httpMethod": "GET", "body": None})
    event["requestContext"].update({"path": ("/Prod" if stage_in_path else "") + path, "resourcePath": path,
                                    "httpMethod": "GET", "stage": "Prod"})
    return event


@pytest.fixture(scope="module")
def with_docs(tiny_artifacts: Path) -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as mp:
        yield load_handler(mp, tiny_artifacts, API_DOCS="true")


def test_docs_are_off_by_default(tiny_artifacts: Path, lambda_context: object) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("API_DOCS", raising=False)
        handler = load_handler(mp, tiny_artifacts)
        for path in ("/docs", "/docs/swagger-ui.js", "/docs/swagger-ui.css"):
            response = handler.lambda_handler(_get(path), lambda_context)
            assert response["statusCode"] == 404, path
            assert json.loads(response["body"])["error"]["code"] == "not_found"


def test_api_docs_must_be_true_or_false(tiny_artifacts: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("API_DOCS", "yes please")
        from app.settings import Settings

        with pytest.raises(ValueError, match="API_DOCS"):
            Settings.from_env()


def test_page_embeds_this_apis_document_and_links_only_its_own_assets(with_docs: ModuleType,
                                                                      lambda_context: object) -> None:
    response = with_docs.lambda_handler(_get("/docs"), lambda_context)
    assert response["statusCode"] == 200
    headers = {**{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}, **(response.get("headers") or {})}
    assert headers["Content-Type"].startswith("text/html")
    html = response["body"]
    # Every URL the page names is a path on this server (or an inline data: URL), none on another host.
    assert re.findall(r'(?:src|href)="([^"]*)"', html) == ["data:,", "/docs/swagger-ui.css", "/docs/swagger-ui.js"]
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    spec = json.loads(re.search(r"spec: (\{.*?\}), dom_id", html).group(1).replace("<\\/", "</"))
    assert spec["paths"].keys() == with_docs.openapi()["paths"].keys()
    assert spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PredictRequest"}  # the body that "Try it out" edits
    assert spec["servers"] == [{"url": "/", "description": "this server"}]
    # The browser may load and send nothing elsewhere; the page's inline script is allowed by its hash only.
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "unsafe-eval" not in policy
    assert re.search(r"script-src 'self' 'sha256-[A-Za-z0-9+/=]+';", policy)


def test_on_a_rest_api_stage_the_page_links_and_sends_under_the_stage(with_docs: ModuleType,
                                                                      lambda_context: object) -> None:
    html = with_docs.lambda_handler(_get("/docs", stage_in_path=True), lambda_context)["body"]
    assert 'href="/Prod/docs/swagger-ui.css"' in html and 'src="/Prod/docs/swagger-ui.js"' in html
    assert '"servers":[{"url":"/Prod"' in html
    assert '"x-api-key"' in html  # the deployed API wants its key: the page offers Authorize


@pytest.mark.parametrize(("name", "filename", "content_type"), [
    ("swagger-ui.js", "swagger-ui-bundle.min.js", "text/javascript"), ("swagger-ui.css", "swagger-ui.min.css", "text/css")])
def test_assets_are_the_files_bundled_with_powertools(with_docs: ModuleType, lambda_context: object, name: str,
                                                      filename: str, content_type: str) -> None:
    response = with_docs.lambda_handler(_get(f"/docs/{name}"), lambda_context)
    assert response["statusCode"] == 200
    assert response["body"] == (docs.SWAGGER_UI_DIR / filename).read_text(encoding="utf-8")
    assert len(response["body"]) > 100_000  # the real Swagger UI, not a stub
    headers = {**{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()}, **(response.get("headers") or {})}
    assert headers["Content-Type"].startswith(content_type)


def test_other_paths_and_methods_under_docs_keep_the_error_contract(with_docs: ModuleType,
                                                                    lambda_context: object) -> None:
    response = with_docs.lambda_handler(_get("/docs/../../etc/passwd"), lambda_context)
    assert response["statusCode"] == 404
    event = _get("/docs")
    event["httpMethod"] = event["requestContext"]["httpMethod"] = "POST"
    response = with_docs.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 405 and json.loads(response["body"])["error"]["code"] == "method_not_allowed"


def test_a_string_in_the_document_cannot_close_the_script() -> None:
    html, _ = docs.page({"info": {"title": "t"}, "paths": {}, "x": "</script><script>alert(1)</script>"}, "")
    assert "</script><script>alert(1)" not in html
