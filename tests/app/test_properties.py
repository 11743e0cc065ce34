"""Property-based: whatever arrives, the handler answers with a contract status and body, never a 5xx."""

from __future__ import annotations

import base64
import json
from types import ModuleType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app.conftest import call
from tests.app.test_handler import event_with

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
BODIES = (JSON.map(json.dumps)
          | st.fixed_dictionaries({"text": st.text(max_size=300)}).map(json.dumps)
          | st.fixed_dictionaries({"texts": st.lists(st.text(max_size=100), max_size=12)}).map(json.dumps)
          | st.text(max_size=200))
ALLOWED = {200, 400, 404, 405, 413, 415, 422}
FAST = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_contract(status: int, body: dict, sent_texts: int | None = None) -> None:
    assert status in ALLOWED, (status, body)
    if status == 200:
        assert set(body) == {"results", "model"}
        if sent_texts is not None:
            assert len(body["results"]) == sent_texts
    else:
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])


@FAST
@given(body=BODIES)
def test_any_json_or_text_body(handler: ModuleType, lambda_context, body: str) -> None:
    status, answer, _ = call(handler, event_with(body), lambda_context)
    _assert_contract(status, answer)


@FAST
@given(raw=st.binary(max_size=400))
def test_random_bytes_in_base64_bodies(handler: ModuleType, lambda_context, raw: bytes) -> None:
    status, answer, _ = call(handler, event_with(raw), lambda_context)
    _assert_contract(status, answer)


@FAST
@given(texts=st.lists(st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=400),
                      min_size=1, max_size=8))
def test_any_unicode_texts_score_in_order(handler: ModuleType, lambda_context, texts: list[str]) -> None:
    status, answer, _ = call(handler, event_with(json.dumps({"texts": texts})), lambda_context)
    if all(t.strip() for t in texts):
        assert status == 200, answer
        assert len(answer["results"]) == len(texts)
    else:
        assert status == 422


@FAST
@given(method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
       path=st.text(alphabet="abc/._-%~", max_size=30).map(lambda p: "/" + p),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x", "application/json; charset=utf-8"]))
def test_methods_paths_and_content_types(handler: ModuleType, lambda_context, method: str, path: str,
                                         content_type: str) -> None:
    event = event_with(base64.b64encode(b'{"text": "ok"}').decode(), method=method, path=path, content_type=content_type)
    status, answer, _ = call(handler, event, lambda_context)
    _assert_contract(status, answer)
