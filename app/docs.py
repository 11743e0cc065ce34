"""The API in a browser: a Swagger UI page for this service's OpenAPI document, served offline.

The JavaScript and CSS are the Swagger UI files that ship inside the aws-lambda-powertools package
(the function already depends on it), answered by the handler itself; the document is embedded in
the page. A Content-Security-Policy keeps the browser from loading or sending anything elsewhere.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import html as _html
import json
from pathlib import Path

import aws_lambda_powertools.event_handler as _event_handler

SWAGGER_UI_DIR = Path(_event_handler.__file__).parent / "openapi" / "swagger_ui"
# URL name under /docs/ -> (file in SWAGGER_UI_DIR, content type)
ASSETS = {
    "swagger-ui.js": ("swagger-ui-bundle.min.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.min.css", "text/css; charset=utf-8"),
}
API_KEY_SCHEME = {"type": "apiKey", "in": "header", "name": "x-api-key",
                  "description": "The deployed API's key (sam deploy's ApiKeyId output); make serve needs none."}


@functools.cache
def asset(name: str) -> tuple[str, str]:
    """The body and content type of a bundled Swagger UI file.

    Args:
        name: a key of ``ASSETS``.

    Raises:
        KeyError: for any other name.
    """
    filename, content_type = ASSETS[name]
    return (SWAGGER_UI_DIR / filename).read_text(encoding="utf-8"), content_type


def page_document(document: dict, base_path: str) -> dict:
    """The OpenAPI document as the page shows it: "Try it out" sends to ``base_path`` on the page's own host.

    Args:
        document: the service's OpenAPI document (not modified).
        base_path: the path the API is mounted under, e.g. ``/Prod`` on a REST API stage, ``""`` locally.
    """
    shown = copy.deepcopy(document)
    shown["servers"] = [{"url": base_path or "/", "description": "this server"}]
    shown.setdefault("components", {}).setdefault("securitySchemes", {})["apiKey"] = API_KEY_SCHEME
    shown["security"] = [{}, {"apiKey": []}]  # optional: make serve takes no key, the deployed API wants one
    return shown


def page(document: dict, base_path: str) -> tuple[str, dict[str, str]]:
    """The Swagger UI HTML page and its response headers.

    Args:
        document: the service's OpenAPI document.
        base_path: as for ``page_document``; the assets are linked under ``{base_path}/docs/``.
    """
    # "</" escaped: a string in the document cannot close the <script> element.
    spec = json.dumps(page_document(document, base_path), separators=(",", ":")).replace("</", "<\\/")
    script = (
        "window.ui = SwaggerUIBundle({"
        f"spec: {spec}, dom_id: '#swagger-ui', deepLinking: false, validatorUrl: null,"
        " defaultModelsExpandDepth: 0, displayRequestDuration: true,"
        " presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout'});"
    )
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    page_html = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_html.escape(str(document.get('info', {}).get('title', 'API')))} - Swagger UI</title>\n"
        "<link rel=\"icon\" href=\"data:,\">\n"  # no favicon request
        f"<link rel=\"stylesheet\" href=\"{base_path}/docs/swagger-ui.css\">\n"
        "</head>\n<body>\n<div id=\"swagger-ui\"></div>\n"
        f"<script src=\"{base_path}/docs/swagger-ui.js\"></script>\n<script>{script}</script>\n</body>\n</html>\n"
    )
    headers = {
        # Only this origin: the bundled files, the page's own script (by hash) and requests to this API.
        "Content-Security-Policy": (f"default-src 'none'; script-src 'self' 'sha256-{digest}'; "
                                    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                                    "font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
        "Cache-Control": "no-cache",
    }
    return page_html, headers
